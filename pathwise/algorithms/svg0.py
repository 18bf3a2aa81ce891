"""SVG(0): a stochastic Gaussian policy trained by the pathwise gradient of a learned Q.

Lecture, "Q learning in continuous stochastic action space / SVG(0)": with the policy
reparameterized as a = pi(s, xi; theta), xi ~ N(0, I),

    d/dtheta E[R] = E[ sum_t d/dtheta Q(s_t, pi(s_t, xi_t; theta)) ],

so the actor follows g ∝ ∇θ Σ_t Q_φ(s_t, π(s_t, ξ_t; θ)) and Q_φ is learned by TD from replay.
The policy is a tanh-squashed Gaussian whose mean *and* noise scale depend on the state; both are
learned through that pathwise gradient. An optional entropy bonus α H(π(·|s)) (α fixed, or tuned so
the policy's entropy tracks a target, as in SAC) keeps the noise scale from collapsing:

    actor:   L(θ) = E_{s, ξ}[ α log π(a|s) − min_i Q_i(s, a) ],   a = π(s, ξ; θ)
    critic:  L(φ) = E[(Q_φ(s, a) − y)²],   y = r + γ (1 − terminated) (min_i Q'_i(s', a') − α log π(a'|s')),
             a' = π(s', ξ'; θ)
    α:       L(log α) = −log α · E[log π(a|s) + H_target]

With ``entropy_coef=0`` and ``auto_entropy=False`` this is the lecture's SVG(0) exactly. Exploration is
sampling the policy. The interaction loop (one episode per ``train_iteration``, then
``updates_per_step`` updates per collected step in one jitted call) is shared with DDPG
(:mod:`pathwise.algorithms.common`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise import replay
from pathwise.algorithms.common import (OffPolicyConfig, OffPolicyLearner, adam_init, adam_step, critic_loss,
                                        make_critics, mean_metrics, min_q, store_episode, td_target)
from pathwise.distributions import GaussianPolicy
from pathwise.networks import soft_update
from pathwise.types import Array, PRNGKey, PyTree, Transition


@dataclasses.dataclass(frozen=True)
class SVG0Config(OffPolicyConfig):
    """SVG(0) options (defaults tuned for Pendulum-v1)."""

    n_critics: int = 2
    """Number of critics; the TD target and the actor use their minimum (clipped double Q)."""
    entropy_coef: float = 1.0
    """Entropy weight alpha (the initial value when ``auto_entropy``); 0 with auto_entropy=False = plain SVG(0)."""
    auto_entropy: bool = True
    """Tune alpha by gradient descent so that the policy entropy tracks ``target_entropy``."""
    target_entropy: float = -1.0
    """Target entropy per action dimension (nats) for ``auto_entropy``."""
    log_std_min: float = -5.0
    """Lower clip of the policy's log standard deviation (before the tanh squashing)."""
    log_std_max: float = 2.0
    """Upper clip of the policy's log standard deviation."""


def sample_action(policy: GaussianPolicy, obs: Array, xi: Array) -> tuple[Array, Array]:
    """Reparameterized ``a = pi(s, xi; theta) = box(tanh(mean(s) + std(s) * xi))`` and ``log pi(a|s)``."""
    dist = policy(obs)
    return dist.sample_from_noise(xi), dist.log_prob_from_noise(xi)


def mode_action(policy: GaussianPolicy, obs: Array) -> Array:
    """The deterministic action ``box(tanh(mean(s)))`` used for evaluation."""
    return policy(obs).mode()


class SVG0State(NamedTuple):
    """Everything SVG(0) learns or needs to resume."""

    actor: GaussianPolicy  # state-dependent mean and log-std, squashed into the action box
    critics: eqx.Module  # stacked ensemble of QCritic
    target_critics: eqx.Module
    log_alpha: Array
    actor_opt: PyTree
    critic_opt: PyTree
    alpha_opt: PyTree
    buffer: replay.ReplayBuffer
    key: PRNGKey
    env_steps: Array


def init(key: PRNGKey, obs_dim: int, action_dim: int, low: Array, high: Array, config: SVG0Config) -> SVG0State:
    """Fresh actor and critics (targets equal to the online critics), Adam states, an empty buffer."""
    k_actor, k_critic, key = jax.random.split(key, 3)
    actor = GaussianPolicy(obs_dim, action_dim, config.hidden, key=k_actor, low=low, high=high,
                           state_dependent_std=True, log_std_min=config.log_std_min, log_std_max=config.log_std_max,
                           act="relu")
    critics = make_critics(k_critic, obs_dim, action_dim, config)
    log_alpha = jnp.asarray(math.log(config.entropy_coef) if config.entropy_coef > 0 else -jnp.inf, jnp.float32)
    example = Transition(jnp.zeros(obs_dim), jnp.zeros(action_dim), jnp.zeros(()), jnp.zeros(obs_dim),
                         jnp.zeros((), bool), jnp.zeros((), bool))
    return SVG0State(actor, critics, critics, log_alpha, adam_init(actor.net), adam_init(critics),
                     adam_init(log_alpha), replay.init(example, config.buffer_size), key, jnp.zeros((), jnp.int32))


