"""``lax.scan`` rollouts of a policy through any ``System`` (true or learned).

A policy is a callable ``policy(obs) -> action`` or, when ``policy_noise`` is
given, ``policy(obs, xi) -> action`` with explicit noise ``xi`` (the
reparameterization ``a = mu + sigma * xi``). With explicit process noise too, a
trajectory is a deterministic, differentiable function of its noises.
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, Trajectory

Policy = Callable[..., Array]


def rollout(
    system: System,
    policy: Policy,
    state0: Array,
    horizon: int,
    *,
    key: PRNGKey | None = None,
    noises: Array | None = None,
    policy_noise: Array | None = None,
    truncate_every: int = 0,
    remat: bool = False,
    stop_at_termination: bool = True,
    restarts: tuple[Array, Array] | None = None,
) -> Trajectory:
    """Roll ``policy`` through ``system`` for ``horizon`` steps from ``state0``.

    Args:
      system: any ``System``.
      policy: ``policy(obs)`` or, with ``policy_noise``, ``policy(obs, xi)``.
      state0: initial state (unbatched; ``jax.vmap`` for batches, or ``batch_rollout``).
      horizon: number of steps (static).
      key: draws the process noise when the system is stochastic and
        ``noises`` is not given.
      noises: explicit process noise, shape ``(horizon, state_dim)``.
      policy_noise: explicit policy noise, shape ``(horizon, ...)``.
      truncate_every: if k > 0, ``stop_gradient`` on the carried state before
        steps k, 2k, ..., so gradients flow through at most k steps of dynamics
        (steps 0..k-1 still depend differentiably on ``state0``).
      remat: rematerialize each step in the backward pass (``jax.checkpoint``):
        memory O(1) per step instead of all intermediates.
      stop_at_termination: zero the rewards after the first terminal state
        (``Trajectory.alive``) and hold the terminal state from then on (:func:`past_the_end`; shapes stay
        fixed: the steps still run, their results are discarded).
      restarts: ``(mask [horizon], states [horizon, state_dim])``: before step t with ``mask[t]`` the
        carried state is replaced by ``states[t]`` (no gradient flows through the replacement); e.g. a
        replay of a recorded episode that continues past its end from recorded states.
    """
    state0 = system.check_state(state0)
    state0 = eqx.error_if(state0, ~jnp.all(jnp.isfinite(state0)), "rollout: the initial state contains NaN or inf.")
    step = _step_fn(system, policy, policy_noise is not None, truncate_every, stop_at_termination,
                    restarts is not None)
    noises, xis, restarts = _inputs(system, state0, horizon, key, noises, policy_noise, restarts)
    if remat:
        step = jax.checkpoint(step)
    alive0 = jnp.ones((), jnp.result_type(state0.dtype, jnp.float32))
    (final, _, _), (states, obs, actions, rewards, dones, alive) = jax.lax.scan(
        step, (state0, alive0, jnp.zeros((), jnp.int32)), (noises, xis, *restarts), length=horizon
    )
    return Trajectory(states, obs, actions, rewards, noises, xis, dones, alive, final)


def _inputs(system: System, state0: Array, horizon: int, key, noises, policy_noise, restarts):
    """The scanned inputs: process noises, policy noises and restarts, checked and defaulted."""
    if noises is None:
        noises = (
            system.sample_noise(key, (horizon,))
            if key is not None and system.stochastic
            else jnp.zeros((horizon, system.state_dim), state0.dtype)
        )
    if noises.shape != (horizon, system.state_dim):
        raise ValueError(f"rollout: noises must have shape ({horizon}, {system.state_dim}), got {noises.shape}.")
    xis = policy_noise if policy_noise is not None else jnp.zeros((horizon, 0), state0.dtype)
    if xis.shape[0] != horizon:
        raise ValueError(f"rollout: policy_noise must have leading axis {horizon}, got shape {xis.shape}.")
    if restarts is None:  # placeholders, never used
        restarts = (jnp.zeros(horizon, bool), jnp.zeros((horizon, 0), state0.dtype))
    return noises, xis, restarts


def _step_fn(system: System, policy: Policy, use_xi: bool, truncate_every: int, stop_at_termination: bool,
             use_restarts: bool):
    """One step of the scan: ``(state, alive, t), (zeta, xi, restart, restart_state) -> carry, outputs``."""

    def step(carry, inputs):
        state, alive, t = carry
        zeta, xi, restart, restart_state = inputs
        if use_restarts:
            state = jnp.where(restart, jax.lax.stop_gradient(restart_state), state)
        if truncate_every > 0:
            cut = (t > 0) & (t % truncate_every == 0)
            state = jax.lax.cond(cut, jax.lax.stop_gradient, lambda s: s, state)
        obs = system.observe(state)
        action = policy(obs, xi) if use_xi else policy(obs)
        next_state = system.step(state, action, zeta)
        reward = system.reward(state, action, next_state)
        done = system.terminated(next_state)
        reward, next_state = past_the_end(alive, reward, next_state, state)
        next_alive = alive * (1.0 - done.astype(alive.dtype)) if stop_at_termination else alive
        return (next_state, next_alive, t + 1), (state, obs, action, reward, done, alive)

    return step


def past_the_end(alive: Array, reward: Array, next_state: Array, state: Array) -> tuple[Array, Array]:
    """One step's ``(reward, next state)`` once a rollout may have ended: as given while ``alive`` (1), else 0 and
    ``state`` held (a terminated rollout's steps still run, their results discarded). Held rather than stepped on:
    a learned model has no data past a terminal state and can diverge there until it overflows, and 0 × inf is NaN
    in the masked sums downstream."""
    reward = jnp.where(alive > 0, reward, 0.0).astype(jnp.result_type(reward, alive))
    return reward, jnp.where(alive > 0, next_state, state)


def batch_rollout(
    system: System,
    policy: Policy,
    key: PRNGKey,
    batch_size: int,
    horizon: int,
    **kwargs: Any,
) -> Trajectory:
    """``batch_size`` rollouts from ``system.reset`` states (process noise drawn from ``key``).

    Every array of the returned ``Trajectory`` gets a leading batch axis.
    """
    k_reset, k_noise = jax.random.split(key)
    states0 = jax.vmap(system.reset)(jax.random.split(k_reset, batch_size))
    noise_keys = jax.random.split(k_noise, batch_size)
    return jax.vmap(lambda s, k: rollout(system, policy, s, horizon, key=k, **kwargs))(states0, noise_keys)


def discounted_return(rewards: Array, gamma: float = 1.0) -> Array:
    """sum_t gamma^t r_t over the last axis."""
    discounts = gamma ** jnp.arange(rewards.shape[-1], dtype=rewards.dtype)
    return (rewards * discounts).sum(axis=-1)
