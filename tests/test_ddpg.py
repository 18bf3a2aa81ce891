"""DDPG: TD target, deterministic policy gradient on a known-Q bandit, the replay loop, exact resume, compile-once.

The helpers at the top (a replay loop for an algorithm, the checkpoint round trip, exact resume and
compile-once checks) are shared by the other replay-loop tests (svg0, svg0-discrete, svg1).
"""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal

from pathwise import algorithms, loops
from pathwise import checkpoint as ckpt
from pathwise import spec as spec_mod
from pathwise.algorithms import critics as ac
from pathwise.algorithms import ddpg
from pathwise.networks import DeterministicPolicy, make_ensemble
from pathwise.types import Transition

TINY = ddpg.Config(hidden=(8,), critic_hidden=(16,), batch_size=8, buffer_size=500, learning_starts=150)


class QuadraticQ(eqx.Module):
    """Known critic ``Q(s, a) = -|a - c * s_0|^2`` with ``dQ/da = -2 (a - c * s_0)``."""

    c: jax.Array

    def __call__(self, obs, action):
        return -jnp.sum((action - self.c * obs[0]) ** 2)


# -- helpers shared by the replay-loop tests ------------------------------------------------------------------


def make_loop(name, env_id, config):
    """The (checked) replay loop running algorithm ``name`` on ``env_id`` with ``config``."""
    return loops.make(algorithms.get(name), spec_mod.from_env(env_id), config)


def through_checkpoint(carry, template, tmp_path):
    """``carry`` written to and read back from a checkpoint file, as the driver resumes a run."""
    ckpt.save(tmp_path / "carry.npz", carry, {"algorithm": "test"})
    meta, leaves = ckpt.read(tmp_path / "carry.npz")
    return ckpt.restore(template, meta, leaves)


def check_exact_resume(loop, carry, tmp_path):
    """The next iteration from ``carry`` and from ``carry`` read back from a checkpoint (restored into a fresh
    loop's carry of another seed) are the same: metrics and the whole carry."""
    restored = through_checkpoint(carry, loop.init(jax.random.key(12345)), tmp_path)
    a, ma = loop.iteration(carry)
    b, mb = loop.iteration(restored)
    assert ma == mb
    assert_trees_equal(a, b)
    return a, ma


def check_compiles_once(loop, carry, compilations, iterations=2):
    """After ``carry`` (past the warm-up), further iterations compile nothing new."""
    carry, _ = loop.iteration(carry)  # the first iteration that acts with the policy compiles `act`
    with compilations() as n:
        for _ in range(iterations):
            carry, metrics = loop.iteration(carry)
    assert n[0] == 0, f"{n[0]} compilations after warming up"
    return carry, metrics


# -- DDPG -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_once():
    """A loop and its carry after one iteration (warm-up episode, then 200 updates), shared by the tests below."""
    loop = make_loop("ddpg", "Pendulum-v1", TINY)
    carry, metrics = loop.iteration(loop.init(jax.random.key(3)))
    return loop, carry, metrics


def test_registry_maps_cli_name():
    algorithm = algorithms.get("ddpg")
    assert algorithm.module is ddpg and algorithm.info.loops == ("replay",)


def test_td_target_bootstraps_on_truncation_not_on_termination():
    reward = jnp.array([1.0, 1.0, 1.0, 1.0])
    terminated = jnp.array([False, True, False, True])
    next_value = jnp.array([10.0, 10.0, -4.0, -4.0])
    y = ac.td_target(reward, terminated, next_value, 0.9)
    np.testing.assert_allclose(y, [10.0, 1.0, -2.6, 1.0], rtol=1e-6)


def target_setup(terminated, truncated):
    """A target actor, one target critic and three transitions with rewards 0.5, -1, 2 (Pendulum's shapes)."""
    key = jax.random.key(0)
    actor = DeterministicPolicy(3, 1, -2.0, 2.0, (8,), key=key)
    critics = ac.make_critics(jax.random.key(1), 3, 1, TINY)
    next_obs = jax.random.normal(key, (3, 3))
    batch = Transition(obs=jnp.zeros((3, 3)), action=jnp.zeros((3, 1)), reward=jnp.array([0.5, -1.0, 2.0]),
                       next_obs=next_obs, terminated=jnp.array(terminated), truncated=jnp.array(truncated))
    return actor, critics, next_obs, batch


def test_critic_target_uses_target_networks_and_terminal_flags():
    actor, critics, next_obs, batch = target_setup([False, True, False], [False, False, True])
    y = ddpg.critic_target(actor, critics, batch, 0.98)
    single = jax.tree.map(lambda x: x[0], critics)  # the only member of the ensemble
    q_next = jax.vmap(lambda o: single(o, actor(o)))(next_obs)
    np.testing.assert_allclose(y, [0.5 + 0.98 * q_next[0], -1.0, 2.0 + 0.98 * q_next[2]], rtol=1e-5, atol=1e-6)


def test_actor_gradient_matches_dq_da_times_da_dtheta_on_a_bandit():
    actor = DeterministicPolicy(2, 1, -2.0, 2.0, (8,), key=jax.random.key(4), final_scale=1.0)
    c = 0.7
    critics = make_ensemble(lambda k: QuadraticQ(jnp.array(c)), jax.random.key(0), 1)
    obs = jax.random.normal(jax.random.key(5), (5, 2))
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
    actor = DeterministicPolicy(3, 1, -2.0, 2.0, (8,), key=jax.random.key(0))
    big = jnp.array([50.0])
    assert float(ddpg.exploration_action(actor, jnp.ones(3), big, 0.1)[0]) == 2.0
    assert float(ddpg.exploration_action(actor, jnp.ones(3), -big, 0.1)[0]) == -2.0


