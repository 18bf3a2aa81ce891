"""The DeepMind Control Suite (the ``dmc`` extra): ids made through Shimmy, flat float32 observations in the Dict's
key order, 1000-step truncated episodes, determinism by seed, a CLI run with its summary, and exact resume.

Without the extra every test but the first skips with the reason; the first checks the error that names the fix.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest

from pathwise import registry
from pathwise.envs import dmc

try:
    with warnings.catch_warnings():  # dm_control looks for a display at import
        warnings.simplefilter("ignore")
        import dm_control.suite  # noqa: F401
        import shimmy  # noqa: F401
    MISSING = None
except ImportError as err:
    MISSING = f"needs the dmc extra (pip install -e '.[dmc]'): {err}"

needs_dmc = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
ENV = "dm_control/cartpole-swingup-v0"


def test_missing_extra_is_an_error_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "shimmy", None)  # `import shimmy` raises ImportError, as when not installed
    dmc.suite_ids.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"pip install 'pathwise\[dmc\]'"):
            registry.check_id(ENV)
    finally:
        dmc.suite_ids.cache_clear()
    assert registry.check_id("Pendulum-v1") == "Pendulum-v1"  # other ids never ask for the extra


@needs_dmc
def test_unknown_suite_id_lists_the_closest_ones():
    with pytest.raises(ValueError, match=r"Did you mean dm_control/cartpole-swingup-v0") as err:
        registry.check_id("dm_control/cartpole-swing-v0")
    assert "suite_ids()" in str(err.value)
    with pytest.raises(ValueError, match="outside the Control Suite"):
        registry.check_id("dm_control/compatibility-env-v0")
    assert ENV in dmc.suite_ids() and "dm_control/cheetah-run-v0" in dmc.suite_ids()


def _raw(env):
    """Shimmy's environment under pathwise's wrappers (its observation is the suite's dictionary)."""
    return env.unwrapped


@needs_dmc
def test_flat_observation_is_the_dictionary_in_key_order_over_a_truncated_episode():
    import gymnasium as gym

    from pathwise import spec as spec_mod

    env = gym.make(ENV)
    assert env.observation_space == gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
    assert dmc.observation_layout(ENV) == {"position": slice(0, 3), "velocity": slice(3, 5)}
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    steps, term = 0, registry.record(ENV).terminated
    while True:
        raw = _raw(env)._env.physics  # the suite's own reading of the state, independent of the wrappers
        expected = np.concatenate([raw.bounded_position(), raw.velocity()]).astype(np.float32)
        np.testing.assert_array_equal(obs, expected)
        assert obs.dtype == np.float32
        obs, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, (1,)))
        steps += 1
        assert 0.0 <= reward <= 1.0 and terminated == bool(term(obs)) == False  # noqa: E712
        if truncated:
            break
    env.close()
    assert steps == dmc.EPISODE_STEPS == 1000
    spec = spec_mod.from_env(ENV)
    assert (spec.obs_dim, spec.action_dim, spec.episode_length, spec.action_low) == (5, 1, 1000, (-1.0,))


@needs_dmc
def test_reset_and_step_are_deterministic_by_seed():
    from pathwise.envs import make_env

    def trajectory(seed):
        env = make_env(ENV, seed=seed)
        rows = [env.reset(seed=seed)[0]]
        actions = np.random.default_rng(1).uniform(-1, 1, (40, 1))
        rows += [env.step(a)[0] for a in actions]
        env.close()
        return np.stack(rows)

    a, b, c = trajectory(7), trajectory(7), trajectory(8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], c[0])  # another seed, another start


@needs_dmc
def test_records_of_the_issue_tasks():
    for env_id in registry.DMC_SOLVED:
        rec = registry.record(env_id)
        assert rec.max_return == 1000.0 and not bool(rec.terminated(np.zeros(3, np.float32)))
        assert registry.check_id(env_id) == env_id
    assert registry.record(ENV).solved_at == 800.0 and registry.record("dm_control/cheetah-run-v0").solved_at is None


