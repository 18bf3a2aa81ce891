"""MBRL: the imagined return against a hand-written loop, non-finite skipping, early stopping, the model-based
loop's bookkeeping, exact resume through a checkpoint, compile-once, bad input."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import checkpoint as ckpt
from pathwise import loops, registry, replay
from pathwise.algorithms import get, mbrl
from pathwise.loops.model_based import ModelData, dataset, learned_system
from pathwise.models import DynamicsModel
from pathwise.networks import DeterministicPolicy
from pathwise.spec import from_env
from pathwise.systems import LinearSystem, Pendulum, SystemEnv, double_integrator
from pathwise.types import Transition

TINY = mbrl.Config(hidden=(8,), model_hidden=(16,), model_steps_per_epoch=5, model_max_epochs=2, model_batch=32,
                   horizon=4, num_starts=4, policy_steps=3, recent_episodes=2, buffer_size=1000)
ALGO = get("mbrl")
SHORT = "pathwise_test/ShortPendulum-v0"  # 50-step episodes keep the test fast


def short_pendulum() -> str:
    if SHORT not in gym.registry:
        gym.register(SHORT, entry_point=lambda: SystemEnv(Pendulum()), max_episode_steps=50)
    if registry.record(SHORT).reward is None:
        registry.register(SHORT, reward=registry.record("pathwise/Pendulum-v1").reward)
    return SHORT


def toy_data(spec, model: DynamicsModel, n: int = 64) -> ModelData:
    """``ModelData`` with ``n`` random transitions in D and ``model`` as the (unfitted) learned system."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, spec.obs_dim)).astype(np.float32)
    item = Transition(obs[0], np.zeros(spec.action_dim, np.float32), np.float32(0), obs[0], False, False)
    batch = Transition(obs, np.zeros((n, spec.action_dim), np.float32), np.zeros(n, np.float32), obs,
                       np.zeros(n, bool), np.zeros(n, bool))
    buffer = replay.add_batch(replay.init(item, 128), batch)
    return ModelData(learned_system(model, spec, 50), buffer, None)


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
    np.testing.assert_allclose(mbrl.imagined_return(policy, system, starts, H, gamma), total / 3, rtol=1e-5)


def test_nonfinite_model_skips_every_policy_step():
    spec = from_env(short_pendulum())
    model = DynamicsModel(spec.obs_dim, spec.action_dim, (8,), key=jax.random.key(0))
    broken = eqx.tree_at(lambda m: m.nets, model, jax.tree.map(
        lambda x: jnp.full_like(x, jnp.nan) if eqx.is_inexact_array(x) else x, model.nets))
    state = mbrl.init(jax.random.key(1), spec, TINY)
    new, metrics = mbrl.update(state, toy_data(spec, broken), jax.random.key(2), TINY)
    assert int(metrics["skipped_total"]) == TINY.policy_steps
    jax.tree.map(np.testing.assert_array_equal, eqx.filter(new.policy, eqx.is_array),
                 eqx.filter(state.policy, eqx.is_array))
    new, metrics = mbrl.update(state, toy_data(spec, model), jax.random.key(2), TINY)  # a finite model: it moves
    assert int(metrics["skipped_total"]) == 0 and np.isfinite(float(metrics["imagined_return"]))
    assert not np.array_equal(new.policy.net.layers[0].weight, state.policy.net.layers[0].weight)


def test_policy_steps_stop_when_the_imagined_return_stops_improving():
    spec = from_env(short_pendulum())
    data = toy_data(spec, DynamicsModel(spec.obs_dim, spec.action_dim, (8,), key=jax.random.key(0)))
    # tol 1e9: the second chunk can never beat the first by that much, so exactly two chunks run
    cfg = dataclasses.replace(TINY, policy_steps=6, policy_chunk=2, policy_tol=1e9)
    state = mbrl.init(jax.random.key(1), spec, cfg)
    assert float(mbrl.update(state, data, jax.random.key(2), cfg)[1]["policy_steps"]) == 4
    cfg = dataclasses.replace(cfg, policy_tol=0.0)  # 0: every step runs
    assert float(mbrl.update(state, data, jax.random.key(2), cfg)[1]["policy_steps"]) == 6


def test_act_stays_in_the_box_and_explores_with_the_state_std():
    spec = from_env(short_pendulum())
    state = mbrl.init(jax.random.key(0), spec, TINY)
    obs = jnp.array([1.0, 0.0, 0.0])
    mode = mbrl.act(state, obs, jax.random.key(1), True)
    assert mode.shape == (1,) and -2 <= float(mode[0]) <= 2
    np.testing.assert_array_equal(mbrl.act(state, obs, jax.random.key(1), False),
                                  mbrl.act(state, obs, jax.random.key(1), False))  # the key is the only randomness
    samples = jax.vmap(lambda k: mbrl.act(state, obs, k, False))(jax.random.split(jax.random.key(2), 2000))
    assert float(samples.min()) >= -2 and float(samples.max()) <= 2
    # the exploration noise has std explore_std * (high - low) = 0.1 * 4 (mode near 0: no clipping)
    np.testing.assert_allclose(float(jnp.std(samples)), 0.4, rtol=0.1)
    quiet = mbrl.act(state._replace(explore_std=jnp.asarray(0.0)), obs, jax.random.key(3), False)
    np.testing.assert_allclose(quiet, mode, rtol=1e-6)


