"""Noise inference for SVG(∞): the noises that make a replay equal the real trajectory.

Lecture, SVG(∞): "given a whole real trajectory, infer all noise variables":
with a model ``s' = f(s, a) + ζ`` and a reparameterized policy
``a = π(s, ξ; θ)``, the recorded ``(s_t, a_t, s_{t+1})`` determine

    ζ_t = s_{t+1} − f(s_t, a_t),        ξ_t = π⁻¹(s_t, a_t; θ),

and the replay ``s_{t+1} = f(s_t, π(s_t, ξ_t; θ)) + ζ_t`` from ``s_0`` reproduces
the real observations and actions at the current θ. Freezing ``ζ, ξ`` and
differentiating the replayed return through the deterministic graph gives the
SVG(∞) gradient: the model only carries gradients, it never has to simulate.
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise.networks import MLP
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, Trajectory

_EDGE = 1.0 - 1e-6  # tanh never reaches ±1; recorded actions on the box edge are pulled inside


class GaussianPolicy(eqx.Module):
    """``a = low + (tanh(μ_θ(s) + σ_θ ξ) + 1) / 2 · (high − low)``, ``ξ ~ N(0, I)``, σ state independent.

    Invertible in ξ (``noise_of``), so the policy noise of a recorded action can be inferred.
    """

    net: MLP
    log_std: Array
    low: Array
    high: Array

    def __init__(self, obs_dim: int, action_dim: int, low, high, hidden: Sequence[int] = (64, 64), *,
                 key: PRNGKey, log_std_init: float = -0.5, act: str = "tanh"):
        self.net = MLP(obs_dim, action_dim, hidden, key=key, act=act, final_scale=0.1)
        self.log_std = jnp.full((action_dim,), log_std_init, jnp.float32)
        self.low, self.high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)

    def __call__(self, obs: Array, xi: Array | None = None) -> Array:
        u = self.net(obs) if xi is None else self.net(obs) + jnp.exp(self.log_std) * xi
        return self.low + (jnp.tanh(u) + 1.0) * 0.5 * (self.high - self.low)

    def sample(self, obs: Array, key: PRNGKey) -> Array:
        return self(obs, jax.random.normal(key, self.log_std.shape))

    def noise_of(self, obs: Array, action: Array) -> Array:
        """The ξ with ``π(obs, ξ) = action`` (actions on the box edge are moved just inside it)."""
        y = jnp.clip(2.0 * (action - self.low) / (self.high - self.low) - 1.0, -_EDGE, _EDGE)
        return (jnp.arctanh(y) - self.net(obs)) * jnp.exp(-self.log_std)


def model_noise(model: System, obs: Array, actions: Array, next_obs: Array) -> Array:
    """ζ_t = s_{t+1} − f(s_t, a_t) for every recorded step (``[T, state_dim]``)."""
    return next_obs - jax.vmap(model.step)(obs, actions)


def policy_noise(policy, obs: Array, actions: Array) -> Array:
    """ξ_t with ``π(s_t, ξ_t) = a_t`` (``policy.noise_of``); ``[T, 0]`` for a deterministic policy."""
    if hasattr(policy, "noise_of"):
        return jax.vmap(policy.noise_of)(obs, actions)
    return jnp.zeros((obs.shape[0], 0), obs.dtype)


def infer_noise(model: System, policy, trajectory: Trajectory) -> tuple[Array, Array]:
    """``(zetas [T, state_dim], xis [T, ...])`` that make the replay equal ``trajectory``.

    ``trajectory`` is over observations (state = observation, as for ``LearnedModel``):
    ``observations[t]``, ``actions[t]`` and ``final_state`` (the observation after the
    last step). Replay with ``rollout(model, policy, obs[0], T, noises=zetas, policy_noise=xis)``.
    """
    obs, actions = trajectory.observations, trajectory.actions
    if obs.ndim != 2 or actions.shape[0] != obs.shape[0]:
        raise ValueError(f"infer_noise: expected one unbatched trajectory (observations [T, d], actions [T, m]); "
                         f"got {obs.shape} and {actions.shape}. Use jax.vmap for a batch.")
    next_obs = jnp.concatenate([obs[1:], jnp.asarray(trajectory.final_state)[None]], axis=0)
    return model_noise(model, obs, actions, next_obs), policy_noise(policy, obs, actions)


def episode_trajectory(obs: Array, actions: Array, rewards: Array, final_obs: Array) -> Trajectory:
    """A recorded real episode as a ``Trajectory`` over observations (for ``infer_noise``)."""
    obs, actions = jnp.asarray(obs), jnp.asarray(actions)
    T = obs.shape[0]
    zeros = jnp.zeros((T, obs.shape[1]), obs.dtype)
    return Trajectory(obs, obs, actions, jnp.asarray(rewards), zeros, jnp.zeros((T, 0), obs.dtype),
                      jnp.zeros(T, bool), jnp.ones(T, obs.dtype), jnp.asarray(final_obs))
