"""REINFORCE: the likelihood-ratio (score-function) policy gradient.

Lecture, "Likelihood Ratio Policy Gradient":

    ĝ = 1/m Σ_i ∇θ log P(τ_i; θ) R(τ_i),   ∇θ log P(τ; θ) = Σ_t ∇θ log π_θ(u_t | s_t)

(no dynamics model needed). Variance reduction used here: the reward-to-go
G_t = Σ_{k≥t} γ^{k-t} r_k replaces R(τ) for the action at t (causality), minus
a baseline b(s_t): none, a running mean of G_t per time index, or a learned
value V(s_t) fitted to G_t by regression.

It runs in the on-policy loop (:mod:`pathwise.loops.on_policy`): every update sees one whole episode
from each of ``num_envs`` Gymnasium environments (the m sample paths), as a time-major
:class:`~pathwise.loops.on_policy.Segment` padded to the episode limit. Terminated vs truncated: an
episode cut by the time limit is not over, so its reward-to-go is bootstrapped with the value baseline,
G_T = V(s_T) (with no learned value it is 0, i.e. the truncated return is used as is; for CartPole-v1
the 500-step cap is the goal, so this only matters for the value baseline).

Trust region (``epochs > 1`` with ``clip_ratio > 0``, :class:`~pathwise.algorithms.base.TrustRegionOptions`): the
episodes are used for ``epochs`` policy steps on PPO's clipped surrogate Σ_t min(ρ_t A_t, clip(ρ_t, 1 ± ε) A_t)
with ρ_t = π_θ(u_t|s_t) / π_θold(u_t|s_t) and the advantages computed once, before the first step (which equals
the plain REINFORCE step); the value baseline is fitted once, after them.

Discrete actions use a categorical policy on MLP logits; continuous actions a diagonal Gaussian with a
state-independent learned log-std (the loop clips the sample into the action box when stepping the
environment; the log-likelihood is that of the unclipped sample).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise import optim
from pathwise.algorithms.base import ActorDecayOptions, AlgorithmInfo, CommonConfig, TrustRegionOptions
from pathwise.config import at_least, one_of, positive, unit_interval
from pathwise.distributions import CategoricalPolicy, GaussianPolicy
from pathwise.estimators.score_function import clipped_surrogate, score_function_surrogate, standardize
from pathwise.loops.on_policy import OnPolicyOptions, Segment, log_probs
from pathwise.networks import VCritic
from pathwise.spec import EnvSpec
from pathwise.types import Array, PRNGKey, PyTree

INFO = AlgorithmInfo("reinforce", loops=("on_policy",), discrete=True,
                     summary="Likelihood-ratio policy gradient on whole episodes, with a reward-to-go baseline.")

Policy = CategoricalPolicy | GaussianPolicy


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig, OnPolicyOptions, ActorDecayOptions, TrustRegionOptions):
    """REINFORCE options; the defaults were tuned for CartPole-v1, whose preset takes 4 episodes per update."""

    RENAMED: ClassVar[dict[str, str]] = {"lr": "actor_lr"}  # before 0.3
    ADDED: ClassVar[dict[str, Any]] = {"reward_scale": 1.0}  # before 0.3: returns in the environment's units

    num_envs: int = 8
    """Episodes per update (m in the lecture's ĝ), run in lockstep."""
    gamma: float = 0.99
    """Discount of the reward-to-go."""
    reward_scale: float = 1.0
    """Returns, baselines and advantages are those of ``reward_scale · r``: a value network starts near 0 and
    reaches a return of ~1/(1−γ) (100 on CartPole-v1) only after many steps, a tenth of it sooner."""
    baseline: Literal["none", "mean", "value"] = "value"
    """b(s_t): none, a running mean of G_t per time index, or a learned value V(s_t)."""
    actor_lr: float = 3e-3
    """Adam step size of the policy."""
    value_lr: float = 3e-3
    """Adam step size of the value baseline."""
    value_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the value network."""
    value_steps: int = 20
    """Full-batch value regression steps per update (one lax.scan)."""
    mean_decay: float = 0.9
    """Decay of the running-mean baseline (b ← decay·b + (1−decay)·mean G)."""
    normalize_advantages: bool = True
    """Scale advantages to zero mean and unit variance over the batch (keeps step sizes comparable)."""
    entropy_coef: float = 0.0
    """Weight of the policy entropy bonus."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip of the policy step (0 disables)."""
    log_std_init: float = 0.0
    """Initial log-std of the Gaussian policy (continuous actions only)."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + unit_interval(self, "gamma") + one_of(self, "baseline", ("none", "mean", "value")) \
            + positive(self, "actor_lr", "value_lr", "reward_scale") + at_least(self, 1, "value_steps") \
            + unit_interval(self, "mean_decay", closed_low=True) + at_least(self, 0, "entropy_coef", "max_grad_norm") \
            + [(len(self.value_hidden) > 0 and all(h >= 1 for h in self.value_hidden),
                f"value_hidden={self.value_hidden} must list one or more layer sizes >= 1")]


class State(NamedTuple):
    """Everything REINFORCE learns."""

    policy: Policy
    value: VCritic
    policy_opt: PyTree
    value_opt: PyTree
    mean_baseline: Array  # [T]: running mean of G_t per time index t < the episode limit T


# -- the estimator ------------------------------------------------------------------


def padded_reward_to_go(rewards: Array, mask: Array, bootstrap: Array, gamma: float) -> Array:
    """G_t = r_t + γ G_{t+1} on real steps, G_T = ``bootstrap`` after the last one (one episode, [T])."""
    def back(carry, x):
        r, m = x
        g = jnp.where(m > 0, r + gamma * carry, carry)
        return g, g

    _, g = jax.lax.scan(back, bootstrap, (rewards, mask), reverse=True)
    return g * mask


def reinforce_loss(policy: Policy, obs: Array, actions: Array, advantages: Array, mask: Array,
                   entropy_coef: float = 0.0, old_logp: Array | None = None, clip_ratio: float = 0.0) -> Array:
    """−1/m Σ_i Σ_t log π_θ(u_t|s_t) A_t (lecture: ĝ = 1/m Σ_i Σ_t ∇θ log π_θ(u_t^i|s_t^i) R), minus an entropy bonus;
    with ``clip_ratio > 0`` the clipped surrogate of the ratio to ``old_logp`` in place of log π_θ · A.

    Arrays are time major, ``[T, m]`` (m episodes).
    """
    logp = log_probs(policy, obs, actions)
    ent = jax.vmap(jax.vmap(lambda o: policy(o).entropy()))(obs)
    if clip_ratio > 0:
        surrogate = jnp.sum(mask * clipped_surrogate(logp, old_logp, advantages, clip_ratio))
    else:
        surrogate = score_function_surrogate(mask * logp, advantages)
    return -(surrogate + entropy_coef * jnp.sum(mask * ent)) / obs.shape[1]


def value_loss(value: VCritic, obs: Array, targets: Array, mask: Array) -> Array:
    """Mean over real steps of (V(s_t) − G_t)²."""
    v = jax.vmap(jax.vmap(value))(obs)
    return jnp.sum(mask * (v - targets) ** 2) / jnp.maximum(mask.sum(), 1.0)


def final_step(segment: Segment) -> tuple[Array, Array]:
    """Each environment's observation after its last real step and whether the time limit cut it (``[m, d]``,
    ``[m]``), read from a segment of whole episodes."""
    last = jnp.maximum(segment.mask.sum(0).astype(jnp.int32) - 1, 0)
    envs = jnp.arange(segment.mask.shape[1])
    return segment.next_obs[last, envs], segment.truncated[last, envs]


def returns_and_advantages(state: State, segment: Segment, config: Config) -> tuple[Array, Array]:
    """Reward-to-go G (bootstrapped with V on truncation) and advantages G − b, both ``[T, m]``."""
    final_obs, truncated = final_step(segment)
    boot = truncated * jax.vmap(state.value)(final_obs) if config.baseline == "value" else jnp.zeros_like(truncated)
    g = jax.vmap(padded_reward_to_go, (1, 1, 0, None), 1)(segment.rewards * config.reward_scale, segment.mask, boot,
                                                          config.gamma)
    if config.baseline == "value":
        b = jax.vmap(jax.vmap(state.value))(segment.obs)
    elif config.baseline == "mean":
        b = jnp.broadcast_to(state.mean_baseline[:, None], g.shape)
    else:
        b = jnp.zeros_like(g)
    adv = (g - b) * segment.mask
    return g, standardize(adv, segment.mask) if config.normalize_advantages else adv


def fit_value(state: State, segment: Segment, g: Array, config: Config) -> tuple[VCritic, PyTree, Array]:
    """``value_steps`` full-batch Adam steps of :func:`value_loss` towards G; returns the last loss."""
    optimizer = optim.adam(config.value_lr)

    def step(carry, _):
        value, opt = carry
        loss, grads = eqx.filter_value_and_grad(value_loss)(value, segment.obs, g, segment.mask)
        return optim.apply(value, grads, opt, optimizer), loss

    (value, opt), losses = jax.lax.scan(step, (state.value, state.value_opt), None, length=config.value_steps)
    return value, opt, losses[-1]


def running_mean(mean_baseline: Array, g: Array, mask: Array, decay: float) -> Array:
    """b_t ← decay·b_t + (1−decay)·(mean of G_t over the episodes that reached t); unchanged where none did."""
    counts = mask.sum(1)
    batch_mean = jnp.where(counts > 0, (g * mask).sum(1) / jnp.maximum(counts, 1.0), mean_baseline)
    return decay * mean_baseline + (1 - decay) * batch_mean


# -- init / update / act --------------------------------------------------------------


def make_policy(key: PRNGKey, spec: EnvSpec, config: Config) -> Policy:
    """``CategoricalPolicy`` for discrete actions, unsquashed ``GaussianPolicy`` (learned log-std) for a Box."""
    if spec.discrete:
        return CategoricalPolicy(spec.obs_dim, spec.action_dim, config.hidden, key=key)
    return GaussianPolicy(spec.obs_dim, spec.action_dim, config.hidden, key=key, init_log_std=config.log_std_init)


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """Fresh policy and value networks, their Adam states and a zero mean baseline (one entry per time index)."""
    k_policy, k_value = jax.random.split(key)
    policy = make_policy(k_policy, spec, config)
    value = VCritic(spec.obs_dim, config.value_hidden, key=k_value, act="tanh")
    return State(policy, value, optim.init(config.actor_optimizer(config.max_grad_norm), policy),
                 optim.init(optim.adam(config.value_lr), value), jnp.zeros(spec.max_steps(config)))


def update(state: State, segment: Segment, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """``epochs`` REINFORCE steps (one unless a trust region is set) on m whole episodes (``segment``: ``[T, m]``),
    then the baseline's update."""
    del key
    g, adv = returns_and_advantages(state, segment, config)
    old_logp = log_probs(state.policy, segment.obs, segment.actions) if config.clip_ratio > 0 else None
    optimizer = config.actor_optimizer(config.max_grad_norm)

    def step(carry, _):
        policy, policy_opt = carry
        loss, grads = eqx.filter_value_and_grad(reinforce_loss)(policy, segment.obs, segment.actions, adv,
                                                                 segment.mask, config.entropy_coef, old_logp,
                                                                 config.clip_ratio)
        return optim.apply(policy, grads, policy_opt, optimizer), loss

    if config.epochs == 1:
        (policy, policy_opt), loss = step((state.policy, state.policy_opt), None)
    else:
        (policy, policy_opt), losses = jax.lax.scan(step, (state.policy, state.policy_opt), None, length=config.epochs)
        loss = losses[0]
    value, value_opt, v_loss = state.value, state.value_opt, jnp.zeros(())
    if config.baseline == "value":
        value, value_opt, v_loss = fit_value(state, segment, g, config)
    mean_baseline = running_mean(state.mean_baseline, g, segment.mask, config.mean_decay)
    return State(policy, value, policy_opt, value_opt, mean_baseline), {"policy_loss": loss, "value_loss": v_loss}


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """The policy's mode (argmax, or the Gaussian mean) or a sample; an int index for discrete actions."""
    dist = state.policy(obs)
    return dist.mode() if deterministic else dist.sample(key)


__all__ = ["Config", "INFO", "State", "act", "final_step", "fit_value", "init", "make_policy", "padded_reward_to_go",
           "reinforce_loss", "returns_and_advantages", "running_mean", "update", "value_loss"]
