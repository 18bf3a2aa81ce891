"""The value-gradient core shared by SVG(0), SVG(1), SVG(k) (the short-horizon actor-critic), SVG(inf) and mbrl.

Lecture, "Stochastic Value Gradients": with a reparameterized policy ``a_t = pi(s_t, xi_t; theta)`` and
dynamics ``s_{t+1} = f(s_t, a_t) + zeta_t`` (true or learned), the k-step value-gradient objective from a
start state ``s_0`` is

    J_k(theta) = sum_{t<k} gamma^t c_t r(s_t, a_t, s_{t+1}) + gamma^k c_k B(s_k, a_k),

where ``c_t`` is 1 until the first terminal state (then 0), and ``B`` is the learned bootstrap with its
parameters frozen (``stop_gradient``): ``B(s, a) = V(s)`` or ``B(s, a) = Q(s, a)``. Its gradient in theta is
the pathwise derivative through the policy, the model and the bootstrap. The special cases:

* k = 0 with a Q bootstrap: ``J_0 = Q(s_0, pi(s_0, xi_0))``, SVG(0) (the critic alone carries the gradient;
  no dynamics needed: ``system=None`` and ``s_0`` is the observation);
* k = 1 with V: ``J_1 = r(s, a) + gamma V(f(s, a) + zeta)``, SVG(1), with zeta sampled or inferred from a
  real transition as ``zeta = s' - f(s, a)`` (and xi inferred from the recorded action);
* k = H with ``B = 0``: the H-step return of the rollout (BPTT through a model as mbrl does, and SVG(inf)
  with every noise inferred from a real episode);
* 1 < k < H: the short-horizon actor-critic (SHAC).

The value that closes the horizon is learned by TD(lambda) on the same k-step segments:

    G_t = r_t + gamma c_{t+1} [(1 - lambda) V'(s_{t+1}) + lambda G_{t+1}],   G_{k-1} = r_{k-1} + gamma c_k V'(s_k),

with ``V'`` a target network; ``value_loss`` regresses ``V(s_t)`` on ``G_t`` over the steps still alive.
Where every reward lies in ``[r_lo, r_hi]``, so does ``(1 - gamma) V`` of every policy:
``V in [r_lo / (1 - gamma), r_hi / (1 - gamma)]`` (``value_bounds``); ``bounded`` clips a bootstrap to such a range.
Everything here works on one start state; ``jax.vmap`` over the batch outside.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise.rollout import rollout
from pathwise.systems.base import System
from pathwise.types import Array, Trajectory

Bootstrap = Callable[[Array, Array], Array]  # (obs, action) -> scalar


class Segment(NamedTuple):
    """What a k-step value-gradient rollout produced (time axis leading, length k)."""

    objective: Array  # J_k, the scalar whose theta-gradient is the value gradient
    observations: Array  # o_0 .. o_{k-1}
    rewards: Array  # r_t, already zero after termination
    next_observations: Array  # o_1 .. o_k
    continues: Array  # c_{t+1}: 1.0 if s_{t+1} is not terminal and the episode was alive at t
    alive: Array  # c_t: 1.0 while no terminal state has been reached before step t
    final_observation: Array  # o_k
    final_continue: Array  # c_k
    final_state: Array  # s_k (the carried simulator state for SHAC)


def v_bootstrap(critic: eqx.Module) -> Bootstrap:
    """``B(s, a) = V(s)`` with V's parameters frozen (the actor must not move the critic)."""
    frozen = jax.lax.stop_gradient(critic)
    return lambda obs, action: frozen(obs)


def q_bootstrap(critic: eqx.Module) -> Bootstrap:
    """``B(s, a) = Q(s, a)`` with Q's parameters frozen; the gradient still flows through ``a``."""
    frozen = jax.lax.stop_gradient(critic)
    return lambda obs, action: frozen(obs, action)


def zero_bootstrap(obs: Array, action: Array) -> Array:
    """``B = 0``: the objective is the plain k-step return."""
    del action
    return jnp.zeros((), obs.dtype)


def bounded(bootstrap: Bootstrap, bounds: Array | None) -> Bootstrap:
    """``B`` clipped to ``bounds = [lo, hi]`` (None: ``B`` itself): beyond the range the actor gets no gradient from
    it, so it cannot steer rollouts towards states whose value is overestimated past what any return can be."""
    if bounds is None:
        return bootstrap
    return lambda obs, action: jnp.clip(bootstrap(obs, action), bounds[0], bounds[1])


def value_bounds(rewards: Array, valid: Array, gamma: float | Array, reward_scale: float | Array = 1.0) -> Array:
    """``[lo, hi] = reward_scale * [min r, max r] / (1 - gamma)`` over the ``valid`` entries of ``rewards``: the
    range of every discounted return (and so of every value) made of rewards in the range seen."""
    lo = jnp.min(jnp.where(valid, rewards, jnp.inf))
    hi = jnp.max(jnp.where(valid, rewards, -jnp.inf))
    ends = reward_scale * jnp.stack([lo, hi]) / (1.0 - gamma)
    return jnp.sort(ends)  # a negative reward_scale swaps them