@needs_dmc
def test_reacher_easy_reward_is_the_suites_and_its_gradient_points_at_the_target():
    """Reference: the suite's own reward over three 1000-step episodes of random actions held for 20 steps each
    (the fingertip passes through the target in some of their steps, so both values occur)."""
    import jax

    from pathwise import rewards
    from pathwise.envs import make_env

    env_id = "dm_control/reacher-easy-v0"
    fn = registry.record(env_id).reward
    assert fn is rewards.reacher_easy_reward
    env = make_env(env_id)
    obs, next_obs, actions, expected = [], [], [], []
    for episode in range(3):
        o, _ = env.reset(seed=episode)
        rng = np.random.default_rng(episode)
        for t in range(1000):
            if t % 20 == 0:
                a = rng.uniform(-1, 1, 2)
            o2, r, terminated, truncated, _ = env.step(a)
            obs.append(o), next_obs.append(o2), actions.append(a), expected.append(r)
            o = o2
            if terminated or truncated:
                break
    got = jax.jit(jax.vmap(fn))(np.array(obs), np.array(actions, np.float32), np.array(next_obs))
    expected = np.array(expected)
    assert 0 < (expected == 1.0).sum() < len(expected) and set(np.unique(expected)) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.asarray(got), expected)
    # the value is a step; the derivative (of 1 - d / 0.06) pulls the fingertip towards the target from anywhere
    far = np.array([0.3, -0.2, 0.1, -0.1, 0.5, 0.5], np.float32)
    grad = np.asarray(jax.grad(lambda o2: fn(far, np.zeros(2, np.float32), o2))(far))
    np.testing.assert_allclose(grad[2:4], -far[2:4] / np.linalg.norm(far[2:4]) / rewards.REACHER_EASY_RADII,
                               rtol=1e-5)
    assert not grad[[0, 1, 4, 5]].any()
    # acting every Nth control step sums rewards of unobserved states: no function of one transition is it
    assert registry.record("dm_control/reacher-easy-repeat4-v0").reward is None


@needs_dmc
def test_reacher_is_unchanged_by_the_mirror_the_guide_gives():
    """``mirror=[-1,-1,1,-1,-1,-1,-1,-1]`` (docs/guide.md): from a state with its target, and from its reflection
    across the x axis (both joint angles, the target's y and both velocities negated) under the negated torques, the
    suite steps to mirror images of each other: the signs describe a symmetry of the dynamics, not only the reward."""
    from pathwise.envs import make_env

    signs = np.array([-1, -1, 1, -1, -1, -1], np.float64)
    env = make_env("dm_control/reacher-easy-v0")
    physics = env.unwrapped._env.physics
    rng = np.random.default_rng(0)
    for episode in range(3):
        env.reset(seed=episode)
        for _ in range(20):
            env.step(rng.uniform(-1, 1, 2))
        qpos, qvel = physics.data.qpos.copy(), physics.data.qvel.copy()
        target = physics.named.model.geom_pos["target"].copy()
        action = rng.uniform(-1, 1, 2)
        after = env.step(action)[0]
        physics.data.qpos[:], physics.data.qvel[:] = -qpos, -qvel
        physics.named.model.geom_pos["target"][:2] = target[:2] * np.array([1.0, -1.0])
        physics.forward()
        np.testing.assert_allclose(env.step(-action)[0], after * signs, atol=1e-6)


@needs_dmc
def test_reacher_records_its_shoulder_as_an_unwrapped_angle():
    """The shoulder (entry 0) has no joint limit and is observed unwrapped, so a steady torque winds it past 2π;
    the wrist (entry 1) stops near its limit. The networks see entry 0 as (cos, sin), an action-repeat id too."""
    from pathwise.envs import make_env

    assert registry.record("dm_control/reacher-easy-v0").angles == (0,)
    assert registry.record("dm_control/reacher-easy-repeat2-v0").angles == (0,)
    env = make_env("dm_control/reacher-easy-v0")
    env.reset(seed=0)
    seen = np.array([env.step(np.array([1.0, 1.0]))[0][:2] for _ in range(400)])
    # the wrist's limit is ±2.79 rad, which the soft constraint lets it pass by ~0.1: never near a wrap at ±π
    assert seen[:, 0].max() > 2 * np.pi and 2.7 < np.abs(seen[:, 1]).max() < 3.0


@needs_dmc
def test_reacher_wrist_limits_the_guide_gives_are_the_suites():
    """``joint_limits=[1,5,1,-2.7925,2.7925]`` (docs/guide.md, the benchmark's ``:limits``): observation entries 1
    and 5 are the wrist's angle and velocity, action 1 its motor (a positive torque turns it positive), and its
    range is ±160° = ±2.7925 rad; pushed into the stop it stays within 0.15 rad past it and comes to rest."""
    from pathwise.envs import make_env
    from pathwise.loops.model_based import ModelOptions
    from pathwise.spec import from_env

    options = ModelOptions(joint_limits=(1.0, 5.0, 1.0, -2.7925, 2.7925))
    assert options.limits(from_env("dm_control/reacher-easy-v0")) == ((1, 5, 1, -2.7925, 2.7925),)
    env = make_env("dm_control/reacher-easy-v0")
    physics = env.unwrapped._env.physics
    np.testing.assert_allclose(physics.named.model.jnt_range["wrist"], [-2.7925, 2.7925], atol=1e-4)
    assert physics.named.model.actuator_trnid["wrist"][0] == physics.model.name2id("wrist", "joint")
    assert physics.named.model.actuator_gear["wrist"][0] > 0
    for sign in (1.0, -1.0):
        env.reset(seed=0)
        seen = np.array([env.step(np.array([0.0, sign]))[0] for _ in range(200)])
        np.testing.assert_allclose(seen[-1, [1, 5]], [physics.named.data.qpos["wrist"][0],
                                                     physics.named.data.qvel["wrist"][0]], atol=1e-6)
        assert 2.7925 < sign * seen[-1, 1] < 2.7925 + 0.15 and abs(seen[-1, 5]) < 1e-2
        assert np.all(sign * np.diff(seen[:20, 1]) > 0)  # it turned the way the torque pushes


