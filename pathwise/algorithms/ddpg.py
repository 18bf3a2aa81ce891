"""Deep Deterministic Policy Gradients (lecture, "Deep Deterministic Policy Gradients"; Lillicrap et al. 2016).

Giving up stochastic policies, the return's gradient is carried by a learned critic:

    d/dtheta E[R] = E[ sum_t dQ(s_t, a_t)/da_t * da_t/dtheta ] = E[ sum_t d/dtheta Q(s_t, mu(s_t; theta)) ]

and the critic is fitted by deep Q learning with target networks (primes):

    L(phi) = E[(Q_phi(s, a) - y)^2],   y = r + gamma * (1 - terminated) * Q'(s', mu'(s')).

Exploration adds Gaussian noise to mu(s); the first ``learning_starts`` steps are uniformly random.
One ``train_iteration`` collects one episode from Gymnasium and then runs ``updates_per_step`` updates
per collected step inside a single jitted ``fori_loop`` (so a 200-step Pendulum episode pays for 200
updates with one dispatch). Updating after the episode instead of interleaving changes the data each
update sees by at most one episode (<1% of a 20k-step run) and removes 200 Python round trips per episode.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise import replay
from pathwise.algorithms.common import (OffPolicyConfig, OffPolicyLearner, adam_init, adam_step, critic_loss,
                                        make_critics, mean_metrics, min_q, store_episode, td_target)
from pathwise.networks import DeterministicPolicy, soft_update
from pathwise.types import Array, PRNGKey, PyTree, Transition


@dataclasses.dataclass(frozen=True)
class DDPGConfig(OffPolicyConfig):
    """DDPG options (defaults: RL Zoo's Pendulum-v1 TD3/DDPG settings with a smaller warm-up)."""

    exploration_std: float = 0.1
    """Std of the Gaussian exploration noise, as a fraction of the action box half-width."""


class DDPGState(NamedTuple):
    """Everything DDPG learns or needs to resume."""

    actor: DeterministicPolicy
    critics: eqx.Module  # stacked ensemble of QCritic (one by default)
    target_actor: DeterministicPolicy
    target_critics: eqx.Module
    actor_opt: PyTree
    critic_opt: PyTree
    buffer: replay.ReplayBuffer
    key: PRNGKey
    env_steps: Array


def init(key: PRNGKey, obs_dim: int, action_dim: int, low: Array, high: Array, config: DDPGConfig) -> DDPGState:
    """Fresh networks (targets equal to the online ones), Adam states and an empty replay buffer."""
    k_actor, k_critic, key = jax.random.split(key, 3)
    actor = DeterministicPolicy(obs_dim, action_dim, low, high, config.hidden, key=k_actor)
    critics = make_critics(k_critic, obs_dim, action_dim, config)
    example = Transition(jnp.zeros(obs_dim), jnp.zeros(action_dim), jnp.zeros(()), jnp.zeros(obs_dim),
                         jnp.zeros((), bool), jnp.zeros((), bool))
    return DDPGState(actor, critics, actor, critics, adam_init(actor.net), adam_init(critics),
                     replay.init(example, config.buffer_size), key, jnp.zeros((), jnp.int32))


def exploration_action(actor: DeterministicPolicy, obs: Array, noise: Array, std: float | Array) -> Array:
    """``clip(mu(s) + std * (high - low) / 2 * noise)`` with standard normal ``noise``."""
    action = actor(obs) + std * 0.5 * (actor.high - actor.low) * noise
    return jnp.clip(action, actor.low, actor.high)


def critic_target(target_actor: DeterministicPolicy, target_critics: eqx.Module, batch: Transition,
                  gamma: float) -> Array:
    """``y = r + gamma * (1 - terminated) * min_i Q'_i(s', mu'(s'))`` (lecture: y_t with target networks)."""
    next_action = jax.vmap(target_actor)(batch.next_obs)
    return td_target(batch.reward, batch.terminated, min_q(target_critics, batch.next_obs, next_action), gamma)


def actor_loss(actor: DeterministicPolicy, critics: eqx.Module, obs: Array) -> Array:
    """``-E_s[Q(s, mu(s; theta))]``: its gradient is minus the deterministic policy gradient of the lecture."""
    return -jnp.mean(min_q(critics, obs, jax.vmap(actor)(obs)))


def update_step(state: DDPGState, key: PRNGKey, config: DDPGConfig) -> tuple[DDPGState, dict[str, Array]]:
    """One critic step, one actor step (through the updated critic) and a Polyak step of both targets."""
    batch = replay.sample(state.buffer, key, config.batch_size)
    target = critic_target(state.target_actor, state.target_critics, batch, config.gamma)
    c_loss, c_grads = eqx.filter_value_and_grad(critic_loss)(state.critics, batch.obs, batch.action, target)
    critics, critic_opt = adam_step(state.critics, c_grads, state.critic_opt, config.critic_lr)
    a_loss, a_grads = eqx.filter_value_and_grad(actor_loss)(state.actor, critics, batch.obs)
    net, actor_opt = adam_step(state.actor.net, a_grads.net, state.actor_opt, config.actor_lr)  # box stays fixed
    actor = eqx.tree_at(lambda a: a.net, state.actor, net)
    state = state._replace(actor=actor, critics=critics, actor_opt=actor_opt, critic_opt=critic_opt,
                           target_actor=soft_update(state.target_actor, actor, config.tau),
                           target_critics=soft_update(state.target_critics, critics, config.tau))
    return state, {"critic_loss": c_loss, "actor_loss": a_loss, "q_mean": -a_loss}


@functools.partial(jax.jit, static_argnames="config")
def learn(state: DDPGState, episode: Transition, length: Array, n_updates: Array, key: PRNGKey,
          config: DDPGConfig) -> tuple[DDPGState, dict[str, Array]]:
    """Store the first ``length`` rows of ``episode``, then run ``n_updates`` update steps (one compilation)."""
    state = state._replace(buffer=store_episode(state.buffer, episode, length))
    example = {"critic_loss": jnp.zeros(()), "actor_loss": jnp.zeros(()), "q_mean": jnp.zeros(())}
    return mean_metrics(lambda s, k: update_step(s, k, config), state, key, n_updates, example)


_exploration_action = jax.jit(exploration_action)
_mode_action = jax.jit(lambda actor, obs: actor(obs))


class DDPG(OffPolicyLearner):
    """DDPG on a Gymnasium env with a bounded Box action space (see the module docstring)."""

    name = "ddpg"
    Config = DDPGConfig

    @property
    def noise_dim(self) -> int:
        return self.action_dim

    def init_state(self, key: PRNGKey) -> DDPGState:
        return init(key, self.obs_dim, self.action_dim, self.low, self.high, self.config)

    def behaviour_action(self, state: DDPGState, obs: Array, noise: Array) -> Array:
        return _exploration_action(state.actor, obs, noise, self.config.exploration_std)

    def mode_action(self, state: DDPGState, obs: Array) -> Array:
        return _mode_action(state.actor, obs)

    def learn(self, state, episode, length, n_updates, key):
        return learn(state, episode, length, n_updates, key, self.config)


__all__ = ["DDPG", "DDPGConfig", "DDPGState", "actor_loss", "critic_target", "exploration_action", "init", "learn",
           "update_step"]
