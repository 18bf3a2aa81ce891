"""BPTT: gradients against finite differences, LQR gain, no recompilation, skips, learner contract."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import pathwise as pw
from pathwise.algorithms import bptt

# A small, open-loop unstable 2-state system with a fast optimal closed loop, so the
# finite-horizon BPTT optimum is (to within the tolerance) the infinite-horizon LQR gain.
A = np.array([[1.1, 0.2], [0.0, 0.9]])  # open-loop unstable
B = np.array([[0.5], [1.0]])
Q = np.eye(2)
R = np.array([[0.1]])  # closed-loop spectral radius 0.78: 40 steps are "infinite" to float32


def lqr_gain() -> np.ndarray:
    P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    return np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)


def linear_system():
    return pw.systems.LinearSystem(A, B, Q, R, horizon=40)


TINY = bptt.Config(hidden=(8,), horizon=10, batch_size=8, learning_rate=1e-2, schedule="constant",
                   updates_per_iteration=5)


def test_gradient_matches_finite_differences():
    system = linear_system()
    config = dataclasses.replace(TINY, horizon=6, batch_size=4)
    state = bptt.init(jax.random.key(0), system, config)
    params, static = bptt.trainable(state.policy)
    noise_keys = jax.random.split(jax.random.key(1), config.batch_size)

    def loss(p):
        return bptt.bptt_loss(eqx.combine(p, static), system, state.states, noise_keys, config)[0]

    grad = jax.grad(loss)(params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g = jax.flatten_util.ravel_pytree(grad)[0]
    rng = np.random.default_rng(0)
    for _ in range(3):
        d = jnp.asarray(rng.normal(size=flat.shape), flat.dtype)
        d = d / jnp.linalg.norm(d)
        eps = 1e-2
        fd = (loss(unravel(flat + eps * d)) - loss(unravel(flat - eps * d))) / (2 * eps)
        # central differences in float32: O(eps^2) truncation + O(1e-7/eps) rounding on a loss of order 1
        np.testing.assert_allclose(float(g @ d), float(fd), rtol=2e-2, atol=2e-3)


def test_linear_policy_approaches_lqr_gain():
    system = linear_system()
    # Clipping matters: the first gradients (~1e4, K = 0 is unstable) would otherwise inflate Adam's
    # second-moment estimate and stall the later steps.
    config = bptt.Config(linear_policy=True, carry_state=False, horizon=40, batch_size=64, learning_rate=0.05, schedule="cosine",
                         schedule_updates=300, max_grad_norm=1.0, updates_per_iteration=300)
    state, metrics = bptt.train_steps(bptt.init(jax.random.key(0), system, config), system, config)
    K = -np.asarray(state.policy.gain)
    # K* is optimal from every start state, so the Monte Carlo gradient vanishes there: tight tolerance.
    np.testing.assert_allclose(K, lqr_gain(), rtol=1e-3, atol=1e-4)
    assert float(metrics["nonfinite_skipped"]) == 0


def test_loss_decreases_on_a_tiny_problem():
    system = linear_system()  # MLP policy (TINY), unstable open loop
    config = dataclasses.replace(TINY, updates_per_iteration=30)
    state0 = bptt.init(jax.random.key(0), system, config)
    starts = jax.vmap(system.reset)(jax.random.split(jax.random.key(7), 64))  # held-out start states
    keys = jax.random.split(jax.random.key(8), 64)
    before = float(bptt.bptt_loss(state0.policy, system, starts, keys, config)[0])
    state, _ = bptt.train_steps(state0, system, config)
    after = float(bptt.bptt_loss(state.policy, system, starts, keys, config)[0])
    assert after < 0.5 * before, (before, after)


def test_update_does_not_recompile_and_counts_steps():
    system = pw.systems.Pendulum()
    config = TINY
    state = bptt.init(jax.random.key(0), system, config)
    state, _ = bptt.train_steps(state, system, config)
    size = bptt.train_steps._cached._cache_size()
    state, metrics = bptt.train_steps(state, system, config)
    assert bptt.train_steps._cached._cache_size() == size
    assert int(state.env_steps) == 2 * config.updates_per_iteration * config.batch_size * config.horizon
    assert int(state.updates) == 2 * config.updates_per_iteration
    assert set(metrics) >= {"loss", "mean_return", "grad_norm", "nonfinite_skipped", "lr"}


def test_raw_grad_norm_is_logged_before_clipping():
    system = linear_system()
    config = dataclasses.replace(TINY, max_grad_norm=1e-3)
    state, metrics = bptt.run_updates(bptt.init(jax.random.key(0), system, config), system, config, 1)
    assert float(metrics["grad_norm"][0]) > 1e-2  # the raw norm, far above the clip threshold


def test_nonfinite_gradient_skips_the_update():
    system = pw.systems.LinearSystem(np.array([[1e30]]), np.array([[1.0]]), horizon=10)  # overflows float32
    config = dataclasses.replace(TINY, linear_policy=True)
    state0 = bptt.init(jax.random.key(0), system, config)
    state, metrics = bptt.run_updates(state0, system, config, 3)
    assert np.all(np.asarray(metrics["nonfinite_skipped"]) == 1)
    np.testing.assert_array_equal(state.policy.gain, state0.policy.gain)
    assert int(state.updates) == 0


def test_carried_windows_continue_episodes_and_reset_after_episode_length():
    system = pw.systems.Pendulum()
    config = dataclasses.replace(TINY, carry_state=True, horizon=100, batch_size=2)  # episode_length 200
    state = bptt.init(jax.random.key(0), system, config)
    state1, _ = bptt.run_updates(state, system, config, 1)
    start, steps = bptt.window_starts(state1, system, jax.random.key(5), config)
    np.testing.assert_array_equal(start, state1.states)  # continues where the first window ended
    np.testing.assert_array_equal(steps, [100, 100])
    state2, _ = bptt.run_updates(state1, system, config, 1)
    start, steps = bptt.window_starts(state2, system, jax.random.key(5), config)
    assert not np.allclose(start, state2.states)  # 200 steps done: fresh episodes
    np.testing.assert_array_equal(steps, [0, 0])


@pytest.mark.parametrize("change, match", [
    (dict(horizon=0), "horizon"),
    (dict(discount=1.5), "discount"),
    (dict(schedule="exp"), "schedule"),
    (dict(max_grad_norm=-1.0), "max_grad_norm"),
])
def test_bad_config_is_a_clear_error(change, match):
    with pytest.raises(ValueError, match=match):
        bptt.validate_config(dataclasses.replace(TINY, **change))


def test_learner_needs_a_known_system_and_resumes_exactly():
    with pytest.raises(ValueError, match="no pathwise System"):
        bptt.BPTT("HalfCheetah-v5", TINY)
    with pytest.raises(ValueError, match="continuous"):
        bptt.BPTT("pathwise/CartPole-v1", TINY)
    learner = bptt.BPTT("Pendulum-v1", TINY, seed=3)
    learner.train_iteration()
    saved = learner.get_state()
    first = learner.train_iteration()
    clone = bptt.BPTT("Pendulum-v1", TINY, seed=99)
    clone.set_state(saved)
    again = clone.train_iteration()
    assert first == again
    assert learner.env_steps == clone.env_steps == 2 * 5 * 8 * 10
    action = learner.act(np.array([1.0, 0.0, 0.0], np.float32))
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0


def test_cartpole_swingup_policy_sees_the_pole_angle_periodically():
    system = pw.systems.CartPoleSwingUp()
    state = bptt.init(jax.random.key(0), system, TINY)
    obs = jnp.array([0.1, -0.2, 0.3, 0.5])
    shifted = obs.at[2].add(2 * jnp.pi)  # the same physical state one turn later
    np.testing.assert_allclose(state.policy(obs), state.policy(shifted), rtol=1e-5, atol=1e-6)
    assert bptt.observation_angles(pw.systems.Pendulum(), TINY) == ()  # Pendulum already observes cos/sin
    with pytest.raises(ValueError, match="outside"):
        bptt.init(jax.random.key(0), system, dataclasses.replace(TINY, angle_features=(7,)))


def test_action_bounds_are_not_trained():
    params, _ = bptt.trainable(bptt.init(jax.random.key(0), pw.systems.CartPoleSwingUp(), TINY).policy)
    assert params.policy.low is None and params.policy.high is None
    assert params.policy.net.layers[0].weight is not None


def test_start_spread_widens_training_starts_only():
    system = pw.systems.CartPoleSwingUp()
    config = dataclasses.replace(TINY, batch_size=256, start_spread=(1.0, 1.0, 3.1416, 3.0))
    starts = np.asarray(bptt.reset_states(system, jax.random.key(0), config))
    hanging = np.asarray(bptt.reset_states(system, jax.random.key(0), TINY))
    assert np.all(np.abs(hanging[:, 2] - np.pi) <= 0.05 + 1e-6)  # the system's own reset: pole down
    assert np.all(np.abs(starts[:, 0]) <= 1.05 + 1e-6) and np.all(np.abs(starts[:, 3]) <= 3.05 + 1e-6)
    # every pole angle: about half the spread starts are in the upper half (cos theta > 0)
    assert 0.3 < np.mean(np.cos(starts[:, 2]) > 0) < 0.7
    # same key use as before the option existed when it is off (reproducible Pendulum results)
    keys = jax.random.split(jax.random.key(0), TINY.batch_size)
    np.testing.assert_array_equal(hanging, np.asarray(jax.vmap(system.reset)(keys)))
    with pytest.raises(ValueError, match="one half-width per state entry"):
        bptt.reset_states(system, jax.random.key(0), dataclasses.replace(TINY, start_spread=(1.0,)))
    with pytest.raises(ValueError, match="start_spread"):
        bptt.validate_config(dataclasses.replace(TINY, start_spread=(1.0, -1.0, 0.0, 0.0)))


@pytest.mark.slow
def test_cartpole_swingup_preset_swings_up_and_balances():
    """The shipped preset swings the pole up from hanging and holds it: >= 90% of 100 episodes end upright."""
    from pathwise import presets
    from pathwise.checkpoint import config_from_dict
    from pathwise.rollout import rollout

    overrides, _ = presets.load("bptt", "pathwise/CartPoleSwingUp-v0")
    config = config_from_dict(bptt.Config, overrides, "bptt preset")
    assert config.start_spread is not None
    system = pw.systems.CartPoleSwingUp()
    state, metrics = bptt.train_seed(system, config, seed=1, num_updates=2000)
    assert int(np.asarray(metrics["nonfinite_skipped"]).sum()) == 0
    starts = jax.vmap(system.reset)(jax.random.split(jax.random.key(2024), 100))  # held-out, pole down
    traj = jax.vmap(lambda s: rollout(system, state.policy, s, system.episode_length))(starts)
    returns = np.asarray(traj.rewards.sum(-1))
    upright = np.cos(np.asarray(traj.final_state[:, 2])) > 0.95
    assert upright.mean() >= 0.9, (upright.mean(), returns.mean())
    assert returns.mean() > 300, returns.mean()  # max 500; hanging for the whole episode gives about -500
