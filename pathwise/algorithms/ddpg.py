"""Deep Deterministic Policy Gradients (lecture, "Deep Deterministic Policy Gradients"; Lillicrap et al. 2016).

Giving up stochastic policies, the return's gradient is carried by a learned critic:

    d/dtheta E[R] = E[ sum_t dQ(s_t, a_t)/da_t * da_t/dtheta ] = E[ sum_t d/dtheta Q(s_t, mu(s_t; theta)) ]

and the critic is fitted by deep Q learning with target networks (primes):

    L(phi) = E[(Q_phi(s, a) - y)^2],   y = r + gamma * (1 - terminated) * Q'(s', mu'(s')).

Exploration adds Gaussian noise to mu(s). It runs in the replay loop (:mod:`pathwise.loops.replay`): one
episode, then ``updates_per_step`` updates per collected step.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise import optim, replay
from pathwise.algorithms.base import AlgorithmInfo
from pathwise.algorithms.critics import ActorCriticConfig, critic_loss, make_critics, min_q, sample, td_target
from pathwise.config import at_least
from pathwise.networks import DeterministicPolicy, soft_update
from pathwise.spec import EnvSpec
from pathwise.types import Array, PRNGKey, PyTree, Transition

INFO = AlgorithmInfo("ddpg", loops=("replay",),
                     summary="Deep deterministic policy gradient: a deterministic actor through a learned Q.")


@dataclasses.dataclass(frozen=True)
class Config(ActorCriticConfig):
    """DDPG options (defaults: RL Zoo's Pendulum-v1 TD3/DDPG settings with a smaller warm-up)."""

    exploration_std: float = 0.1
    """Std of the Gaussian exploration noise, as a fraction of the action box half-width."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + at_least(self, 0, "exploration_std")


class State(NamedTuple):
    """Everything DDPG learns."""

    actor: DeterministicPolicy
    critics: eqx.Module  # stacked ensemble of QCritic (one by default)
    target_actor: DeterministicPolicy
    target_critics: eqx.Module
    actor_opt: PyTree
    critic_opt: PyTree
    exploration_std: Array  # of the behaviour policy's Gaussian noise, as a fraction of the box half-width


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """Fresh networks (targets equal to the online ones) and Adam states."""
    k_actor, k_critic = jax.random.split(key)
    actor = DeterministicPolicy(spec.obs_dim, spec.action_dim, spec.action_low, spec.action_high, config.hidden,
                                key=k_actor)
    critics = make_critics(k_critic, spec.obs_dim, spec.action_dim, config)
    return State(actor, critics, actor, critics, optim.init(optim.adam(config.actor_lr), actor),
                 optim.init(optim.adam(config.critic_lr), critics), jnp.asarray(config.exploration_std, jnp.float32))


def exploration_action(actor: DeterministicPolicy, obs: Array, noise: Array, std: float | Array) -> Array:
    """``clip(mu(s) + std * (high - low) / 2 * noise)`` with standard normal ``noise``."""
    low, high = actor.box()
    return jnp.clip(actor(obs) + std * 0.5 * (high - low) * noise, low, high)


def critic_target(target_actor: DeterministicPolicy, target_critics: eqx.Module, batch: Transition,
                  gamma: float) -> Array:
    """``y = r + gamma * (1 - terminated) * min_i Q'_i(s', mu'(s'))`` (lecture: y_t with target networks)."""
    next_action = jax.vmap(target_actor)(batch.next_obs)
    return td_target(batch.reward, batch.terminated, min_q(target_critics, batch.next_obs, next_action), gamma)


def actor_loss(actor: DeterministicPolicy, critics: eqx.Module, obs: Array) -> Array:
    """``-E_s[Q(s, mu(s; theta))]``: its gradient is minus the deterministic policy gradient of the lecture."""
    return -jnp.mean(min_q(critics, obs, jax.vmap(actor)(obs)))


def update(state: State, buffer: replay.ReplayBuffer, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """One critic step, one actor step (through the updated critic) and a Polyak step of both targets."""
    batch = sample(buffer, key, config.batch_size)
    target = critic_target(state.target_actor, state.target_critics, batch, config.gamma)
    c_loss, c_grads = eqx.filter_value_and_grad(critic_loss)(state.critics, batch.obs, batch.action, target)
    critics, critic_opt = optim.apply(state.critics, c_grads, state.critic_opt, optim.adam(config.critic_lr))
    a_loss, a_grads = eqx.filter_value_and_grad(actor_loss)(state.actor, critics, batch.obs)
    actor, actor_opt = optim.apply(state.actor, a_grads, state.actor_opt, optim.adam(config.actor_lr))
    state = State(actor, critics, soft_update(state.target_actor, actor, config.tau),
                  soft_update(state.target_critics, critics, config.tau), actor_opt, critic_opt, state.exploration_std)
    return state, {"critic_loss": c_loss, "actor_loss": a_loss, "q_mean": -a_loss}


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """``mu(s)``, plus Gaussian exploration noise (``exploration_std``) when not ``deterministic``."""
    if deterministic:
        return state.actor(obs)
    noise = jax.random.normal(key, (len(state.actor.low),))
    return exploration_action(state.actor, obs, noise, state.exploration_std)


__all__ = ["Config", "INFO", "State", "act", "actor_loss", "critic_target", "exploration_action", "init", "update"]
