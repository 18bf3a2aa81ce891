"""pathwise.rewards against the environments' own rewards (Gymnasium and the pathwise ids), and the
environment registry that records them."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pathwise.systems
from pathwise import registry, rewards

TOL = 1e-5  # float32 reward on float32 observations vs Gymnasium's float64 arithmetic


def record(env_id, policy, steps, seed):
    """Step ``env_id`` for ``steps`` steps (resetting at episode ends); return stacked (obs, action, reward, next_obs)."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(steps):
        action = policy(obs, rng)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, np.asarray(action), reward, next_obs))
        obs = env.reset()[0] if terminated or truncated else next_obs
    env.close()
    return [np.stack(col) for col in zip(*rows)]


def batched(fn):
    return jax.jit(jax.vmap(fn))


def test_pendulum_reward_equals_gymnasium_over_random_steps():
    # Torques beyond the [-2, 2] box exercise the clip inside the reward.
    policy = lambda obs, rng: rng.uniform(-3.0, 3.0, size=(1,)).astype(np.float32)  # noqa: E731
    obs, act, rew, nobs = record("Pendulum-v1", policy, 1200, seed=0)
    ours = np.asarray(batched(rewards.get("Pendulum-v1"))(obs, act, nobs))
    np.testing.assert_allclose(ours, rew, atol=TOL, rtol=0)


def test_mountain_car_reward_equals_gymnasium_including_goal_bonus():
    # Pump energy (push along the velocity) so episodes reach the goal; actions beyond +-1
    # check that the cost uses the unclipped action, as Gymnasium does.
    def policy(obs, rng):
        return (np.sign(obs[1] + 1e-6) * rng.uniform(0.3, 1.6) + rng.normal(0, 0.3, size=(1,))).astype(np.float32)

    obs, act, rew, nobs = record("MountainCarContinuous-v0", policy, 1500, seed=1)
    assert (rew > 50).sum() >= 2, "the test must include transitions that reach the goal"
    ours = np.asarray(batched(rewards.get("MountainCarContinuous-v0"))(obs, act, nobs))
    np.testing.assert_allclose(ours, rew, atol=TOL, rtol=0)


@pytest.mark.parametrize("env_id", sorted(pathwise.systems.REGISTRY) + ["CartPole-v1", "Acrobot-v1"])
def test_registered_rewards_equal_env_rewards(env_id):
    env = gym.make(env_id)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    env.close()

    def policy(obs, rng):
        if discrete:
            return int(rng.integers(env.action_space.n))
        return rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)

    obs, act, rew, nobs = record(env_id, policy, 300, seed=2)
    ours = np.asarray(batched(rewards.get(env_id))(obs, act, nobs))
    np.testing.assert_allclose(ours, rew, atol=TOL, rtol=1e-6)


def test_pendulum_reward_gradient_matches_hand_derivative():
    # d r / d theta_dot = -0.2 theta_dot; d r / d u = -0.002 u inside the box, 0 outside.
    obs = jnp.array([jnp.cos(0.3), jnp.sin(0.3), 1.5])
    fn = rewards.get("Pendulum-v1")
    g_obs, g_act = jax.grad(fn, argnums=(0, 1))(obs, jnp.array([1.0]), obs)
    np.testing.assert_allclose(g_obs[2], -0.3, rtol=1e-6)
    np.testing.assert_allclose(g_act[0], -0.002, rtol=1e-6)
    assert jax.grad(fn, argnums=1)(obs, jnp.array([3.0]), obs)[0] == 0.0


def test_mountain_car_goal_bonus_has_zero_gradient():
    fn = rewards.get("MountainCarContinuous-v0")
    g = jax.grad(fn, argnums=2)(jnp.zeros(2), jnp.array([0.5]), jnp.array([0.5, 0.01]))
    np.testing.assert_array_equal(g, 0.0)


def test_unknown_env_error_says_how_to_fix():
    assert not rewards.has("NoSuchEnv-v0")
    with pytest.raises(ValueError, match=r"no known reward for NoSuchEnv-v0; register one with pathwise\.rewards\.register"):
        rewards.get("NoSuchEnv-v0")


def test_register_refuses_silent_overwrite():
    fn = lambda o, a, o2: -jnp.sum(o2**2)  # noqa: E731
    rewards.register("pathwise-test/Dummy-v0", fn)
    try:
        assert rewards.has("pathwise-test/Dummy-v0") and rewards.get("pathwise-test/Dummy-v0") is fn
        with pytest.raises(ValueError, match="already has a known reward; pass overwrite=True"):
            rewards.register("pathwise-test/Dummy-v0", fn)
        rewards.register("pathwise-test/Dummy-v0", fn, overwrite=True)
        with pytest.raises(ValueError, match="must be callable"):
            rewards.register("pathwise-test/Other-v0", 3.0)
        assert "pathwise-test/Dummy-v0" in registry.known_rewards()
    finally:
        registry.unregister("pathwise-test/Dummy-v0")
    assert not rewards.has("pathwise-test/Dummy-v0")


def test_one_record_holds_what_is_known_about_an_environment():
    gym_rec, own = registry.record("Pendulum-v1"), registry.record("pathwise/Pendulum-v1")
    assert gym_rec.twin == "pathwise/Pendulum-v1" and own.twin == "Pendulum-v1"
    assert own.native and not gym_rec.native
    assert gym_rec.solved_at == own.solved_at == -200.0
    assert gym_rec.ceiling == own.ceiling is not None  # measured once, shared by the twins
    assert gym_rec.preset("mbrl") == own.preset("mbrl") and gym_rec.preset("mbrl")[0]
    assert isinstance(gym_rec.system(), pathwise.systems.Pendulum)
    assert registry.record("pathwise/CartPoleSwingUp-v0").angles == (2,)
    blank = registry.record("LunarLanderContinuous-v3")
    assert blank.system is blank.reward is blank.terminated is blank.solved_at is None and not blank.native
    assert registry.record("CartPole-v1").solved_at == 475.0
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['rewrd'\]"):
        registry.register("X-v0", rewrd=lambda o, a, n: 0.0)


def test_known_terminations_equal_the_environments_own():
    """A record's termination on observations (what learned models stop at) agrees with Gymnasium's."""
    term = registry.record("CartPole-v1").terminated
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    ends = []
    for t in range(200):
        obs, _, terminated, truncated, _ = env.step(t % 2 * 0 + (1 if t % 7 else 0))
        ends.append((bool(term(jnp.asarray(obs))), terminated))
        if terminated or truncated:
            break
    env.close()
    assert ends[-1] == (True, True) and all(a == b for a, b in ends)
    assert not bool(registry.record("Pendulum-v1").terminated(jnp.zeros(3)))
