"""Imitation: BC / DAgger machinery against an exact LQR expert, the joint penalty, the simulated loop (compile once,
steps counted, exact resume through a checkpoint), the policy's angle features, config errors."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import pathwise as pw
from pathwise import algorithms, loops, replay
from pathwise import checkpoint as ckpt
from pathwise import spec as spec_mod
from pathwise.algorithms import imitation as im
from pathwise.networks import AngleFeaturePolicy, DeterministicPolicy

A = np.array([[1.1, 0.2], [0.0, 0.9]])
B = np.array([[0.5], [1.0]])
Q, R = np.eye(2), np.array([[0.1]])
P = scipy.linalg.solve_discrete_are(A, B, Q, R)
K = jnp.asarray(np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A), jnp.float32)
SYSTEM = pw.systems.LinearSystem(A, B, Q, R, horizon=20)
SPEC = spec_mod.from_system(SYSTEM)
# The LQR controller as a (memoryless) expert: the optimal policy, known in closed form.
LQR_EXPERT = im.Expert(init=lambda s: jnp.zeros(()), step=lambda c, s: (c, -K @ s))
TINY = im.Config(rollouts_per_round=4, rounds=3, fit_steps=300, fit_batch=64, lr=3e-3, hidden=(16,))
ROUND = eqx.filter_jit(im.train_round)  # one round with a given expert, as one jitted call


def test_bc_loss_is_the_mean_squared_action_error():
    state = im.init(jax.random.key(0), SPEC, TINY)
    obs = jax.random.normal(jax.random.key(1), (7, 2))
    act = jax.random.normal(jax.random.key(2), (7, 1))
    pred = np.asarray(jax.vmap(state.policy)(obs))
    expected = np.mean(np.sum((pred - np.asarray(act)) ** 2, axis=1))
    np.testing.assert_allclose(im.bc_loss(state.policy, obs, act), expected, rtol=1e-6)


def test_behaviour_cloning_recovers_the_lqr_policy():
    config = dataclasses.replace(TINY, mode="bc")
    state = im.init(jax.random.key(0), SPEC, config)
    for i in range(2):
        state, metrics = ROUND(state, SYSTEM, LQR_EXPERT, jax.random.key(10 + i), config)
    xs = jax.random.uniform(jax.random.key(5), (200, 2), minval=-0.5, maxval=0.5)
    err = jnp.mean((jax.vmap(state.policy)(xs) - xs @ -K.T) ** 2)
    scale = jnp.mean((xs @ K.T) ** 2)
    assert float(err) < 0.01 * float(scale), (err, scale)  # within 1% of the expert's action energy
    assert int(state.data.size) == 2 * 4 * 20 and int(state.round) == 2
    assert im.steps_per_update(SPEC, config) == 4 * 20


def test_dagger_labels_the_states_the_policy_visits(compilations):
    config = dataclasses.replace(TINY, mode="dagger", fit_steps=20)
    state0 = im.init(jax.random.key(0), SPEC, config)
    state1, _ = ROUND(state0, SYSTEM, LQR_EXPERT, jax.random.key(1), config)  # round 0: expert demonstrations
    key = jax.random.key(2)
    with compilations() as n:  # the round counter is an array: round 1 runs the program round 0 compiled
        state2, _ = ROUND(state1, SYSTEM, LQR_EXPERT, key, config)  # round 1: the policy drives
    assert n[0] == 0
    obs, act = jax.tree.map(lambda x: x[80:160], replay.ordered(state2.data))
    # the round-1 states are a rollout of the round-1 policy from the round's start states ...
    k_collect = jax.random.split(key)[0]
    starts = jax.vmap(SYSTEM.reset)(jax.random.split(k_collect, 4))
    visited = jax.vmap(lambda s: pw.rollout.rollout(SYSTEM, state1.policy, s, 20).states)(starts)
    np.testing.assert_allclose(obs, visited.reshape(80, 2), rtol=1e-5, atol=1e-6)
    # ... labelled with the expert's action there, not the action the policy took
    np.testing.assert_allclose(act, obs @ -K.T, rtol=1e-5, atol=1e-6)
    assert not np.allclose(act, jax.vmap(state1.policy)(obs), atol=1e-3)


def test_penalized_system_adds_the_policy_deviation_cost():
    state = im.init(jax.random.key(0), SPEC, TINY)
    penalized = im.PolicyPenalizedSystem(SYSTEM, state.policy, jnp.asarray(2.5))
    x, u = jnp.array([0.3, -0.4]), jnp.array([0.7])
    expected = SYSTEM.reward(x, u) - 2.5 * jnp.sum((u - state.policy(x)) ** 2)
    np.testing.assert_allclose(penalized.reward(x, u), expected, rtol=1e-6)
    np.testing.assert_allclose(penalized.step(x, u), SYSTEM.step(x, u))
    assert penalized.state_dim == 2 and penalized.action_dim == 1


def test_joint_rounds_grow_rho():
    config = dataclasses.replace(TINY, mode="joint", fit_steps=5, expert_horizon=5, expert_iterations=1,
                                 rollouts_per_round=2)
    state = im.init(jax.random.key(0), SPEC, config)
    state, metrics = ROUND(state, SYSTEM, None, jax.random.key(1), config)
    assert float(metrics["rho"]) == pytest.approx(config.rho0)
    assert float(state.rho) == pytest.approx(config.rho0 * config.rho_growth)


@pytest.mark.parametrize("change, match", [
    (dict(mode="gail"), "mode"),
    (dict(rho_growth=0.5), "rho_growth"),
    (dict(rollouts_per_round=0), "rollouts_per_round"),
    (dict(horizon=-1), "horizon"),
    (dict(updates_per_iteration=0), "updates_per_iteration"),
])
def test_bad_config_is_a_clear_error(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **change)


def test_needs_a_continuous_system():
    with pytest.raises(ValueError, match="continuous"):
        loops.make(algorithms.get("imitation"), spec_mod.from_env("pathwise/CartPole-v1"), TINY)


def test_policy_sees_unwrapped_angles_periodically():
    spec = spec_mod.from_env("pathwise/CartPoleSwingUp-v0")  # the registry says theta (entry 2) is an angle
    policy = im.init(jax.random.key(0), spec, TINY).policy
    assert isinstance(policy, AngleFeaturePolicy)
    obs = jnp.array([0.1, -0.2, 0.3, 0.5])
    np.testing.assert_allclose(policy(obs), policy(obs.at[2].add(2 * jnp.pi)), rtol=1e-5, atol=1e-6)
    assert isinstance(im.init(jax.random.key(0), spec_mod.from_env("Pendulum-v1"), TINY).policy, DeterministicPolicy)


def test_simulated_loop_runs_rounds_with_the_mpc_expert_and_resumes_exactly(tmp_path, compilations):
    config = dataclasses.replace(TINY, fit_steps=20, expert_horizon=15, expert_iterations=2)
    loop = loops.make(algorithms.get("imitation"), SPEC, config)
    assert loop.kind == "simulated"
    carry, metrics = loop.iteration(loop.init(jax.random.key(0)))
    assert int(carry.env_steps) == 4 * 20 and metrics["dataset_size"] == 80
    # the expert is MPC on the system: on an LQR problem it acts (nearly) as the LQR gain on its demonstrations
    obs, act = replay.ordered(carry.algo.data)
    np.testing.assert_allclose(act, obs @ -K.T, atol=0.05 * float(jnp.abs(obs @ K.T).max()))
    ckpt.save(tmp_path / "c.npz", carry, {"algorithm": "imitation"})
    meta, arrays = ckpt.read(tmp_path / "c.npz")
    restored = ckpt.restore(loop.init(jax.random.key(5)), meta, arrays)
    with compilations() as n:
        a, ma = loop.iteration(carry)
        b, mb = loop.iteration(restored)
    assert n[0] == 0 and ma == mb and int(a.env_steps) == 2 * 4 * 20
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(
        *(jax.random.key_data(v) if jnp.issubdtype(v.dtype, jax.dtypes.prng_key) else v for v in (x, y))), a, b)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dagger", "joint"])
def test_pendulum_policy_within_10_percent_of_the_ceiling(mode):
    """DAgger and the joint method reach 90% of the optimal-control ceiling's return on Gymnasium Pendulum-v1, on
    the ceiling's own 100 episodes."""
    from pathwise.ceilings import EVALUATION_SEED
    from pathwise.envs import evaluate
    from pathwise.registry import record
    from pathwise.train import make_run

    per_episode = record("Pendulum-v1").episode_ceilings(EVALUATION_SEED, 100)
    assert per_episode is not None, "no measured ceiling: run python benchmarks/bench_ceiling.py"
    reference = float(np.mean(per_episode))
    run, _ = make_run("imitation", "Pendulum-v1", overrides={"mode": mode})
    for _ in range(run.config.rounds):
        run.iteration()
    result = evaluate(run.act, "Pendulum-v1", episodes=100, seed=EVALUATION_SEED)
    assert result.mean >= 1.1 * reference, (mode, result.mean, reference)


def test_joint_trajectory_moves_from_the_optimizer_to_the_policy_as_rho_grows():
    policy = im.init(jax.random.key(3), SPEC, TINY).policy
    config = dataclasses.replace(TINY, mode="joint", expert_horizon=15, expert_iterations=2)
    x0 = jnp.array([1.0, -0.5])
    solve = jax.jit(lambda rho, x0: im.joint_trajectory(SYSTEM, policy, rho, x0, 10, config))
    states, actions = solve(jnp.asarray(1e-6), x0)  # ~ no penalty: the (receding-horizon) LQR controller
    np.testing.assert_allclose(actions, states @ -K.T, atol=0.02 * float(jnp.max(jnp.abs(actions))))
    gaps = []  # distance to the policy's own actions, as rho grows
    for rho in (1e-6, 1e2, 1e4):
        states, actions = solve(jnp.asarray(rho), x0)
        gaps.append(float(np.max(np.abs(actions - jax.vmap(policy)(states)))))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.1 * gaps[0], gaps