@needs_dmc
def test_action_repeat_holds_each_action_and_sums_the_rewards():
    """Reference: the task without repeat, stepped twice with each action by hand."""
    import gymnasium as gym

    from pathwise import spec as spec_mod

    repeated_id = "dm_control/cartpole-swingup-repeat2-v0"
    assert registry.check_id(repeated_id) == repeated_id and dmc.split_repeat(repeated_id) == (ENV, 2)
    repeated, plain = gym.make(repeated_id), gym.make(ENV)
    obs, _ = repeated.reset(seed=5)
    np.testing.assert_array_equal(obs, plain.reset(seed=5)[0])
    actions, decisions = np.random.default_rng(2).uniform(-1, 1, (600, 1)), 0
    for action in actions:
        obs, reward, terminated, truncated, _ = repeated.step(action)
        first, second = plain.step(action), plain.step(action)
        np.testing.assert_array_equal(obs, second[0])
        assert reward == pytest.approx(first[1] + second[1], abs=1e-12) and not terminated
        decisions += 1
        if truncated:
            assert second[3]  # the suite's own limit, 1000 control steps, is 500 decisions
            break
    assert decisions == 500 and spec_mod.from_env(repeated_id).episode_length == 500
    rec = registry.record(repeated_id)
    assert (rec.solved_at, rec.max_return, rec.terminated) == (800.0, 1000.0, registry.record(ENV).terminated)
    for bad in ("dm_control/cartpole-swingup-repeat1-v0", "dm_control/cartpole-swingup-repeat0-v0"):
        with pytest.raises(ValueError, match="must be 2 or more"):
            registry.check_id(bad)
    with pytest.raises(ValueError, match="integer >= 1"):
        dmc.ActionRepeat(plain, 0)


TINY = ["--set", "hidden=8", "critic_hidden=8", "batch_size=8", "buffer_size=3000", "learning_starts=200",
        "updates_per_step=0.1"]


@needs_dmc
def test_cli_trains_ddpg_writes_a_summary_and_resumes(tmp_path):
    from pathwise.cli import main

    run = tmp_path / "run"
    argv = ["train", "ddpg", "--env", ENV, "--steps", "1000", "--out", str(run), "--quiet", "--eval-episodes", "1",
            "--eval-every", "1000", "--no-preset", *TINY]
    assert main(argv) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_id"] == ENV and summary["env_steps"] == 1000 and summary["solved_threshold"] == 800.0
    assert 0.0 <= summary["final_return_mean"] <= 1000.0 and summary["nonfinite_iterations"] == 0
    assert main(["train", "--resume", str(run), "--steps", "2000", "--quiet"]) == 0
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["env_steps"] == 2000 and len((run / "eval.csv").read_text().strip().splitlines()) == 3


@needs_dmc
def test_a_checkpoint_resumes_the_replay_loop_exactly(tmp_path):
    import jax
    from test_ddpg import check_exact_resume, make_loop

    from pathwise.algorithms import ddpg

    config = ddpg.Config(hidden=(8,), critic_hidden=(8,), batch_size=8, buffer_size=3000, learning_starts=200,
                         updates_per_step=0.1)
    loop = make_loop("ddpg", ENV, config)
    carry, _ = loop.iteration(loop.init(jax.random.key(0)))
    _, metrics = check_exact_resume(loop, carry, tmp_path)
    assert all(np.isfinite(float(v)) for v in metrics.values())


@needs_dmc
def test_cheetah_run_records_its_torso_pitch_as_an_unwrapped_angle():
    """The flat observation starts with ``position`` = qpos[1:] (rootz, rooty, ...): entry 1 is ``rooty``, a
    hinge without limits observed unwrapped, which the record names (as HalfCheetah-v5's)."""
    from pathwise.envs import make_env

    assert registry.record("dm_control/cheetah-run-v0").angles == registry.CHEETAH_ANGLES == (1,)
    env = make_env("dm_control/cheetah-run-v0")
    obs, _ = env.reset(seed=0)
    physics = env.unwrapped._env.physics
    rooty = physics.model.name2id("rooty", "joint")
    assert physics.model.jnt_qposadr[rooty] == 2 and obs[1] == np.float32(physics.data.qpos[2])
    assert physics.model.jnt_type[rooty] == 3 and not physics.model.jnt_limited[rooty]  # a hinge, no limits
