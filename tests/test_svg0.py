"""SVG(0): squashed-Gaussian density, pathwise actor gradient on a known-Q bandit, TD target, entropy tuning,
Learner API, exact resume, compile-once."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from pathwise import checkpoint as ckpt
from pathwise.algorithms import get, svg0
from pathwise.distributions import GaussianPolicy
from pathwise.envs import evaluate
from pathwise.networks import make_ensemble
from pathwise.types import Transition

TINY = svg0.SVG0Config(hidden=(8,), critic_hidden=(16,), batch_size=8, buffer_size=500, learning_starts=150)
LOW, HIGH = -2.0, 2.0


class QuadraticQ(eqx.Module):
    """Known critic ``Q(s, a) = -|a - c * s_0|^2`` with ``dQ/da = -2 (a - c * s_0)``."""

    c: jax.Array

    def __call__(self, obs, action):
        return -jnp.sum((action - self.c * obs[0]) ** 2)


def _actor(key=0, action_dim=1, obs_dim=2):
    return GaussianPolicy(obs_dim, action_dim, (8,), key=jax.random.PRNGKey(key), low=LOW, high=HIGH,
                          state_dependent_std=True, act="relu", final_scale=1.0)


def through_checkpoint(state, template, tmp_path):
    """``state`` written to and read back from a checkpoint file, as the driver resumes a run."""
    ckpt.save(tmp_path / "state.npz", state, {"algorithm": "test"})
    meta, leaves = ckpt.read(tmp_path / "state.npz")
    return ckpt.restore(template, meta, leaves)


def assert_states_equal(a, b):
    def raw(x):
        return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x

    jax.tree.map(lambda x, y: np.testing.assert_array_equal(raw(x), raw(y)), a, b)


@pytest.fixture(scope="module")
def trained_once():
    learner = svg0.SVG0("Pendulum-v1", TINY, seed=5)
    metrics = learner.train_iteration()
    return learner, learner.get_state(), metrics


def test_registry_maps_cli_name():
    assert get("svg0") is svg0.SVG0


def test_log_prob_is_the_density_of_the_squashed_gaussian():
    actor = _actor()
    obs = jnp.array([0.3, -1.2])
    mean, log_std = (float(x[0]) for x in actor.mean_and_log_std(obs))
    std, half = np.exp(log_std), (HIGH - LOW) / 2

    def density(a):  # change of variables in float64: u = atanh((a - low)/half - 1)
        u = np.arctanh((a - LOW) / half - 1.0)
        return stats.norm.pdf(u, mean, std) / (half * (1.0 - np.tanh(u) ** 2))

    total, _ = integrate.quad(density, LOW, HIGH, limit=200)
    assert abs(total - 1.0) < 1e-6  # the reference is a density on the box
    for xi in [-2.0, -0.5, 0.0, 1.3]:
        a, log_p = svg0.sample_action(actor, obs, jnp.array([xi]))
        assert LOW < float(a[0]) < HIGH
        np.testing.assert_allclose(float(log_p), np.log(density(float(a[0]))), rtol=1e-4, atol=1e-4)


def test_log_prob_stays_finite_when_the_action_saturates():
    actor = _actor()
    _, log_p = svg0.sample_action(actor, jnp.zeros(2), jnp.array([1e4]))
    assert np.isfinite(float(log_p))


def test_actor_gradient_is_dq_da_times_da_dtheta_and_moves_the_noise_scale():
    actor, c = _actor(key=3), 0.7
    critics = make_ensemble(lambda k: QuadraticQ(jnp.array(c)), jax.random.PRNGKey(0), 1)
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, 2))
    xi = jax.random.normal(jax.random.PRNGKey(2), (6, 1))
    grads = eqx.filter_grad(lambda a: svg0.actor_loss(a, critics, jnp.float32(0.0), obs, xi)[0])(actor).net
    params, static = eqx.partition(actor.net, eqx.is_array)

    def action(p, o, x):
        return svg0.sample_action(eqx.tree_at(lambda a: a.net, actor, eqx.combine(p, static)), o, x)[0][0]

    dq_da = -2.0 * (jax.vmap(action, (None, 0, 0))(params, obs, xi) - c * obs[:, 0])  # analytic dQ/da per sample
    da_dtheta = jax.vmap(jax.grad(action), (None, 0, 0))(params, obs, xi)  # per-sample Jacobians
    ref = jax.tree.map(lambda d: -jnp.tensordot(dq_da, d, axes=1) / len(obs), da_dtheta)
    jax.tree.map(lambda g, r: np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6),
                 eqx.filter(grads, eqx.is_array), ref)
    # the last layer's log-std row (output 1) gets a gradient: the noise scale is learned pathwise
    assert float(jnp.abs(grads.layers[-1].weight[1]).max()) > 1e-4


def test_critic_target_bootstraps_on_truncation_with_entropy_term():
    actor = _actor(obs_dim=3)
    critics = make_ensemble(lambda k: QuadraticQ(jnp.array(0.5)), jax.random.PRNGKey(0), 2)
    next_obs = jax.random.normal(jax.random.PRNGKey(1), (3, 3))
    xi = jax.random.normal(jax.random.PRNGKey(2), (3, 1))
    batch = Transition(jnp.zeros((3, 3)), jnp.zeros((3, 1)), jnp.array([0.5, -1.0, 2.0]), next_obs,
                       jnp.array([False, True, False]), jnp.array([False, False, True]))
    alpha, gamma = 0.2, 0.9
    y = svg0.critic_target(actor, critics, jnp.float32(alpha), batch, xi, gamma)
    a, log_p = jax.vmap(svg0.sample_action, (None, 0, 0))(actor, next_obs, xi)
    v = -jnp.sum((a - 0.5 * next_obs[:, :1]) ** 2, axis=1) - alpha * log_p  # both critics are the same quadratic
    expected = np.where(batch.terminated, batch.reward, batch.reward + gamma * v)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_alpha_rises_when_entropy_is_below_target():
    grad_low_entropy = jax.grad(svg0.alpha_loss)(jnp.float32(0.0), jnp.float32(3.0), -1.0)  # H = -3 < -1
    grad_high_entropy = jax.grad(svg0.alpha_loss)(jnp.float32(0.0), jnp.float32(-3.0), -1.0)
    assert float(grad_low_entropy) < 0 < float(grad_high_entropy)  # descent raises / lowers log alpha


def test_tiny_run_through_learner_api(trained_once):
    learner, _, first = trained_once
    assert first["updates"] == 200 and learner.env_steps == 200
    assert np.all(np.isfinite(list(first.values())))
    assert first["alpha"] < 1.0  # auto-tuned from the initial 1.0
    det = learner.act(np.zeros(3, np.float32))
    assert det.shape == (1,) and np.array_equal(det, learner.act(np.zeros(3, np.float32)))
    samples = {float(learner.act(np.zeros(3, np.float32), deterministic=False)[0]) for _ in range(5)}
    assert len(samples) == 5 and all(LOW <= s <= HIGH for s in samples)


def test_state_roundtrip_reproduces_next_iteration_exactly(trained_once, tmp_path):
    _, state, _ = trained_once
    a = svg0.SVG0("Pendulum-v1", TINY, seed=5)
    a.set_state(state)
    b = svg0.SVG0("Pendulum-v1", TINY, seed=77)
    b.set_state(through_checkpoint(state, b.get_state(), tmp_path))  # as the driver resumes
    ma, mb = a.train_iteration(), b.train_iteration()
    assert ma == mb
    assert_states_equal(a.get_state(), b.get_state())


def test_update_compiles_once_across_iterations(trained_once):
    learner, state, _ = trained_once
    learner.set_state(state)
    learner.train_iteration()
    size = svg0.learn._cache_size()
    for _ in range(2):
        learner.train_iteration()
    assert svg0.learn._cache_size() == size


def test_plain_svg0_without_entropy_runs():
    config = svg0.SVG0Config(hidden=(8,), critic_hidden=(16,), batch_size=8, buffer_size=500, learning_starts=0,
                             entropy_coef=0.0, auto_entropy=False, n_critics=1)
    learner = svg0.SVG0("Pendulum-v1", config, seed=0)
    metrics = learner.train_iteration()
    assert metrics["alpha"] == 0.0 and np.isfinite(metrics["actor_loss"])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="auto_entropy=True needs"):
        svg0.SVG0("Pendulum-v1", svg0.SVG0Config(entropy_coef=0.0))
    with pytest.raises(ValueError, match="continuous \\(Box\\) action space"):
        svg0.SVG0("CartPole-v1", TINY)


@pytest.mark.slow
def test_svg0_solves_pendulum_within_20k_steps():
    learner = svg0.SVG0("Pendulum-v1", seed=0)
    while learner.env_steps < 20_000:
        learner.train_iteration()
    result = evaluate(learner.act, "Pendulum-v1", episodes=10, seed=1000)
    assert result.mean >= -200, result.returns
