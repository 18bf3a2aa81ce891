"""MuJoCo (the ``mujoco`` extra): InvertedPendulum-v5's known reward/termination and svgk end to end on it; Hopper-v5's
termination and HalfCheetah-v5's (none) against Gymnasium."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

# Gymnasium's MuJoCo envs, not just the mujoco package (brax pulls mujoco in without imageio, which they need);
# without mujoco Gymnasium raises its own DependencyNotInstalled, not an ImportError
try:
    import gymnasium.envs.mujoco.mujoco_env  # noqa: F401
except (ImportError, gym.error.DependencyNotInstalled) as err:
    pytest.skip(f"needs the mujoco extra (pip install -e '.[mujoco]'): {err}", allow_module_level=True)

from pathwise import registry  # noqa: E402
from pathwise.algorithms import svgk  # noqa: E402
from pathwise.models import DynamicsModel, LearnedModel  # noqa: E402

ENV = "InvertedPendulum-v5"
RECORD = registry.record(ENV)


def test_reward_and_termination_equal_gymnasium():
    """Independent reference: the env's own reward and terminated flag, over random-action episodes."""
    env = gym.make(ENV)
    fn, term = RECORD.reward, RECORD.terminated
    rng = np.random.default_rng(0)
    checked = terminal = 0
    for ep in range(6):
        obs, _ = env.reset(seed=ep)
        done = False
        while not done:
            action = rng.uniform(-3, 3, size=(1,)).astype(np.float32)
            nxt, r, terminated, truncated, _ = env.step(action)
            assert float(fn(jnp.asarray(obs), jnp.asarray(action), jnp.asarray(nxt))) == r
            assert bool(term(jnp.asarray(nxt))) == terminated
            checked += 1
            terminal += terminated
            obs, done = nxt, terminated or truncated
    env.close()
    assert checked > 10 and terminal == 6  # random actions drop the pole in every episode


def test_reward_derivative_is_the_surrogate_s():
    """Value exact (0/1), derivative that of 1 - (angle / 0.2)^2 on the next observation only."""
    fn = RECORD.reward
    nxt = jnp.array([0.1, 0.05, 0.0, 0.3])
    g_obs, g_act, g_next = jax.grad(fn, argnums=(0, 1, 2))(jnp.zeros(4), jnp.zeros(1), nxt)
    np.testing.assert_allclose(g_next, [0.0, -2 * 0.05 / 0.2**2, 0.0, 0.0], rtol=1e-6)
    assert float(jnp.abs(g_obs).max()) == 0.0 and float(jnp.abs(g_act).max()) == 0.0
    assert float(fn(jnp.zeros(4), jnp.zeros(1), nxt)) == 1.0
    assert float(fn(jnp.zeros(4), jnp.zeros(1), nxt.at[1].set(-0.25))) == 0.0


TINY = svgk.Config(hidden=(16,), critic_hidden=(16,), horizon=4, n_envs=8, critic_iterations=1, critic_minibatches=2,
                   updates_per_episode=2, model_hidden=(16,), model_steps_per_epoch=5, model_max_epochs=2,
                   buffer_size=2000, recent_episodes=1, min_steps_per_iteration=50)


def test_svgk_trains_end_to_end_on_inverted_pendulum(tmp_path):
    from pathwise.train import train

    trainer, summary = train("svgk", ENV, 100, config=TINY, out=tmp_path / "run", eval_every=100,
                             eval_episodes=2, quiet=True)
    assert summary["env_steps"] >= 100 and summary["nonfinite_iterations"] == 0
    assert np.isfinite(summary["final_return_mean"]) and summary["final_return_mean"] >= 1.0
    assert trainer.run.loop.kind == "model_based"
    assert trainer.history[0]["episodes_collected"] >= 1  # whole episodes until min_steps_per_iteration
    # The imagined rollouts stop where the real env would: the learned system carries the termination.
    from pathwise.loops.model_based import learned_system

    system = learned_system(trainer.run.carry.model, trainer.run.spec, 10)
    assert system.terminal_fn is RECORD.terminated
    assert (tmp_path / "run" / "summary.json").exists()


def test_imagined_rollouts_stop_at_the_termination():
    model = DynamicsModel(4, 1, (8,), key=jax.random.key(0))
    system = LearnedModel(model, RECORD.reward, terminal_fn=RECORD.terminated, action_low=-3.0, action_high=3.0,
                          horizon=10)
    assert bool(system.terminated(jnp.array([0.0, 0.3, 0.0, 0.0])))
    assert not bool(system.terminated(jnp.array([0.0, 0.1, 0.0, 0.0])))
    no_term = LearnedModel(model, RECORD.reward, action_low=-3.0, action_high=3.0, horizon=10)
    assert not bool(no_term.terminated(jnp.array([0.0, 0.3, 0.0, 0.0])))


def _terminations(env_id, steps, seed=0):
    """(registered termination on the next observation, Gymnasium's ``terminated``) over random-action steps."""
    env, fn = gym.make(env_id), jax.jit(registry.record(env_id).terminated)
    rng = np.random.default_rng(seed)
    out, episode = [], 0
    obs, _ = env.reset(seed=seed)
    while len(out) < steps:
        action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        obs, _, terminated, truncated, _ = env.step(action)
        out.append((bool(fn(jnp.asarray(obs, jnp.float32))), bool(terminated)))
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    env.close()
    return np.array(out)


def test_hopper_termination_equals_gymnasium():
    """Independent reference: Hopper-v5's own ``terminated`` (its healthy checks on the simulator state)."""
    got = _terminations("Hopper-v5", 400)
    np.testing.assert_array_equal(got[:, 0], got[:, 1])
    assert 3 <= got[:, 1].sum() < len(got)  # random actions topple the hopper in several episodes


def test_hopper_termination_on_each_healthy_bound():
    """Closed form: obs = [z, angle, 3 joint angles, 6 velocities]; healthy iff z > 0.7, |angle| < 0.2 and every
    entry after z within (-100, 100); NaN is unhealthy."""
    fn = registry.record("Hopper-v5").terminated
    healthy = jnp.array([1.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert not bool(fn(healthy))
    for index, value in ((0, 0.69), (1, 0.21), (1, -0.21), (3, 100.5), (4, -100.5), (2, jnp.nan)):
        assert bool(fn(healthy.at[index].set(value))), (index, value)
    assert not bool(fn(healthy.at[0].set(150.0)))  # z has no upper bound and is not in the state range


def test_half_cheetah_never_terminates():
    got = _terminations("HalfCheetah-v5", 200)
    assert not got.any()


def test_half_cheetah_records_its_torso_pitch_as_an_unwrapped_angle():
    """Observation entry 1 is ``rooty`` (qpos[2]: the observation drops rootx), a hinge without limits, so a flip
    winds it past ±π: the record names it, and the networks see it as (cos, sin)."""
    assert registry.record("HalfCheetah-v5").angles == registry.CHEETAH_ANGLES == (1,)
    env = gym.make("HalfCheetah-v5")
    obs, _ = env.reset(seed=0)
    model, data = env.unwrapped.model, env.unwrapped.data
    rooty = model.joint("rooty")
    assert obs[1] == data.qpos[rooty.qposadr[0]] and not model.jnt_limited[rooty.id]
    assert model.jnt_type[rooty.id] == 3  # mjJNT_HINGE
    env.close()
