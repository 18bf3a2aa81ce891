"""SVG(0) for discrete actions: the pathwise gradient through Gumbel-softmax relaxed actions.

Lecture, "Re-parametrization trick for categorical distributions":

    y = softmax((log p + ε) / τ),  ε = −log(−log u),  u ~ U[0, 1];

"in the forward pass you sample, in the backward pass you use the soft
distribution" (straight-through). With a critic Q_φ(s, e_a) on one-hot actions
the actor follows the SVG(0) gradient

    ∇θ E_ε[Q_φ(s, y(logits_θ(s), ε, τ))] + α ∇θ H(π_θ(·|s)),

where ``hard=True`` feeds Q the one-hot argmax of y (the exact categorical
sample, by the Gumbel-max trick) and back-propagates through the soft y, and
``hard=False`` feeds Q the soft y itself. The critic is learned by TD from
replay with the expected SARSA target on one-hot inputs,

    y_t = r_t + γ (1 − terminated_t) Σ_a' π_θ(a'|s'_t) min_i Q'_i(s'_t, e_a'),

(target critics Q', no bootstrap past a true terminal, bootstrap on
truncation). ``actor_gradient="expected"`` replaces the Gumbel-softmax sample by
the exact expectation over the actions, ∇θ Σ_a π_θ(a|s) min_i Q_i(s, e_a) (the
gradient the straight-through one estimates; discrete SAC's actor objective):
the critic is a network of the one-hot input, so its slope at a sampled vertex
need not match the difference between the actions' values, and on CartPole-v1
the straight-through mean pointed away from the exact gradient after solving
(BENCHMARKS.md, "Findings behind the presets").

Exploration is sampling π_θ; α is tuned towards a target entropy
(as in discrete SAC) unless ``auto_entropy=False``. It runs in the replay loop
(:mod:`pathwise.loops.replay`), which stores actions as integer indices; the
critics see them one-hot. The relaxation is
:func:`pathwise.estimators.relaxed.gumbel_softmax`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise import optim, replay
from pathwise.algorithms.base import AlgorithmInfo
from pathwise.algorithms.critics import ActorCriticConfig, critic_loss, make_critics, min_q, sample, td_target
from pathwise.config import at_least, positive, unit_interval
from pathwise.distributions import CategoricalPolicy
from pathwise.estimators.relaxed import gumbel_softmax
from pathwise.networks import soft_update
from pathwise.spec import EnvSpec
from pathwise.types import Array, PRNGKey, PyTree, Transition

INFO = AlgorithmInfo("svg0-discrete", loops=("replay",), continuous=False, discrete=True,
                     summary="SVG(0) for discrete actions: straight-through Gumbel-softmax through twin one-hot Qs.")


ACTOR_GRADIENTS = ("gumbel", "expected")


@dataclasses.dataclass(frozen=True)
class Config(ActorCriticConfig):
    """Gumbel-softmax SVG(0) options (the actor-critic defaults; the CartPole-v1 preset holds tuned values)."""

    #: before 0.3: the critics learned the environment's rewards
    ADDED: ClassVar[dict[str, Any]] = {"reward_scale": 1.0, "actor_gradient": "gumbel"}

    n_critics: int = 2
    """Critics; their minimum is used in the target and by the actor (clipped double Q)."""
    reward_scale: float = 1.0
    """The critics learn the return of ``reward_scale · r`` (1/(1−γ) = 100 per unit reward on CartPole-v1 at
    γ = 0.99 is far from a fresh network's output; auto-tuned α follows the scale)."""
    temperature: float = 1.0
    """Gumbel-softmax temperature τ (> 0): small τ is closer to one-hot but has higher-variance gradients."""
    hard: bool = True
    """Straight-through: Q sees the one-hot sample, the gradient flows through the soft sample."""
    actor_gradient: str = "gumbel"
    """``"gumbel"``: the SVG(0) gradient through the Gumbel-softmax sample (``temperature``, ``hard``);
    ``"expected"``: the exact gradient of Σ_a π_θ(a|s) min_i Q_i(s, e_a), every action's value weighted by its
    probability (discrete SAC's actor objective; no sampling, a pass of the critics per action)."""
    entropy_coef: float = 0.1
    """α, weight of the policy entropy bonus in the actor objective (the initial α when ``auto_entropy``)."""
    auto_entropy: bool = True
    """Tune α by gradient steps on −log α·(H_target − H(π)) so the entropy stays near the target; without it
    a critic error in the small gap between two actions' values can make π deterministic on the wrong action."""
    target_entropy_ratio: float = 0.3
    """H_target as a fraction of the maximal entropy log(num_actions)."""
    alpha_lr: float = 1e-3
    """Adam step size of log α."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + positive(self, "temperature", "alpha_lr", "reward_scale") + \
            at_least(self, 0, "entropy_coef") + \
            unit_interval(self, "target_entropy_ratio", closed_low=True) + [
                (self.actor_gradient in ACTOR_GRADIENTS,
                 f"actor_gradient={self.actor_gradient!r}: choose one of {', '.join(ACTOR_GRADIENTS)}"),
                (not (self.auto_entropy and self.entropy_coef == 0),
                 "auto_entropy=True needs an initial entropy_coef > 0 (e.g. 0.1); or set auto_entropy=False")]


class State(NamedTuple):
    """Everything the Gumbel-softmax agent learns."""

    actor: CategoricalPolicy
    critics: eqx.Module  # stacked ensemble of QCritic on [obs, one_hot(a)]
    target_critics: eqx.Module
    log_alpha: Array
    actor_opt: PyTree
    critic_opt: PyTree
    alpha_opt: PyTree


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """A fresh logits network, twin critics on one-hot actions (targets equal to them) and Adam states."""
    k_actor, k_critic = jax.random.split(key)
    actor = CategoricalPolicy(spec.obs_dim, spec.action_dim, config.hidden, key=k_actor)
    critics = make_critics(k_critic, spec.obs_dim, spec.action_dim, config)
    log_alpha = jnp.log(jnp.asarray(config.entropy_coef, jnp.float32))
    return State(actor, critics, critics, log_alpha, optim.init(optim.adam(config.actor_lr), actor),
                 optim.init(optim.adam(config.critic_lr), critics), optim.init(optim.adam(config.alpha_lr), log_alpha))


def num_actions(actor: CategoricalPolicy) -> int:
    """The number of actions (the logits network's output size; a static int)."""
    return actor.net.layers[-1].out_features


def every_action_q(critics: eqx.Module, obs: Array, n: int) -> Array:
    """``min_i Q_i(s_b, e_a)`` for every batch row and every one of the ``n`` actions: ``[B, n]``."""
    return jax.vmap(lambda a: min_q(critics, obs, jnp.broadcast_to(a, (len(obs), n))), out_axes=1)(jnp.eye(n))


def expected_sarsa_target(actor: CategoricalPolicy, target_critics: eqx.Module, batch: Transition,
                          gamma: float) -> Array:
    """y = r + γ (1 − terminated) Σ_a' π(a'|s') min_i Q'_i(s', e_a') (expected SARSA on one-hot actions)."""
    probs = jax.vmap(lambda o: actor(o).probs)(batch.next_obs)  # [B, n]
    q_next = every_action_q(target_critics, batch.next_obs, num_actions(actor))
    return td_target(batch.reward, batch.terminated, jnp.sum(probs * q_next, -1), gamma)


def actor_loss(actor: CategoricalPolicy, critics: eqx.Module, obs: Array, gumbel: Array, temperature: float,
               hard: bool, entropy_coef: Array) -> Array:
    """−E_s[min_i Q_i(s, y(logits_θ(s), ε, τ)) + α H(π_θ(·|s))] with Gumbel-softmax y (lecture's last slides)."""
    logits = jax.vmap(lambda o: actor(o).logits)(obs)
    y = gumbel_softmax(gumbel, logits, temperature, hard)
    entropy = jax.vmap(lambda o: actor(o).entropy())(obs)
    return -jnp.mean(min_q(critics, obs, y) + entropy_coef * entropy)


def expected_actor_loss(actor: CategoricalPolicy, critics: eqx.Module, obs: Array, entropy_coef: Array) -> Array:
    """−E_s[Σ_a π_θ(a|s) min_i Q_i(s, e_a) + α H(π_θ(·|s))]: the exact expectation over the actions, whose
    gradient Σ_a ∇π_θ(a|s) Q(s, e_a) has no sampling noise and no relaxation bias (``actor_gradient="expected"``)."""
    probs = jax.vmap(lambda o: actor(o).probs)(obs)
    entropy = jax.vmap(lambda o: actor(o).entropy())(obs)
    q = jax.lax.stop_gradient(every_action_q(critics, obs, num_actions(actor)))
    return -jnp.mean(jnp.sum(probs * q, -1) + entropy_coef * entropy)


def alpha_loss(log_alpha: Array, entropy: Array, target_entropy: float | Array) -> Array:
    """``log α · (H(π) − H_target)``: descent raises α while the entropy is below the target."""
    return log_alpha * jax.lax.stop_gradient(entropy - target_entropy)


def update(state: State, buffer: replay.ReplayBuffer, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """One critic TD step, one actor step through the updated critic, an α step, a Polyak step of the targets."""
    k_batch, k_gumbel = jax.random.split(key)
    n = num_actions(state.actor)
    batch = sample(buffer, k_batch, config.batch_size)
    batch = batch._replace(action=jax.nn.one_hot(batch.action, n),  # stored as indices; the critics see one-hot
                           reward=batch.reward * config.reward_scale)
    target = expected_sarsa_target(state.actor, state.target_critics, batch, config.gamma)
    c_loss, c_grads = eqx.filter_value_and_grad(critic_loss)(state.critics, batch.obs, batch.action, target)
    critics, critic_opt = optim.apply(state.critics, c_grads, state.critic_opt, optim.adam(config.critic_lr))
    alpha = jnp.exp(state.log_alpha)
    if config.actor_gradient == "expected":
        a_loss, a_grads = eqx.filter_value_and_grad(expected_actor_loss)(state.actor, critics, batch.obs, alpha)
    else:
        gumbel = jax.random.gumbel(k_gumbel, batch.action.shape)
        a_loss, a_grads = eqx.filter_value_and_grad(actor_loss)(state.actor, critics, batch.obs, gumbel,
                                                                config.temperature, config.hard, alpha)
    actor, actor_opt = optim.apply(state.actor, a_grads, state.actor_opt, optim.adam(config.actor_lr))
    entropy = jnp.mean(jax.vmap(lambda o: actor(o).entropy())(batch.obs))
    log_alpha, alpha_opt = state.log_alpha, state.alpha_opt
    if config.auto_entropy:
        grad = jax.grad(alpha_loss)(log_alpha, entropy, config.target_entropy_ratio * jnp.log(n))
        log_alpha, alpha_opt = optim.apply(log_alpha, grad, alpha_opt, optim.adam(config.alpha_lr))
    state = State(actor, critics, soft_update(state.target_critics, critics, config.tau), log_alpha, actor_opt,
                  critic_opt, alpha_opt)
    return state, {"critic_loss": c_loss, "actor_loss": a_loss, "entropy": entropy, "alpha": jnp.exp(log_alpha)}


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """An action index: argmax of the logits, or an exact sample of π_θ(·|s) (Gumbel-max: argmax(logits + ε))."""
    dist = state.actor(obs)
    if deterministic:
        return dist.mode()
    return dist.sample_from_noise(jax.random.gumbel(key, dist.logits.shape, dist.logits.dtype))


__all__ = ["ACTOR_GRADIENTS", "Config", "INFO", "State", "act", "actor_loss", "alpha_loss", "every_action_q",
           "expected_actor_loss", "expected_sarsa_target", "init", "num_actions", "update"]
