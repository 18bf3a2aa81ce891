"""Systems behind the Gymnasium API: check_env, registered ids, seeding, bad input."""

import re
import warnings

import gymnasium as gym
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import pathwise.systems as ps
from pathwise.systems import to_gymnasium

SYSTEMS = {
    "pendulum": ps.Pendulum(),
    "pendulum-noisy": ps.Pendulum(noise_std=0.05),
    "mountaincar": ps.MountainCarContinuous(),
    "mountaincar-noisy": ps.MountainCarContinuous(noise_std=1e-3),
    "cartpole": ps.CartPole(),
    "cartpole-noisy": ps.CartPole(noise_std=0.01),
    "swingup": ps.CartPoleSwingUp(),
    "swingup-noisy": ps.CartPoleSwingUp(noise_std=0.01),
    "acrobot": ps.Acrobot(),
    "acrobot-noisy": ps.Acrobot(noise_std=0.01),
    "acrobot-continuous": ps.AcrobotContinuous(noise_std=0.01),
    "double-integrator-noisy": ps.double_integrator(noise_std=0.1),
    "linear-3x2": ps.LinearSystem(np.eye(3) * 0.9, np.ones((3, 2)), horizon=50),
}


# Advice that Gymnasium's checker also gives its own envs (Pendulum-v1's torque box is [-2, 2]) or that an
# unbounded (noisy or linear) state space necessarily triggers; any other warning fails the test.
ALLOWED_WARNINGS = ("we recommend using a symmetric and normalized space", "observation space m[a-z]+ value is -?infinity")


def check_without_warnings(env):
    """``check_env`` must pass, and must not warn except the advice in ``ALLOWED_WARNINGS``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    unexpected = [str(w.message) for w in caught if not any(re.search(p, str(w.message)) for p in ALLOWED_WARNINGS)]
    assert not unexpected, unexpected


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_check_env_passes(name):
    check_without_warnings(to_gymnasium(SYSTEMS[name]).unwrapped)


@pytest.mark.parametrize("env_id", sorted(ps.REGISTRY))
def test_registered_ids_make_valid_envs_with_time_limits(env_id):
    env = gym.make(env_id)
    check_without_warnings(env.unwrapped)
    assert env.spec.max_episode_steps == ps.REGISTRY[env_id]().episode_length
    obs, _ = env.reset(seed=0)
    for t in range(env.spec.max_episode_steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) or ps.REGISTRY[env_id]().stochastic
        if terminated or truncated:
            break
    assert terminated or (truncated and t + 1 == env.spec.max_episode_steps)


def rollout_obs(env, seed, steps=30):
    env.action_space.seed(seed)
    obs = [env.reset(seed=seed)[0]]
    for _ in range(steps):
        o, _, terminated, truncated, _ = env.step(env.action_space.sample())
        obs.append(o)
        if terminated or truncated:
            break
    return np.stack(obs)


@pytest.mark.parametrize("name", ["pendulum-noisy", "acrobot-noisy", "cartpole"])
def test_same_seed_same_episode_and_noise(name):
    env = to_gymnasium(SYSTEMS[name])
    a, b, c = rollout_obs(env, 3), rollout_obs(env, 3), rollout_obs(env, 4)
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_process_noise_is_applied_in_the_gym_env():
    # Same seed, same actions: the noisy system's trajectory differs from the noiseless one by the noise only.
    quiet, noisy = to_gymnasium(ps.Pendulum()), to_gymnasium(ps.Pendulum(noise_std=0.05))
    o1, o2 = quiet.reset(seed=0)[0], noisy.reset(seed=0)[0]
    np.testing.assert_array_equal(o1, o2)
    s_quiet = quiet.unwrapped.state
    noisy.step(np.array([0.5], np.float32))
    expected = ps.Pendulum().step(s_quiet, jnp.array([0.5]))
    diff = np.asarray(noisy.unwrapped.state - expected)
    assert 0 < np.abs(diff).max() < 0.5


def test_bad_actions_and_states_raise_clear_errors():
    env = to_gymnasium(ps.Pendulum())
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected an action of shape \(1,\), got shape \(2,\)"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="action contains NaN"):
        env.step(np.array([np.nan], np.float32))
    env.unwrapped.state = jnp.array([np.nan, 0.0])
    with pytest.raises(ValueError, match="the state became non-finite"):
        env.step(np.zeros(1, np.float32))
    cartpole = to_gymnasium(ps.CartPole())
    cartpole.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected an integer action in \[0, 2\)"):
        cartpole.step(0.5)
    with pytest.raises(RuntimeError, match="Call reset"):
        ps.SystemEnv(ps.Pendulum()).step(np.zeros(1, np.float32))
    with pytest.raises(TypeError, match="expects a pathwise System"):
        to_gymnasium("Pendulum-v1")


def test_system_level_bad_input_names_the_problem():
    pend = ps.Pendulum()
    with pytest.raises(ValueError, match=r"action must have shape \(1,\), got \(\)\. Wrap a scalar"):
        pend.step(jnp.zeros(2), jnp.array(0.5))
    with pytest.raises(ValueError, match=r"state must have shape \(2,\), got \(5, 2\).*jax.vmap"):
        pend.step(jnp.zeros((5, 2)), jnp.zeros(1))
    with pytest.raises(ValueError, match=r"noise must have the state's shape \(2,\)"):
        pend.step(jnp.zeros(2), jnp.zeros(1), jnp.zeros(3))
    with pytest.raises(ValueError, match="one-hot/relaxed vector of shape \\(2,\\)"):
        ps.CartPole().step(jnp.zeros(4), jnp.zeros(3))
    with pytest.raises(ValueError, match="Unknown system 'pendulm'"):
        ps.make("pendulm")
