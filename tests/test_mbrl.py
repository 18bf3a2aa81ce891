"""MBRL: the imagined return against a hand-written loop, the loop's bookkeeping, resume, compile-once, bad input."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pathwise.algorithms.mbrl import MBRL, MBRLConfig, imagined_return
from pathwise.algorithms.model_based import adam_step_if_finite, buffer_dataset
from pathwise.models.fit import TRACE_COUNT as FIT_TRACES
from pathwise.networks import DeterministicPolicy
from pathwise.systems import LinearSystem, Pendulum, SystemEnv, double_integrator

TINY = MBRLConfig(hidden=(8,), model_hidden=(16,), model_steps_per_epoch=5, model_max_epochs=2, model_batch=32,
                  horizon=4, num_starts=4, policy_steps=3, recent_episodes=2, buffer_size=1000)


def test_imagined_return_matches_a_python_loop():
    system = LinearSystem(np.array([[1.0, 0.1], [0.0, 1.0]]), np.array([[0.0], [0.1]]), np.eye(2), 0.1 * np.eye(1))
    policy = DeterministicPolicy(2, 1, -2.0, 2.0, (8,), key=jax.random.key(0), final_scale=1.0)
    starts = jax.random.normal(jax.random.key(1), (3, 2))
    gamma, H = 0.9, 6
    total = 0.0
    for x in np.asarray(starts, np.float64):  # reference: the recursion written out
        for t in range(H):
            u = np.asarray(policy(jnp.asarray(x, jnp.float32)), np.float64)
            total += gamma**t * -(x @ x + 0.1 * u @ u)
            x = np.asarray(system.A, np.float64) @ x + np.asarray(system.B, np.float64) @ u
    np.testing.assert_allclose(imagined_return(policy, system, starts, H, gamma), total / 3, rtol=1e-5)


def test_nonfinite_gradient_skips_the_update():
    policy = DeterministicPolicy(2, 1, -1.0, 1.0, (4,), key=jax.random.key(0))
    opt = optax.adam(0.1)
    state = opt.init(policy)
    bad = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), policy)
    new, _, skipped = adam_step_if_finite(policy, bad, state, opt)
    assert int(skipped) == 1
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(policy)))
    good = jax.tree.map(jnp.ones_like, policy)
    new, _, skipped = adam_step_if_finite(policy, good, state, opt)
    assert int(skipped) == 0 and not np.array_equal(new.net.layers[0].weight, policy.net.layers[0].weight)


SHORT = "pathwise_test/ShortPendulum-v0"  # 50-step episodes keep the test fast


def short_pendulum() -> str:
    from pathwise import rewards

    if SHORT not in gym.registry:
        gym.register(SHORT, entry_point=lambda: SystemEnv(Pendulum()), max_episode_steps=50)
    if not rewards.has(SHORT):
        rewards.register(SHORT, rewards.get("pathwise/Pendulum-v1"))
    return SHORT


@pytest.fixture(scope="module")
def two_iterations():
    learner = MBRL(short_pendulum(), TINY, seed=3)
    m1 = learner.train_iteration()
    m1["traces_after_first"] = learner.traces
    snapshot = learner.get_state()
    m2 = learner.train_iteration()
    return learner, snapshot, m1, m2


def test_loop_bookkeeping(two_iterations):
    learner, _, m1, m2 = two_iterations
    assert learner.env_steps == 100 and int(learner.get_state().episodes) == 2
    data = buffer_dataset(learner.get_state().buffer)
    assert data.obs.shape == (100, 3) and data.ends.sum() == 2 and data.ends[49] and data.ends[99]
    # D holds real transitions: next_obs[t] == obs[t + 1] inside an episode.
    np.testing.assert_array_equal(data.next_obs[:49], data.obs[1:50])
    for m in (m1, m2):
        assert all(np.isfinite(v) for k, v in m.items() if k != "model_multi_step_mse")
    assert m2["skipped_updates"] == 0
    # at most one trace (none if an earlier test compiled this config); the second iteration reused it
    assert learner.traces == m1["traces_after_first"] <= 1
    a = learner.act(np.zeros(3, np.float32))
    assert a.shape == (1,) and -2 <= a[0] <= 2


def test_resume_is_exact(two_iterations):
    learner, snapshot, _, _ = two_iterations
    other = MBRL(short_pendulum(), TINY, seed=99)
    other.set_state(snapshot)
    fit_traces = FIT_TRACES["epoch"]
    other.train_iteration()
    # a second learner with the same config reuses the compiled policy update and model-fit epoch
    assert other.traces == 0 and FIT_TRACES["epoch"] == fit_traces
    for a, b in zip(jax.tree.leaves(other.get_state().policy), jax.tree.leaves(learner.get_state().policy)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_policy_steps_stop_when_the_imagined_return_stops_improving():
    import dataclasses

    # tol 1e9: the second chunk can never beat the first by that much, so exactly two chunks run
    cfg = dataclasses.replace(TINY, policy_steps=6, policy_chunk=2, policy_tol=1e9)
    learner = MBRL(short_pendulum(), cfg, seed=1)
    assert learner.train_iteration()["policy_steps"] == 4
    learner = MBRL(short_pendulum(), dataclasses.replace(cfg, policy_tol=0.0), seed=1)  # 0: every step runs
    assert learner.train_iteration()["policy_steps"] == 6
    with pytest.raises(ValueError, match="policy_chunk"):
        MBRL(short_pendulum(), dataclasses.replace(cfg, policy_chunk=0))


def test_env_without_known_reward_is_refused():
    env_id = "pathwise_test/NoKnownReward-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=lambda: SystemEnv(double_integrator()), max_episode_steps=20)
    with pytest.raises(ValueError, match="no known reward"):
        MBRL(env_id, TINY)


@pytest.mark.slow
def test_mbrl_swings_up_pendulum_within_2000_steps():
    from pathwise.envs import evaluate
    from pathwise.train import build_config

    config, _ = build_config(MBRL, "Pendulum-v1")  # the shipped preset
    learner = MBRL("Pendulum-v1", config, seed=0)
    best = -np.inf
    while learner.env_steps < 2000 and best < -200:
        learner.train_iteration()
        best = max(best, evaluate(lambda o: learner.act(o), "Pendulum-v1", episodes=10, seed=10_000).mean)
    assert best >= -200
