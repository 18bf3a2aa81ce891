"""Pieces shared by the replay actor-critics (DDPG, SVG(0), Gumbel SVG(0), SVG(1)).

* :class:`ActorCriticConfig`: the options they share (networks, discount, step sizes, minibatch,
  target networks) on top of the replay loop's (:class:`pathwise.loops.replay.ReplayOptions`);
* the TD target and the critic regression loss (lecture, "Remember: Q learning");
* critic ensembles: one critic for DDPG, twin critics (clipped double Q) for SVG(0), and their minimum as
  the frozen bootstrap of the value-gradient objective (``pathwise.algorithms.svg_core``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise import replay
from pathwise.algorithms.base import CommonConfig
from pathwise.config import at_least, positive, unit_interval
from pathwise.loops.replay import ReplayOptions
from pathwise.networks import QCritic, ensemble_apply, make_ensemble
from pathwise.types import Array, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class ActorCriticConfig(CommonConfig, ReplayOptions):
    """Options of replay-based actor-critics; defaults are tuned for Pendulum-v1 (RL Zoo TD3/DDPG)."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of each critic."""
    n_critics: int = 1
    """Number of critics; with 2 or more the TD target and the actor use their minimum (clipped double Q)."""
    gamma: float = 0.98
    """Discount factor of the return the critic estimates."""
    actor_lr: float = 1e-3
    """Adam learning rate of the actor."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic(s)."""
    batch_size: int = 256
    """Transitions per gradient step, sampled uniformly from the replay buffer."""
    tau: float = 0.005
    """Polyak rate of the target networks: target <- (1 - tau) target + tau online, after every update."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + unit_interval(self, "gamma", "tau") + positive(self, "actor_lr", "critic_lr") + \
            at_least(self, 1, "batch_size", "n_critics")


def sample(buffer: replay.ReplayBuffer, key: PRNGKey, batch_size: int) -> Transition:
    """``batch_size`` transitions drawn uniformly from the replay loop's buffer."""
    return replay.sample(buffer, key, batch_size).transition


def td_target(reward: Array, terminated: Array, next_value: Array, gamma: float | Array) -> Array:
    """``y = r + gamma * (1 - terminated) * V(s')``: no bootstrap past a true terminal; truncation bootstraps."""
    return reward + gamma * (1.0 - terminated.astype(reward.dtype)) * next_value


def make_critics(key: PRNGKey, obs_dim: int, action_dim: int, config: ActorCriticConfig) -> eqx.Module:
    """``config.n_critics`` independently initialized ``QCritic``s stacked on a leading axis."""
    return make_ensemble(lambda k: QCritic(obs_dim, action_dim, config.critic_hidden, key=k), key, config.n_critics)


def q_values(critics: eqx.Module, obs: Array, action: Array) -> Array:
    """``Q_i(s_b, a_b)`` for every critic i and batch row b: shape ``(n_critics, batch)``."""
    return jax.vmap(lambda o, a: ensemble_apply(critics, o, a), out_axes=1)(obs, action)


def min_q(critics: eqx.Module, obs: Array, action: Array) -> Array:
    """``min_i Q_i(s_b, a_b)`` per batch row (equals Q for a single critic)."""
    return q_values(critics, obs, action).min(axis=0)


def min_q_bootstrap(critics: eqx.Module) -> Callable[[Array, Array], Array]:
    """``B(s, a) = min_i Q_i(s, a)`` for one unbatched ``(s, a)``, the critics' parameters frozen
    (``stop_gradient``): the gradient reaches the action, never the critics (a ``svg_core`` bootstrap)."""
    frozen = jax.lax.stop_gradient(critics)
    return lambda obs, action: ensemble_apply(frozen, obs, action).min()


def critic_loss(critics: eqx.Module, obs: Array, action: Array, target: Array) -> Array:
    """``L(phi) = E[(Q_phi(s, a) - y)^2]`` (lecture, deep Q learning), averaged over critics and batch."""
    return jnp.mean((q_values(critics, obs, action) - jax.lax.stop_gradient(target)[None]) ** 2)


__all__ = ["ActorCriticConfig", "critic_loss", "make_critics", "min_q", "min_q_bootstrap", "q_values", "sample",
           "td_target"]