@pytest.fixture(scope="module")
def two_iterations():
    loop = loops.make(ALGO, from_env(short_pendulum()), TINY)
    carry, m1 = loop.iteration(loop.init(jax.random.key(3)))
    snapshot = carry
    carry, m2 = loop.iteration(carry)
    return loop, snapshot, carry, m1, m2


def test_loop_bookkeeping(two_iterations):
    loop, _, carry, m1, m2 = two_iterations
    assert loop.kind == "model_based"
    assert int(carry.env_steps) == 100 and int(carry.episodes) == 2
    data = dataset(carry.buffer)
    assert data.obs.shape == (100, 3) and data.ends.sum() == 2 and data.ends[49] and data.ends[99]
    # D holds real transitions: next_obs[t] == obs[t + 1] inside an episode.
    np.testing.assert_array_equal(data.next_obs[:49], data.obs[1:50])
    assert int(carry.recent.size) == 2 and list(np.asarray(carry.recent.storage[1])) == [50, 50]
    for m in (m1, m2):
        assert all(np.isfinite(v) for v in m.values()) and {"imagined_return", "model_one_step_mse"} <= set(m)
    assert m2["skipped_total"] == 0 and m2["policy_steps"] == TINY.policy_steps


def test_resume_through_a_checkpoint_is_exact(two_iterations, tmp_path):
    _, snapshot, carry, _, m2 = two_iterations
    ckpt.save(tmp_path / "last.npz", snapshot, {"algorithm": "mbrl"})
    other = loops.make(ALGO, from_env(short_pendulum()), TINY)
    fresh = other.init(jax.random.key(99))  # another seed: everything must come from the checkpoint
    meta, arrays = ckpt.read(tmp_path / "last.npz")
    resumed, m = other.iteration(ckpt.restore(fresh, meta, arrays))
    assert m == m2
    jax.tree.map(np.testing.assert_array_equal, eqx.filter(resumed.algo, eqx.is_array),
                 eqx.filter(carry.algo, eqx.is_array))


def test_later_iterations_compile_nothing(two_iterations, compilations):
    """Collecting, refitting on a grown D and the policy update reuse the programs of the first iterations."""
    loop, _, carry, _, _ = two_iterations
    with compilations() as n:
        carry, _ = loop.iteration(carry)
    assert n[0] == 0 and int(carry.buffer.size) == 150


@pytest.mark.parametrize("change, match", [
    (dict(policy_chunk=0), "policy_chunk"),
    (dict(horizon=0), "horizon"),
    (dict(gamma=1.5), "gamma"),
    (dict(policy_tol=-1.0), "policy_tol"),
    (dict(model_batch=0), "model_batch"),
    (dict(buffer_size=10), "buffer_size"),  # D could never hold enough transitions to fit
])
def test_bad_config_is_a_clear_error(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **change)


def test_buffer_smaller_than_an_episode_is_refused():
    with pytest.raises(ValueError, match="buffer_size=45 must hold at least one whole episode"):
        loops.make(ALGO, from_env(short_pendulum()), dataclasses.replace(TINY, buffer_size=45))


def test_env_without_known_reward_learns_it_unless_known_is_asked_for():
    env_id = "pathwise_test/NoKnownReward-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=lambda: SystemEnv(double_integrator()), max_episode_steps=20)
    loop = loops.make(ALGO, from_env(env_id), TINY)
    assert (loop.learn_reward, loop.learn_termination) == (True, True)
    with pytest.raises(ValueError, match="reward_source='known' but no reward of 'pathwise_test/NoKnownReward-v0' is "
                                         "registered; register one .*or use reward_source='auto' or 'learned'"):
        loops.make(ALGO, from_env(env_id), dataclasses.replace(TINY, reward_source="known"))


@pytest.mark.slow
def test_mbrl_swings_up_pendulum_within_2000_steps():
    from pathwise.train import train

    _, summary = train("mbrl", "Pendulum-v1", 2000, seed=0, eval_every=200, eval_episodes=10, quiet=True,
                       callback=lambda info: "eval_return_mean" not in info or info["eval_return_mean"] < -200)
    assert summary["steps_to_solve"] is not None and summary["steps_to_solve"] <= 2000


@pytest.mark.parametrize("algo", ["mbrl", "svg-inf"])
def test_the_policy_sees_the_records_unwrapped_angles_as_cos_sin(algo):
    """CartPoleSwingUp's record names its pole angle (entry 2): mbrl's and svg-inf's policies act the same a turn
    later, and ``angle_features=()`` keeps the policy of a run recorded before angle features (raw input)."""
    module = get(algo).module
    config = module.Config(hidden=(8,))
    spec = from_env("pathwise/CartPoleSwingUp-v0")
    obs = jnp.array([0.1, -0.3, 2.0, 0.5])
    turned = obs.at[2].add(2 * jnp.pi)
    for angles, periodic in ((None, True), ((), False)):
        state = module.init(jax.random.key(0), spec, dataclasses.replace(config, angle_features=angles))
        act = [module.act(state, o, jax.random.key(1), True) for o in (obs, turned)]
        assert np.allclose(*act, atol=1e-6) == periodic, (angles, act)
