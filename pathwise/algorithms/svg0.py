"""SVG(0): a stochastic Gaussian policy trained by the pathwise gradient of a learned Q.

Lecture, "Q learning in continuous stochastic action space / SVG(0)": with the policy
reparameterized as a = pi(s, xi; theta), xi ~ N(0, I),

    d/dtheta E[R] = E[ sum_t d/dtheta Q(s_t, pi(s_t, xi_t; theta)) ],

so the actor follows g ∝ ∇θ Σ_t Q_φ(s_t, π(s_t, ξ_t; θ)) and Q_φ is learned by TD from replay. This is the
value-gradient objective ``J_0`` of :mod:`pathwise.algorithms.svg_core` (k = 0, a Q bootstrap: the minimum
of the twin critics, frozen). The policy is a tanh-squashed Gaussian whose mean *and* noise scale depend on
the state; both are learned through that pathwise gradient. An optional entropy bonus α H(π(·|s)) (α fixed,
or tuned so the policy's entropy tracks a target, as in SAC) keeps the noise scale from collapsing:

    actor:   L(θ) = E_{s, ξ}[ α log π(a|s) − J_0(s, ξ) ],   J_0 = min_i Q_i(s, a),   a = π(s, ξ; θ)
    critic:  L(φ) = E[(Q_φ(s, a) − y)²],   y = r + γ (1 − terminated) (min_i Q'_i(s', a') − α log π(a'|s')),
             a' = π(s', ξ'; θ)
    α:       L(log α) = −log α · E[log π(a|s) + H_target]

With ``entropy_coef=0`` and ``auto_entropy=False`` this is the lecture's SVG(0) exactly. Exploration is
sampling the policy. It runs in the replay loop (:mod:`pathwise.loops.replay`), as DDPG does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise import optim, replay
from pathwise.algorithms.base import AlgorithmInfo
from pathwise.algorithms.critics import (ActorCriticConfig, critic_loss, make_critics, min_q, min_q_bootstrap,
                                         sample, td_target)
from pathwise.algorithms.svg_core import value_gradient_objective
from pathwise.config import at_least
from pathwise.distributions import LOG_STD_MAX, LOG_STD_MIN, GaussianPolicy
from pathwise.networks import soft_update
from pathwise.spec import EnvSpec
from pathwise.types import Array, PRNGKey, PyTree, Transition

INFO = AlgorithmInfo("svg0", loops=("replay",),
                     summary="SVG(0): a squashed-Gaussian policy through twin learned Qs, entropy-regularized.")


@dataclasses.dataclass(frozen=True)
class Config(ActorCriticConfig):
    """SVG(0) options (defaults tuned for Pendulum-v1)."""

    n_critics: int = 2
    """Number of critics; the TD target and the actor use their minimum (clipped double Q)."""
    entropy_coef: float = 1.0
    """Entropy weight alpha (the initial value when ``auto_entropy``); 0 with auto_entropy=False = plain SVG(0)."""
    auto_entropy: bool = True
    """Tune alpha by gradient descent so that the policy entropy tracks ``target_entropy``."""
    target_entropy: float = -1.0
    """Target entropy per action dimension (nats) for ``auto_entropy``."""
    log_std_min: float = LOG_STD_MIN
    """Lower clip of the policy's log standard deviation (before the tanh squashing)."""
    log_std_max: float = LOG_STD_MAX
    """Upper clip of the policy's log standard deviation."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + at_least(self, 0, "entropy_coef") + [
            (not (self.auto_entropy and self.entropy_coef == 0),
             "auto_entropy=True needs an initial entropy_coef > 0 (e.g. 1.0); or set auto_entropy=False for plain "
             "SVG(0)"),
            (self.log_std_min < self.log_std_max,
             f"log_std_min={self.log_std_min} must be below log_std_max={self.log_std_max}")]


class State(NamedTuple):
    """Everything SVG(0) learns."""

    actor: GaussianPolicy  # state-dependent mean and log-std, squashed into the action box
    critics: eqx.Module  # stacked ensemble of QCritic
    target_critics: eqx.Module
    log_alpha: Array  # log of the entropy weight (-inf for alpha = 0)
    actor_opt: PyTree
    critic_opt: PyTree
    alpha_opt: PyTree


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """Fresh actor and critics (targets equal to the online critics) and Adam states."""
    k_actor, k_critic = jax.random.split(key)
    actor = GaussianPolicy(spec.obs_dim, spec.action_dim, config.hidden, key=k_actor, low=spec.action_low,
                           high=spec.action_high, state_dependent_std=True, log_std_min=config.log_std_min,
                           log_std_max=config.log_std_max, act="relu")
    critics = make_critics(k_critic, spec.obs_dim, spec.action_dim, config)
    log_alpha = jnp.asarray(math.log(config.entropy_coef) if config.entropy_coef > 0 else -jnp.inf, jnp.float32)
    return State(actor, critics, critics, log_alpha, optim.init(optim.adam(config.actor_lr), actor),
                 optim.init(optim.adam(config.critic_lr), critics), optim.init(optim.adam(config.actor_lr), log_alpha))


def sample_action(policy: GaussianPolicy, obs: Array, xi: Array) -> tuple[Array, Array]:
    """Reparameterized ``a = pi(s, xi; theta) = box(tanh(mean(s) + std(s) * xi))`` and ``log pi(a|s)``."""
    dist = policy(obs)
    return dist.sample_from_noise(xi), dist.log_prob_from_noise(xi)


def critic_target(actor: GaussianPolicy, target_critics: eqx.Module, alpha: Array, batch: Transition, xi: Array,
                  gamma: float) -> Array:
    """``y = r + gamma (1 - terminated) (min_i Q'_i(s', a') - alpha log pi(a'|s'))``, ``a' = pi(s', xi'; theta)``."""
    next_action, next_log_prob = jax.vmap(sample_action, (None, 0, 0))(actor, batch.next_obs, xi)
    next_value = min_q(target_critics, batch.next_obs, next_action) - alpha * next_log_prob
    return td_target(batch.reward, batch.terminated, next_value, gamma)


def actor_loss(actor: GaussianPolicy, critics: eqx.Module, alpha: Array, obs: Array,
               xi: Array) -> tuple[Array, Array]:
    """``E_{s,xi}[alpha log pi(a|s) - J_0(s, xi)]``, ``J_0 = min_i Q_i(s, pi(s, xi; theta))`` with the critics
    frozen (``svg_core.value_gradient_objective``, k = 0); aux: the mean ``log pi``."""
    bootstrap = min_q_bootstrap(critics)
    no_model_noise = jnp.zeros((0, obs.shape[-1]), obs.dtype)

    def j0(o, x):
        return value_gradient_objective(None, actor.act, bootstrap, o, x[None], no_model_noise, 1.0).objective

    log_prob = jax.vmap(lambda o, x: sample_action(actor, o, x)[1])(obs, xi)
    return jnp.mean(alpha * log_prob - jax.vmap(j0)(obs, xi)), jnp.mean(log_prob)


def alpha_loss(log_alpha: Array, mean_log_prob: Array, target_entropy: float) -> Array:
    """``-log_alpha * (E[log pi] + H_target)``: raises alpha while the entropy is below the target."""
    return -log_alpha * jax.lax.stop_gradient(mean_log_prob + target_entropy)


def update(state: State, buffer: replay.ReplayBuffer, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """One critic step, one actor step through the updated critics, one alpha step, a Polyak target step."""
    k_batch, k_next, k_actor = jax.random.split(key, 3)
    batch = sample(buffer, k_batch, config.batch_size)
    action_dim = batch.action.shape[-1]
    alpha = jnp.exp(state.log_alpha)
    xi_next = jax.random.normal(k_next, (config.batch_size, action_dim))
    target = critic_target(state.actor, state.target_critics, alpha, batch, xi_next, config.gamma)
    c_loss, c_grads = eqx.filter_value_and_grad(critic_loss)(state.critics, batch.obs, batch.action, target)
    critics, critic_opt = optim.apply(state.critics, c_grads, state.critic_opt, optim.adam(config.critic_lr))
    xi = jax.random.normal(k_actor, (config.batch_size, action_dim))
    (a_loss, log_prob), a_grads = eqx.filter_value_and_grad(actor_loss, has_aux=True)(
        state.actor, critics, alpha, batch.obs, xi)
    actor, actor_opt = optim.apply(state.actor, a_grads, state.actor_opt, optim.adam(config.actor_lr))
    log_alpha, alpha_opt = state.log_alpha, state.alpha_opt
    if config.auto_entropy:
        grad = jax.grad(alpha_loss)(state.log_alpha, log_prob, config.target_entropy * action_dim)
        log_alpha, alpha_opt = optim.apply(state.log_alpha, grad, state.alpha_opt, optim.adam(config.actor_lr))
    state = State(actor, critics, soft_update(state.target_critics, critics, config.tau), log_alpha, actor_opt,
                  critic_opt, alpha_opt)
    return state, {"critic_loss": c_loss, "actor_loss": a_loss, "entropy": -log_prob, "alpha": alpha}


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """The mode ``box(tanh(mean(s)))``, or a sample of the policy when not ``deterministic``."""
    if deterministic:
        return state.actor(obs).mode()
    return act_from_noise(state, obs, jax.random.normal(key, (state.actor.action_dim,), obs.dtype))


def act_from_noise(state: State, obs: Array, noise: Array) -> Array:
    """The policy's sample for given standard-normal noise ``ξ`` (shape ``(action_dim,)``): ``box(tanh(μ + σ ξ))``
    (the replay loop's episodes with ``noise_color`` > 0 pass time-correlated ξ)."""
    return state.actor.act(obs, noise)


__all__ = ["Config", "INFO", "State", "act", "act_from_noise", "actor_loss", "alpha_loss", "critic_target", "init",
           "sample_action", "update"]