def value_gradient_objective(system: System | None, policy: Callable[[Array, Array], Array], bootstrap: Bootstrap,
                             state0: Array, policy_noise: Array, model_noise: Array, gamma: float | Array,
                             reward_scale: float | Array = 1.0, reward_weights: Array | None = None,
                             **rollout_options: Any) -> Segment:
    """``J_k`` from one start state (module docstring), k = ``model_noise.shape[0]``.

    Args:
      system: the true ``System`` or a learned model (``pathwise.models.LearnedModel``); None for k = 0
        (then ``state0`` is the observation).
      policy: ``policy(obs, xi) -> action``, the reparameterized policy.
      bootstrap: ``B(obs, action)``; see ``v_bootstrap``, ``q_bootstrap``, ``zero_bootstrap``.
      state0: the start state (unbatched).
      policy_noise: ``xi_0 .. xi_k``, shape ``(k + 1, noise_dim)`` (the last one picks the bootstrap action).
      model_noise: ``zeta_0 .. zeta_{k-1}``, shape ``(k, state_dim)``: sampled, zeros, or inferred.
      gamma: discount.
      reward_scale: multiplies every reward (the bootstrap must be learned on the same scale).
      reward_weights: ``[k]`` weights of the rewards in ``J_k`` (e.g. 0 past the end of a recorded episode).
      rollout_options: passed to :func:`pathwise.rollout.rollout` (``truncate_every``, ``restarts``).
    """
    k = model_noise.shape[0]
    if policy_noise.shape[0] != k + 1:
        raise ValueError(f"value_gradient_objective: policy_noise needs k + 1 = {k + 1} rows (one per model step "
                         f"and one for the bootstrap action), got shape {policy_noise.shape}.")
    if k == 0:
        obs = state0 if system is None else system.observe(state0)
        one = jnp.ones((), obs.dtype)
        objective = bootstrap(obs, policy(obs, policy_noise[0]))
        empty = jnp.zeros((0,), obs.dtype)
        return Segment(objective, obs[None][:0], empty, obs[None][:0], empty, empty, obs, one, state0)
    traj = rollout(system, policy, state0, k, noises=model_noise, policy_noise=policy_noise[:k], **rollout_options)
    weights = reward_scale if reward_weights is None else reward_scale * reward_weights
    traj = traj._replace(rewards=traj.rewards * weights)
    return _segment(system, policy, bootstrap, traj, policy_noise[k], gamma)


def _segment(system: System, policy, bootstrap: Bootstrap, traj: Trajectory, last_xi: Array,
             gamma: float | Array) -> Segment:
    continues = traj.alive * (1.0 - traj.dones.astype(traj.alive.dtype))
    final_obs = system.observe(traj.final_state)
    k = traj.rewards.shape[0]
    discounts = jnp.asarray(gamma, traj.rewards.dtype) ** jnp.arange(k + 1, dtype=traj.rewards.dtype)
    tail = discounts[k] * continues[-1] * bootstrap(final_obs, policy(final_obs, last_xi))
    objective = jnp.sum(discounts[:k] * traj.rewards) + tail
    next_obs = jnp.concatenate([traj.observations[1:], final_obs[None]], axis=0)
    return Segment(objective, traj.observations, traj.rewards, next_obs, continues, traj.alive, final_obs,
                   continues[-1], traj.final_state)


def lambda_returns(rewards: Array, next_values: Array, continues: Array, gamma: float | Array,
                   lam: float | Array) -> Array:
    """TD(lambda) targets ``G_t = r_t + gamma c_{t+1} [(1 - lambda) V'(s_{t+1}) + lambda G_{t+1}]`` (time leading).

    ``next_values[t] = V'(s_{t+1})``; the recursion starts from ``G_{k-1} = r_{k-1} + gamma c_k V'(s_k)``.
    lambda = 0 gives one-step TD targets, lambda = 1 the k-step discounted return plus the bootstrap.
    """

    def backward(next_return, inputs):
        r, v, c = inputs
        g = r + gamma * c * ((1.0 - lam) * v + lam * next_return)
        return g, g

    _, returns = jax.lax.scan(backward, next_values[-1], (rewards, next_values, continues), reverse=True)
    return returns


def segment_targets(target_value: eqx.Module, segment: Segment, gamma: float | Array, lam: float | Array) -> Array:
    """TD(lambda) targets of one segment under the target value network (no gradient)."""
    next_values = jax.vmap(target_value)(segment.next_observations)
    return jax.lax.stop_gradient(lambda_returns(segment.rewards, next_values, segment.continues, gamma, lam))


def value_loss(value: eqx.Module, observations: Array, targets: Array, weights: Array) -> Array:
    """``L(phi) = sum w (V_phi(s) - G)^2 / sum w`` over any leading axes (w = alive mask, importance weights)."""
    flat_obs = observations.reshape(-1, observations.shape[-1])
    pred = jax.vmap(value)(flat_obs).reshape(targets.shape)
    w = jax.lax.stop_gradient(weights)
    return jnp.sum(w * (pred - jax.lax.stop_gradient(targets)) ** 2) / jnp.maximum(jnp.sum(w), 1e-6)


__all__ = ["Bootstrap", "Segment", "bounded", "lambda_returns", "q_bootstrap", "segment_targets", "v_bootstrap",
           "value_bounds", "value_gradient_objective", "value_loss", "zero_bootstrap"]