def critic_target(actor: GaussianPolicy, target_critics: eqx.Module, alpha: Array, batch: Transition, xi: Array,
                  gamma: float) -> Array:
    """``y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s'))``, ``a' = pi(s', xi'; theta)``."""
    next_action, next_log_prob = jax.vmap(sample_action, (None, 0, 0))(actor, batch.next_obs, xi)
    next_value = min_q(target_critics, batch.next_obs, next_action) - alpha * next_log_prob
    return td_target(batch.reward, batch.terminated, next_value, gamma)


def actor_loss(actor: GaussianPolicy, critics: eqx.Module, alpha: Array, obs: Array,
               xi: Array) -> tuple[Array, Array]:
    """``E_{s,xi}[alpha log pi(a|s) - min_i Q_i(s, a)]``, ``a = pi(s, xi; theta)`` (SVG(0)); aux: mean log pi."""
    action, log_prob = jax.vmap(sample_action, (None, 0, 0))(actor, obs, xi)
    return jnp.mean(alpha * log_prob - min_q(critics, obs, action)), jnp.mean(log_prob)


def alpha_loss(log_alpha: Array, mean_log_prob: Array, target_entropy: float) -> Array:
    """``-log_alpha * (E[log pi] + H_target)``: raises alpha while the entropy is below the target."""
    return -log_alpha * jax.lax.stop_gradient(mean_log_prob + target_entropy)


def update_step(state: SVG0State, key: PRNGKey, config: SVG0Config) -> tuple[SVG0State, dict[str, Array]]:
    """One critic step, one actor step through the updated critics, one alpha step, a Polyak target step."""
    k_batch, k_next, k_actor = jax.random.split(key, 3)
    batch = replay.sample(state.buffer, k_batch, config.batch_size)
    action_dim = batch.action.shape[-1]
    alpha = jnp.exp(state.log_alpha)
    xi_next = jax.random.normal(k_next, (config.batch_size, action_dim))
    target = critic_target(state.actor, state.target_critics, alpha, batch, xi_next, config.gamma)
    c_loss, c_grads = eqx.filter_value_and_grad(critic_loss)(state.critics, batch.obs, batch.action, target)
    critics, critic_opt = adam_step(state.critics, c_grads, state.critic_opt, config.critic_lr)
    xi = jax.random.normal(k_actor, (config.batch_size, action_dim))
    (a_loss, log_prob), a_grads = eqx.filter_value_and_grad(actor_loss, has_aux=True)(
        state.actor, critics, alpha, batch.obs, xi)
    net, actor_opt = adam_step(state.actor.net, a_grads.net, state.actor_opt, config.actor_lr)  # box stays fixed
    actor = eqx.tree_at(lambda a: a.net, state.actor, net)
    log_alpha, alpha_opt = state.log_alpha, state.alpha_opt
    if config.auto_entropy:
        grad = jax.grad(alpha_loss)(state.log_alpha, log_prob, config.target_entropy * action_dim)
        log_alpha, alpha_opt = adam_step(state.log_alpha, grad, state.alpha_opt, config.actor_lr)
    state = state._replace(actor=actor, critics=critics, log_alpha=log_alpha, actor_opt=actor_opt,
                           critic_opt=critic_opt, alpha_opt=alpha_opt,
                           target_critics=soft_update(state.target_critics, critics, config.tau))
    return state, {"critic_loss": c_loss, "actor_loss": a_loss, "entropy": -log_prob, "alpha": alpha}


@functools.partial(jax.jit, static_argnames="config")
def learn(state: SVG0State, episode: Transition, length: Array, n_updates: Array, key: PRNGKey,
          config: SVG0Config) -> tuple[SVG0State, dict[str, Array]]:
    """Store the first ``length`` rows of ``episode``, then run ``n_updates`` update steps (one compilation)."""
    state = state._replace(buffer=store_episode(state.buffer, episode, length))
    example = {k: jnp.zeros(()) for k in ("critic_loss", "actor_loss", "entropy", "alpha")}
    return mean_metrics(lambda s, k: update_step(s, k, config), state, key, n_updates, example)


_behaviour_action = jax.jit(lambda actor, obs, xi: sample_action(actor, obs, xi)[0])
_mode_action = jax.jit(mode_action)


class SVG0(OffPolicyLearner):
    """SVG(0) on a Gymnasium env with a bounded Box action space (see the module docstring)."""

    name = "svg0"
    Config = SVG0Config

    @property
    def noise_dim(self) -> int:
        return self.action_dim

    def init_state(self, key: PRNGKey) -> SVG0State:
        if self.config.entropy_coef < 0:
            raise ValueError(f"entropy_coef={self.config.entropy_coef} must be >= 0.")
        if self.config.auto_entropy and self.config.entropy_coef == 0:
            raise ValueError("auto_entropy=True needs an initial entropy_coef > 0 (e.g. 1.0); "
                             "or set auto_entropy=False for plain SVG(0).")
        return init(key, self.obs_dim, self.action_dim, self.low, self.high, self.config)

    def behaviour_action(self, state: SVG0State, obs: Array, noise: Array) -> Array:
        return _behaviour_action(state.actor, obs, noise)

    def mode_action(self, state: SVG0State, obs: Array) -> Array:
        return _mode_action(state.actor, obs)

    def learn(self, state, episode, length, n_updates, key):
        return learn(state, episode, length, n_updates, key, self.config)


__all__ = ["SVG0", "SVG0Config", "SVG0State", "actor_loss", "alpha_loss", "critic_target", "init",
           "learn", "mode_action", "sample_action", "update_step"]
