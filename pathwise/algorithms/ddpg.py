"""Deep Deterministic Policy Gradients (lecture, "Deep Deterministic Policy Gradients"; Lillicrap et al. 2016).

Giving up stochastic policies, the return's gradient is carried by a learned critic:

    d/dtheta E[R] = E[ sum_t dQ(s_t, a_t)/da_t * da_t/dtheta ] = E[ sum_t d/dtheta Q(s_t, mu(s_t; theta)) ]

and the critic is fitted by deep Q learning with target networks (primes):

    L(phi) = E[(Q_phi(s, a) - y)^2],   y = r + gamma * (1 - terminated) * Q'(s', mu'(s')).

Exploration adds Gaussian noise to mu(s). It runs in the replay loop (:mod:`pathwise.loops.replay`): one
episode, then ``updates_per_step`` updates per collected step.

Options against the falls that follow a first solve (``act_with_target`` is on by default, the others off):

* ``n_critics=2`` with ``target_noise > 0``: TD3's clipped double Q and target policy smoothing (Fujimoto et
  al. 2018, eq. 10 and 14), ``y = r + gamma (1 - d) min_i Q'_i(s', clip(mu'(s') + clip(eps, -c, c)))``,
  ``eps ~ N(0, sigma^2)``: the target no longer exploits a narrow peak of an overestimated critic;
* ``actor_lr_decay_steps``: the actor's Adam step decays (cosine) to ``actor_lr_final_fraction`` of
  ``actor_lr`` over that many updates;
* ``act_with_target``: the deterministic (evaluation) action is the target actor's, the Polyak average
  ``mu'`` of the recent actors, not the latest actor step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise import optim, replay
from pathwise.algorithms.base import ActorDecayOptions, AlgorithmInfo
from pathwise.algorithms.critics import ActorCriticConfig, critic_loss, make_critics, min_q, sample, td_target
from pathwise.config import at_least
from pathwise.networks import DeterministicPolicy, soft_update
from pathwise.spec import EnvSpec
from pathwise.types import Array, PRNGKey, PyTree, Transition

INFO = AlgorithmInfo("ddpg", loops=("replay",),
                     summary="Deep deterministic policy gradient: a deterministic actor through a learned Q.")


@dataclasses.dataclass(frozen=True)
class Config(ActorCriticConfig, ActorDecayOptions):
    """DDPG options (defaults: RL Zoo's Pendulum-v1 TD3/DDPG settings with a smaller warm-up)."""

    ADDED: ClassVar[dict[str, Any]] = {"act_with_target": False}  # before 0.3: the latest actor acted

    exploration_std: float = 0.1
    """Std of the Gaussian exploration noise, as a fraction of the action box half-width."""
    target_noise: float = 0.0
    """Std sigma of the Gaussian noise added to the target action mu'(s') in the TD target, as a fraction of the
    action box half-width (target policy smoothing, Fujimoto et al. 2018, eq. 14; TD3 uses 0.2); 0: none."""
    target_noise_clip: float = 0.5
    """Clip c of that noise, as a fraction of the action box half-width (TD3: 0.5)."""
    act_with_target: bool = True
    """Deterministic actions (evaluation, ``predict``) from the target actor mu', the Polyak average (rate
    ``tau``) of the recent actors, instead of the latest one; exploration still follows the latest actor."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + at_least(self, 0, "exploration_std", "target_noise", "target_noise_clip")


class State(NamedTuple):
    """Everything DDPG learns."""

    actor: DeterministicPolicy
    critics: eqx.Module  # stacked ensemble of QCritic (one by default)
    target_actor: DeterministicPolicy
    target_critics: eqx.Module
    actor_opt: PyTree
    critic_opt: PyTree
    exploration_std: Array  # of the behaviour policy's Gaussian noise, as a fraction of the box half-width
    policy: DeterministicPolicy  # what acts deterministically: target_actor with ``act_with_target``, else actor


def actor_optimizer(config: Config):
    """Adam at ``actor_lr``, decayed over ``actor_lr_decay_steps`` updates when that is > 0."""
    return config.actor_optimizer()


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """Fresh networks (targets equal to the online ones) and Adam states."""
    k_actor, k_critic = jax.random.split(key)
    actor = DeterministicPolicy(spec.obs_dim, spec.action_dim, spec.action_low, spec.action_high, config.hidden,
                                key=k_actor)
    critics = make_critics(k_critic, spec.obs_dim, spec.action_dim, config)
    return State(actor, critics, actor, critics, optim.init(actor_optimizer(config), actor),
                 optim.init(optim.adam(config.critic_lr), critics), jnp.asarray(config.exploration_std, jnp.float32),
                 actor)


def exploration_action(actor: DeterministicPolicy, obs: Array, noise: Array, std: float | Array,
                       noise_clip: float | Array = jnp.inf) -> Array:
    """``clip(mu(s) + clip(std * noise, -c, c) * (high - low) / 2)`` with standard normal ``noise`` and
    ``c = noise_clip`` (no clip by default), kept in the action box."""
    low, high = actor.box()
    return jnp.clip(actor(obs) + jnp.clip(std * noise, -noise_clip, noise_clip) * 0.5 * (high - low), low, high)


def critic_target(target_actor: DeterministicPolicy, target_critics: eqx.Module, batch: Transition,
                  gamma: float, noise: Array | None = None, noise_std: float = 0.0, noise_clip: float = 0.5) -> Array:
    """``y = r + gamma * (1 - terminated) * min_i Q'_i(s', a')`` (lecture: y_t with target networks), with
    ``a' = mu'(s')``, or with standard normal ``noise`` (one row per transition) TD3's smoothed target action
    ``a' = clip(mu'(s') + clip(noise_std * noise, -noise_clip, noise_clip))`` (Fujimoto et al. 2018, eq. 14)."""
    if noise is None:
        next_action = jax.vmap(target_actor)(batch.next_obs)
    else:
        next_action = jax.vmap(exploration_action, (None, 0, 0, None, None))(target_actor, batch.next_obs, noise,
                                                                               noise_std, noise_clip)
    return td_target(batch.reward, batch.terminated, min_q(target_critics, batch.next_obs, next_action), gamma)


def actor_loss(actor: DeterministicPolicy, critics: eqx.Module, obs: Array) -> Array:
    """``-E_s[Q(s, mu(s; theta))]``: its gradient is minus the deterministic policy gradient of the lecture."""
    return -jnp.mean(min_q(critics, obs, jax.vmap(actor)(obs)))


def update(state: State, buffer: replay.ReplayBuffer, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """One critic step, one actor step (through the updated critic) and a Polyak step of both targets."""
    k_batch, k_smooth = jax.random.split(key)
    batch = sample(buffer, k_batch, config.batch_size)
    noise = jax.random.normal(k_smooth, batch.action.shape) if config.target_noise > 0 else None
    target = critic_target(state.target_actor, state.target_critics, batch, config.gamma, noise, config.target_noise,
                           config.target_noise_clip)
    c_loss, c_grads = eqx.filter_value_and_grad(critic_loss)(state.critics, batch.obs, batch.action, target)
    critics, critic_opt = optim.apply(state.critics, c_grads, state.critic_opt, optim.adam(config.critic_lr))
    a_loss, a_grads = eqx.filter_value_and_grad(actor_loss)(state.actor, critics, batch.obs)
    actor, actor_opt = optim.apply(state.actor, a_grads, state.actor_opt, actor_optimizer(config))
    target_actor = soft_update(state.target_actor, actor, config.tau)
    state = State(actor, critics, target_actor, soft_update(state.target_critics, critics, config.tau), actor_opt,
                  critic_opt, state.exploration_std, target_actor if config.act_with_target else actor)
    return state, {"critic_loss": c_loss, "actor_loss": a_loss, "q_mean": -a_loss}


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """``mu(s)`` (``mu'(s)`` with ``act_with_target``), or the latest ``mu(s)`` plus Gaussian exploration noise
    (``exploration_std``) when not ``deterministic``."""
    if deterministic:
        return state.policy(obs)
    return act_from_noise(state, obs, jax.random.normal(key, (len(state.actor.low),)))


def act_from_noise(state: State, obs: Array, noise: Array) -> Array:
    """The exploring action for given standard-normal ``noise`` (shape ``(action_dim,)``): the latest ``mu(s)`` plus
    ``exploration_std`` times it, in the box (the replay loop's episodes with ``noise_color`` > 0 pass
    time-correlated noise)."""
    return exploration_action(state.actor, obs, noise, state.exploration_std)


__all__ = ["Config", "INFO", "State", "act", "act_from_noise", "actor_loss", "actor_optimizer", "critic_target",
           "exploration_action", "init", "update"]
