"""SVG(0): squashed-Gaussian density, the k = 0 value-gradient actor on a known-Q bandit, TD target, entropy
tuning, the replay loop, exact resume, compile-once."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats
from test_ddpg import QuadraticQ, check_compiles_once, check_exact_resume, make_loop

from pathwise import algorithms
from pathwise.algorithms import critics as ac
from pathwise.algorithms import svg0
from pathwise.distributions import GaussianPolicy
from pathwise.networks import make_ensemble
from pathwise.types import Transition

TINY = svg0.Config(hidden=(8,), critic_hidden=(16,), batch_size=8, buffer_size=500, learning_starts=150)
LOW, HIGH = -2.0, 2.0


def _actor(key=0, action_dim=1, obs_dim=2):
    return GaussianPolicy(obs_dim, action_dim, (8,), key=jax.random.key(key), low=LOW, high=HIGH,
                          state_dependent_std=True, act="relu", final_scale=1.0)


@pytest.fixture(scope="module")
def trained_once():
    loop = make_loop("svg0", "Pendulum-v1", TINY)
    carry, metrics = loop.iteration(loop.init(jax.random.key(5)))
    return loop, carry, metrics


def test_registry_maps_cli_name():
    assert algorithms.get("svg0").module is svg0


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


def test_actor_loss_is_entropy_term_minus_min_q_of_the_reparameterized_action():
    """The value-gradient core with k = 0 gives J_0 = min_i Q_i(s, pi(s, xi)): the loss is E[alpha log pi - J_0]."""
    actor = _actor(obs_dim=3)
    critics = ac.make_critics(jax.random.key(1), 3, 1, TINY)
    obs = jax.random.normal(jax.random.key(2), (5, 3))
    xi = jax.random.normal(jax.random.key(3), (5, 1))
    loss, mean_log_prob = svg0.actor_loss(actor, critics, jnp.float32(0.3), obs, xi)
    action, log_prob = jax.vmap(svg0.sample_action, (None, 0, 0))(actor, obs, xi)
    np.testing.assert_allclose(loss, jnp.mean(0.3 * log_prob - ac.min_q(critics, obs, action)), rtol=1e-5)
    np.testing.assert_allclose(mean_log_prob, log_prob.mean(), rtol=1e-6)
    # the critics are frozen inside the objective: the actor loss never moves them
    g = eqx.filter_grad(lambda c: svg0.actor_loss(actor, c, jnp.float32(0.3), obs, xi)[0])(critics)
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(g))


def test_actor_gradient_is_dq_da_times_da_dtheta_and_moves_the_noise_scale():
    actor, c = _actor(key=3), 0.7
    critics = make_ensemble(lambda k: QuadraticQ(jnp.array(c)), jax.random.key(0), 1)
    obs = jax.random.normal(jax.random.key(1), (6, 2))
    xi = jax.random.normal(jax.random.key(2), (6, 1))
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
    critics = make_ensemble(lambda k: QuadraticQ(jnp.array(0.5)), jax.random.key(0), 2)
    next_obs = jax.random.normal(jax.random.key(1), (3, 3))
    xi = jax.random.normal(jax.random.key(2), (3, 1))
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


def test_tiny_run_through_the_replay_loop(trained_once):
    _, carry, first = trained_once
    assert first["updates"] == 200 and int(carry.env_steps) == 200
    assert np.all(np.isfinite(list(first.values())))
    assert first["alpha"] < 1.0  # auto-tuned from the initial 1.0
    obs = jnp.zeros(3)
    det = svg0.act(carry.algo, obs, jax.random.key(0), True)
    assert det.shape == (1,) and np.array_equal(det, svg0.act(carry.algo, obs, jax.random.key(1), True))
    samples = {float(svg0.act(carry.algo, obs, jax.random.key(i), False)[0]) for i in range(5)}
    assert len(samples) == 5 and all(LOW <= s <= HIGH for s in samples)


def test_carry_roundtrip_reproduces_next_iteration_exactly(trained_once, tmp_path):
    loop, carry, _ = trained_once
    check_exact_resume(loop, carry, tmp_path)


def test_update_compiles_once_across_iterations(trained_once, compilations):
    loop, carry, _ = trained_once
    check_compiles_once(loop, carry, compilations)


def test_plain_svg0_without_entropy_runs():
    config = dataclasses.replace(TINY, learning_starts=0, entropy_coef=0.0, auto_entropy=False, n_critics=1)
    loop = make_loop("svg0", "Pendulum-v1", config)
    _, metrics = loop.iteration(loop.init(jax.random.key(0)))
    assert metrics["updates"] == 200 and metrics["alpha"] == 0.0 and np.isfinite(metrics["actor_loss"])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="auto_entropy=True needs"):
        svg0.Config(entropy_coef=0.0)
    with pytest.raises(ValueError, match="entropy_coef"):
        svg0.Config(entropy_coef=-1.0, auto_entropy=False)
    with pytest.raises(ValueError, match="log_std_min"):
        svg0.Config(log_std_min=3.0)
    with pytest.raises(ValueError, match="continuous \\(Box\\) actions"):
        make_loop("svg0", "CartPole-v1", TINY)


@pytest.mark.slow
def test_svg0_solves_pendulum_within_20k_steps():
    from pathwise.train import train

    _, summary = train("svg0", "Pendulum-v1", 20_000, seed=0, eval_every=1000, quiet=True,
                       callback=lambda info: info.get("eval_return_mean", -np.inf) < -200)
    assert summary["steps_to_solve"] is not None, summary