def test_tiny_run_through_the_replay_loop(trained_once):
    _, carry, first = trained_once
    assert first["updates"] == 200 and int(carry.env_steps) == 200  # learning_starts=150 < 200: updates start
    assert int(carry.buffer.size) == 200
    assert np.all(np.isfinite(list(first.values())))
    obs, key = jnp.zeros(3), jax.random.key(0)
    action = ddpg.act(carry.algo, obs, key, True)
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0
    noisy = ddpg.act(carry.algo, obs, key, False)
    assert noisy.shape == (1,) and -2.0 <= float(noisy[0]) <= 2.0 and float(noisy[0]) != float(action[0])


def test_carry_roundtrip_reproduces_next_iteration_exactly(trained_once, tmp_path):
    loop, carry, _ = trained_once
    after, _ = check_exact_resume(loop, carry, tmp_path)
    assert int(after.env_steps) == 400


def test_update_compiles_once_across_iterations(trained_once, compilations):
    loop, carry, _ = trained_once
    _, metrics = check_compiles_once(loop, carry, compilations)
    assert metrics["updates"] == 200


def test_smoothed_target_action_is_clipped_noise_around_the_target_actor():
    """TD3's target policy smoothing: a' = clip(mu'(s') + clip(sigma n, -c, c) * half-width), then y as usual."""
    actor, critics, next_obs, batch = target_setup([False] * 3, [False] * 3)
    noise = jnp.array([[10.0], [-10.0], [0.5]])  # the first two hit the noise clip c = 0.5: +-0.5 * 2 = +-1
    y = ddpg.critic_target(actor, critics, batch, 0.98, noise, 0.2, 0.5)
    single = jax.tree.map(lambda x: x[0], critics)
    mu = jax.vmap(actor)(next_obs)
    smoothed = jnp.clip(mu + jnp.array([[1.0], [-1.0], [0.2]]), -2.0, 2.0)
    want = batch.reward + 0.98 * jax.vmap(single)(next_obs, smoothed)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    plain = ddpg.critic_target(actor, critics, batch, 0.98)
    assert float(jnp.max(jnp.abs(y - plain))) > 1e-4  # the smoothing moved the target
    np.testing.assert_allclose(ddpg.critic_target(actor, critics, batch, 0.98, noise, 0.0, 0.5), plain, rtol=1e-6)


def test_act_with_target_acts_with_the_polyak_averaged_actor(trained_once):
    _, carry, _ = trained_once
    obs, key = jnp.array([0.3, -0.9, 1.5]), jax.random.key(0)
    for with_target in (True, False):
        config = dataclasses.replace(TINY, act_with_target=with_target)
        state, _ = jax.jit(lambda s: ddpg.update(s, carry.buffer, key, config))(carry.algo)
        acting = state.target_actor if with_target else state.actor
        np.testing.assert_array_equal(ddpg.act(state, obs, key, True), acting(obs))
        noisy = ddpg.exploration_action(state.actor, obs, jax.random.normal(key, (1,)), state.exploration_std)
        np.testing.assert_array_equal(ddpg.act(state, obs, key, False), noisy)  # exploration: the latest actor
    assert float(jnp.abs(state.target_actor(obs) - state.actor(obs))[0]) > 1e-4  # the two differ after training


def test_actor_learning_rate_decays_to_its_final_fraction(trained_once):
    loop, carry, _ = trained_once
    config = dataclasses.replace(TINY, actor_lr_decay_steps=3, actor_lr_final_fraction=0.0)
    state = ddpg.init(jax.random.key(5), loop.spec, config)
    step = jax.jit(lambda s, k: ddpg.update(s, carry.buffer, k, config)[0])
    for i in range(3):
        before, state = state, step(state, jax.random.key(i))
        assert not eqx.tree_equal(before.actor, state.actor)  # a step while the rate is above 0
    after = step(state, jax.random.key(9))  # past the decay: the rate is 0, the critic still learns
    assert eqx.tree_equal(after.actor, state.actor) and not eqx.tree_equal(after.critics, state.critics)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="gamma"):
        ddpg.Config(gamma=1.5)
    with pytest.raises(ValueError, match="exploration_std"):
        ddpg.Config(exploration_std=-0.1)
    with pytest.raises(ValueError, match="target_noise="):
        ddpg.Config(target_noise=-0.2)
    with pytest.raises(ValueError, match="actor_lr_final_fraction"):
        ddpg.Config(actor_lr_final_fraction=1.5)
    with pytest.raises(ValueError, match="continuous \\(Box\\) actions"):
        make_loop("ddpg", "CartPole-v1", TINY)
    with pytest.raises(ValueError, match="Unknown environment"):
        make_loop("ddpg", "NoSuchEnv-v0", TINY)


@pytest.mark.slow
def test_ddpg_solves_pendulum_within_20k_steps():
    from pathwise.train import train

    _, summary = train("ddpg", "Pendulum-v1", 20_000, seed=0, eval_every=1000, quiet=True,
                       callback=lambda info: info.get("eval_return_mean", -np.inf) < -200)
    assert summary["steps_to_solve"] is not None, summary
