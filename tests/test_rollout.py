"""rollout / batch_rollout: compile once, truncation, remat, explicit noise, termination, bad input."""

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise.rollout import batch_rollout, discounted_return, rollout
from pathwise.systems import CartPole, Pendulum
from pathwise.systems.base import System

PEND = Pendulum()
NOISY = Pendulum(noise_std=0.05)


def policy_fn(params, obs):
    return 2.0 * jnp.tanh(params["w"] @ obs + params["b"])


PARAMS = {"w": jnp.array([[-0.5, 0.3, -0.2]]), "b": jnp.array([0.1])}
TRACES = {"n": 0}


@jax.jit
def batch_return(params, states0):
    TRACES["n"] += 1  # counts traces (a Python side effect runs only while tracing)
    run = lambda s: rollout(PEND, lambda o: policy_fn(params, o), s, 200).rewards.sum()  # noqa: E731
    return jax.vmap(run)(states0)


def test_200_steps_by_256_states_compiles_once():
    states = jax.vmap(PEND.reset)(jax.random.split(jax.random.key(0), 256))
    first = batch_return(PARAMS, states).block_until_ready()
    second = batch_return(jax.tree.map(lambda x: x + 0.1, PARAMS), states + 0.01).block_until_ready()
    assert first.shape == (256,) and np.all(np.isfinite(first)) and not np.allclose(first, second)
    assert TRACES["n"] == 1 and batch_return._cache_size() == 1


def loop_rollout_return(params, state0, horizon, truncate_every=0):
    """Independent reference: a Python loop with the truncation written out."""
    s, total = state0, 0.0
    for t in range(horizon):
        if truncate_every and t > 0 and t % truncate_every == 0:
            s = jax.lax.stop_gradient(s)
        a = policy_fn(params, PEND.observe(s))
        total = total + PEND.reward(s, a)
        s = PEND.step(s, a)
    return total


