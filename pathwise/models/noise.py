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

import jax
import jax.numpy as jnp

from pathwise.systems.base import System
from pathwise.types import Array, Trajectory


def model_noise(model: System, obs: Array, actions: Array, next_obs: Array) -> Array:
    """ζ_t = s_{t+1} − f(s_t, a_t) for every recorded step (``[T, state_dim]``)."""
    return next_obs - jax.vmap(model.step)(obs, actions)


def policy_noise(policy, obs: Array, actions: Array) -> Array:
    """ξ_t with ``π(s_t, ξ_t) = a_t``; ``[T, 0]`` for a deterministic policy.

    A stochastic policy maps an observation to a distribution with ``infer_noise``
    (``pathwise.distributions.GaussianPolicy``; replay it with ``policy.act(obs, xi)``);
    a deterministic policy maps an observation to an action array.
    """
    if hasattr(jax.eval_shape(policy, obs[0]), "infer_noise"):
        return jax.vmap(lambda o, a: policy(o).infer_noise(a))(obs, actions)
    return jnp.zeros((obs.shape[0], 0), obs.dtype)


def frozen_noise(model: System, policy, obs: Array, actions: Array, next_obs: Array) -> tuple[Array, Array]:
    """``(ζ [T, state_dim], ξ [T, ...])`` of recorded transitions, without gradient.

    The noises SVG(∞) freezes: inferred once (at the policy that is about to be updated) and then held
    fixed while the replayed return is differentiated, so they are constants of the objective.
    """
    return (jax.lax.stop_gradient(model_noise(model, obs, actions, next_obs)),
            jax.lax.stop_gradient(policy_noise(policy, obs, actions)))


def infer_noise(model: System, policy, trajectory: Trajectory) -> tuple[Array, Array]:
    """``(zetas [T, state_dim], xis [T, ...])`` that make the replay equal ``trajectory``.

    ``trajectory`` is over observations (state = observation, as for ``LearnedModel``):
    ``observations[t]``, ``actions[t]`` and ``final_state`` (the observation after the
    last step). Replay with ``rollout(model, policy.act, obs[0], T, noises=zetas, policy_noise=xis)``
    (``policy`` itself for a deterministic policy, with ``xis`` of width 0 ignored).
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
