"""DDPG: TD target, deterministic policy gradient on a known-Q bandit, Learner API, resume, compile-once."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import checkpoint as ckpt
from pathwise.algorithms import common, ddpg, get
from pathwise.envs import evaluate
from pathwise.networks import DeterministicPolicy, make_ensemble
from pathwise.types import Transition

TINY = ddpg.DDPGConfig(hidden=(8,), critic_hidden=(16,), batch_size=8, buffer_size=500, learning_starts=150)


class QuadraticQ(eqx.Module):
    """Known critic ``Q(s, a) = -|a - c * s_0|^2`` with ``dQ/da = -2 (a - c * s_0)``."""

    c: jax.Array

    def __call__(self, obs, action):
        return -jnp.sum((action - self.c * obs[0]) ** 2)


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
    """A learner after one iteration (random warm-up) and its state, shared by the tests below."""
    learner = ddpg.DDPG("Pendulum-v1", TINY, seed=3)
    metrics = learner.train_iteration()
    return learner, learner.get_state(), metrics


def test_registry_maps_cli_name():
    assert get("ddpg") is ddpg.DDPG


def test_td_target_bootstraps_on_truncation_not_on_termination():
    reward = jnp.array([1.0, 1.0, 1.0, 1.0])
    terminated = jnp.array([False, True, False, True])
    next_value = jnp.array([10.0, 10.0, -4.0, -4.0])
    y = common.td_target(reward, terminated, next_value, 0.9)
    np.testing.assert_allclose(y, [10.0, 1.0, -2.6, 1.0], rtol=1e-6)


def test_critic_target_uses_target_networks_and_terminal_flags():
    key = jax.random.PRNGKey(0)
    actor = DeterministicPolicy(3, 1, -2.0, 2.0, (8,), key=key)
    critics = common.make_critics(jax.random.PRNGKey(1), 3, 1, TINY)
    next_obs = jax.random.normal(key, (3, 3))
    batch = Transition(obs=jnp.zeros((3, 3)), action=jnp.zeros((3, 1)), reward=jnp.array([0.5, -1.0, 2.0]),
                       next_obs=next_obs, terminated=jnp.array([False, True, False]),
                       truncated=jnp.array([False, False, True]))
    y = ddpg.critic_target(actor, critics, batch, 0.98)
    single = jax.tree.map(lambda x: x[0], critics)  # the only member of the ensemble
    q_next = jax.vmap(lambda o: single(o, actor(o)))(next_obs)
    np.testing.assert_allclose(y, [0.5 + 0.98 * q_next[0], -1.0, 2.0 + 0.98 * q_next[2]], rtol=1e-5, atol=1e-6)


def test_actor_gradient_matches_dq_da_times_da_dtheta_on_a_bandit():
    actor = DeterministicPolicy(2, 1, -2.0, 2.0, (8,), key=jax.random.PRNGKey(4), final_scale=1.0)
    c = 0.7
    critics = make_ensemble(lambda k: QuadraticQ(jnp.array(c)), jax.random.PRNGKey(0), 1)
    obs = jax.random.normal(jax.random.PRNGKey(5), (5, 2))
    grads = eqx.filter_grad(ddpg.actor_loss)(actor, critics, obs).net
    # reference: -(1/B) sum_b dQ/da(s_b, mu(s_b)) * dmu/dtheta(s_b) with the analytic dQ/da
    params, static = eqx.partition(actor.net, eqx.is_array)

    def mu(p, o):
        return eqx.tree_at(lambda a: a.net, actor, eqx.combine(p, static))(o)[0]

    dq_da = -2.0 * (jax.vmap(mu, (None, 0))(params, obs) - c * obs[:, 0])  # analytic dQ/da per sample
    dmu_dtheta = jax.vmap(jax.grad(mu), (None, 0))(params, obs)  # per-sample Jacobians
    ref = jax.tree.map(lambda d: -jnp.tensordot(dq_da, d, axes=1) / len(obs), dmu_dtheta)
    jax.tree.map(lambda g, r: np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-6), eqx.filter(grads, eqx.is_array),
                 ref)
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(ref)) > 1e-3  # the check is not vacuous


def test_exploration_action_stays_in_the_box():
    actor = DeterministicPolicy(3, 1, -2.0, 2.0, (8,), key=jax.random.PRNGKey(0))
    big = jnp.array([50.0])
    assert float(ddpg.exploration_action(actor, jnp.ones(3), big, 0.1)[0]) == 2.0
    assert float(ddpg.exploration_action(actor, jnp.ones(3), -big, 0.1)[0]) == -2.0


def test_tiny_run_through_learner_api(trained_once):
    learner, _, first = trained_once
    assert first["updates"] == 200 and learner.env_steps == 200  # learning_starts=150 < 200: updates start
    assert int(learner.state.buffer.size) == 200
    assert np.all(np.isfinite(list(first.values())))
    action = learner.act(np.zeros(3, np.float32))
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0
    noisy = learner.act(np.zeros(3, np.float32), deterministic=False)
    assert noisy.shape == (1,)


def test_state_roundtrip_reproduces_next_iteration_exactly(trained_once, tmp_path):
    _, state, _ = trained_once
    a = ddpg.DDPG("Pendulum-v1", TINY, seed=3)
    a.set_state(state)
    b = ddpg.DDPG("Pendulum-v1", TINY, seed=99)  # different seed: everything must come from the state
    b.set_state(through_checkpoint(state, b.get_state(), tmp_path))  # as the driver resumes
    ma, mb = a.train_iteration(), b.train_iteration()
    assert ma == mb and a.env_steps == b.env_steps == 400
    assert_states_equal(a.get_state(), b.get_state())


def test_update_compiles_once_across_iterations(trained_once):
    learner, state, _ = trained_once
    learner.set_state(state)
    learner.train_iteration()
    size = ddpg.learn._cache_size()
    for _ in range(2):
        metrics = learner.train_iteration()
    assert metrics["updates"] == 200
    assert ddpg.learn._cache_size() == size


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="gamma"):
        ddpg.DDPG("Pendulum-v1", ddpg.DDPGConfig(gamma=1.5))
    with pytest.raises(ValueError, match="continuous \\(Box\\) action space"):
        ddpg.DDPG("CartPole-v1", TINY)
    with pytest.raises(ValueError, match="Unknown environment"):
        ddpg.DDPG("NoSuchEnv-v0", TINY)


@pytest.mark.slow
def test_ddpg_solves_pendulum_within_20k_steps():
    learner = ddpg.DDPG("Pendulum-v1", seed=0)
    while learner.env_steps < 20_000:
        learner.train_iteration()
    result = evaluate(learner.act, "Pendulum-v1", episodes=10, seed=1000)
    assert result.mean >= -200, result.returns