def test_truncate_every_cuts_gradients_at_the_truncation_points():
    state0, k = jnp.array([2.0, 0.5]), 5

    def rewards(s0, truncate_every):
        return rollout(PEND, lambda o: policy_fn(PARAMS, o), s0, 12, truncate_every=truncate_every).rewards

    after_cut = jax.grad(lambda s0: rewards(s0, k)[k:].sum())(state0)
    before_cut = jax.grad(lambda s0: rewards(s0, k)[:k].sum())(state0)
    untruncated = jax.grad(lambda s0: rewards(s0, 0)[k:].sum())(state0)
    np.testing.assert_array_equal(after_cut, 0.0)  # no path from state0 through step k
    assert np.all(np.abs(before_cut) > 1e-3) and np.all(np.abs(untruncated) > 1e-3)
    np.testing.assert_allclose(before_cut, jax.grad(lambda s0: rewards(s0, 0)[:k].sum())(state0), rtol=1e-6)

    # Policy-parameter gradient equals the hand-written loop with the same cuts.
    ours = jax.grad(lambda p: rollout(PEND, lambda o: policy_fn(p, o), state0, 12, truncate_every=k).rewards.sum())
    ref = jax.grad(lambda p: loop_rollout_return(p, state0, 12, truncate_every=k))
    full = jax.grad(lambda p: loop_rollout_return(p, state0, 12))
    for a, b, c in zip(jax.tree.leaves(ours(PARAMS)), jax.tree.leaves(ref(PARAMS)), jax.tree.leaves(full(PARAMS))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert not np.allclose(a, c, rtol=1e-3)  # the truncation changed the gradient


def test_remat_gives_the_same_gradient():
    state0 = jnp.array([2.0, 0.5])

    def ret(p, remat):
        return rollout(NOISY, lambda o: policy_fn(p, o), state0, 40, key=jax.random.key(3), remat=remat).rewards.sum()

    g_plain, g_remat = jax.grad(ret)(PARAMS, False), jax.grad(ret)(PARAMS, True)
    for a, b in zip(jax.tree.leaves(g_plain), jax.tree.leaves(g_remat)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_trajectory_is_a_deterministic_function_of_its_noise():
    state0 = jnp.array([1.0, 0.0])
    policy = lambda o, xi: policy_fn(PARAMS, o) + 0.3 * xi  # noqa: E731
    xi = jax.random.normal(jax.random.key(1), (30, 1))
    traj = rollout(NOISY, policy, state0, 30, key=jax.random.key(2), policy_noise=xi)
    assert np.abs(np.asarray(traj.noises)).max() > 0
    again = rollout(NOISY, policy, state0, 30, noises=traj.noises, policy_noise=xi)
    for a, b in zip(traj, again):
        np.testing.assert_array_equal(a, b)
    # The recorded noise is recoverable from the transitions: s' - f(s, a).
    f = jax.vmap(PEND.step)(traj.states, traj.actions)
    np.testing.assert_allclose(traj.next_states - f, traj.noises, atol=1e-6)
    other = rollout(NOISY, policy, state0, 30, key=jax.random.key(5), policy_noise=xi)
    assert not np.allclose(other.states, traj.states)


def test_stochastic_step_adds_exactly_the_noise():
    keys = jax.random.split(jax.random.key(0), 64)
    s = jax.vmap(NOISY.reset)(keys)
    a = jax.random.uniform(jax.random.key(1), (64, 1), minval=-2, maxval=2)
    zeta = jax.vmap(NOISY.sample_noise)(keys)
    diff = jax.vmap(NOISY.step)(s, a, zeta) - jax.vmap(NOISY.step)(s, a)
    np.testing.assert_allclose(diff, zeta, atol=1e-6)
    assert 0.02 < float(jnp.std(zeta)) < 0.08  # noise_std = 0.05


def test_termination_masks_rewards_like_gymnasium_episode_length():
    cartpole = CartPole()
    state0 = cartpole.reset(jax.random.key(4))
    traj = rollout(cartpole, lambda o: jnp.array(1), state0, 100)
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    env.state = np.asarray(state0, np.float64)
    length = 0
    while True:
        length += 1
        if env.step(1)[2]:
            break
    assert float(traj.total_reward) == length  # +1 per step up to and including the terminating one
    np.testing.assert_array_equal(traj.alive[:length], 1.0)
    np.testing.assert_array_equal(traj.alive[length:], 0.0)
    kept = rollout(cartpole, lambda o: jnp.array(1), state0, 100, stop_at_termination=False)
    assert float(kept.total_reward) == 100


class Runaway(System):
    """``x' = 3 x + a``, terminal once ``x > 1``, reward ``-x'^2``: past its end the state grows without bound, as
    a learned model's imagined state can where it has no data (nothing is collected past a terminal state)."""

    state_dim = obs_dim = action_dim = 1

    def initial_state(self, key):
        return jnp.full(1, 0.5)

    def dynamics(self, state, action):
        return 3.0 * state + action

    def reward(self, state, action, next_state=None):
        return -next_state[0] ** 2

    def observe(self, state):
        return state

    def terminated(self, state):
        return state[0] > 1.0


def test_a_terminated_rollout_holds_its_terminal_state_so_nothing_past_it_overflows():
    system = Runaway()

    def total(w):
        traj = rollout(system, lambda o: jnp.tanh(w * o), system.initial_state(None), 120)
        return traj.rewards.sum(), traj

    (value, traj), grad = jax.value_and_grad(total, has_aux=True)(jnp.float32(0.7))
    # 0.5 -> 3 * 0.5 + tanh(0.35) = 1.836..., terminal at the first step; 3^119 overflows float32 if left running
    terminal = 1.5 + np.tanh(0.35)
    np.testing.assert_allclose(traj.states[1:, 0], terminal, rtol=1e-6)
    np.testing.assert_allclose(traj.final_state[0], terminal, rtol=1e-6)
    np.testing.assert_array_equal(traj.alive[1:], 0.0)
    np.testing.assert_allclose(value, -terminal**2, rtol=1e-6)
    np.testing.assert_allclose(grad, -2 * terminal * 0.5 * (1 - np.tanh(0.35) ** 2), rtol=1e-5)
    kept = rollout(system, lambda o: jnp.tanh(0.7 * o), system.initial_state(None), 120, stop_at_termination=False)
    assert not np.all(np.isfinite(kept.states))  # without the stop it runs away (what the hold prevents)


def test_batch_rollout_shapes_and_discounted_return():
    traj = batch_rollout(NOISY, lambda o: policy_fn(PARAMS, o), jax.random.key(0), 8, 20)
    assert traj.states.shape == (8, 20, 2) and traj.actions.shape == (8, 20, 1) and traj.rewards.shape == (8, 20)
    assert traj.final_state.shape == (8, 2)
    r = jnp.arange(1.0, 4.0)
    np.testing.assert_allclose(discounted_return(r, 0.5), 1 + 0.5 * 2 + 0.25 * 3)


def test_bad_input_errors_name_the_problem():
    good = lambda o: jnp.zeros(1)  # noqa: E731
    with pytest.raises(Exception, match="the initial state contains NaN or inf"):
        jax.block_until_ready(rollout(PEND, good, jnp.array([jnp.nan, 0.0]), 5))
    with pytest.raises(Exception, match="the initial state contains NaN or inf"):
        jax.block_until_ready(jax.jit(lambda s: rollout(PEND, good, s, 5).rewards)(jnp.array([0.0, jnp.inf])))
    with pytest.raises(ValueError, match=r"action must have shape \(1,\), got \(2,\)"):
        rollout(PEND, lambda o: jnp.zeros(2), jnp.zeros(2), 5)
    with pytest.raises(ValueError, match=r"state must have shape \(2,\), got \(3, 2\)"):
        rollout(PEND, good, jnp.zeros((3, 2)), 5)
    with pytest.raises(ValueError, match=r"noises must have shape \(5, 2\)"):
        rollout(PEND, good, jnp.zeros(2), 5, noises=jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="policy_noise must have leading axis 5"):
        rollout(PEND, lambda o, xi: jnp.zeros(1), jnp.zeros(2), 5, policy_noise=jnp.zeros((4, 1)))
