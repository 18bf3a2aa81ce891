"""Q actor-critic (QAC) on lockstep Gymnasium environments.

Lecture, "Q Actor-Critic":

    a' ~ π_θ(s'),   δ = r + γ Q_w(s', a') − Q_w(s, a),
    θ ← θ + α ∇θ log π_θ(a|s) Q_w(s, a),   w ← w + β δ ∇w Q_w(s, a).

It runs in the on-policy loop (:mod:`pathwise.loops.on_policy`): the update runs every ``n_steps``
steps on the segment just collected from ``num_envs`` environments (on-policy, SARSA style). The
critic regresses Q_w(s_t, a_t) on the n-step SARSA target

    G_t = r_t + γ r_{t+1} + … + γ^{k} Q_w(s_{t+k+1}, a'),  a' ~ π_θ(s_{t+k+1}),

cut at a termination (no bootstrap) and bootstrapped at a truncation (time limit) from the true final
observation. ``n_steps = 1`` is the lecture's one-step δ. The bootstrap action at the end of a segment
is a fresh sample from π_θ(s'), a draw from the same distribution as the action the environment then takes.

Actor weights (``advantage``): ``"q"`` is the lecture's Q_w(s, a); ``"q_minus_v"`` is the advantage
A = Q_w(s, a) − V(s) with V(s) = Σ_b π_θ(b|s) Q_w(s, b) (exact for discrete actions, no second
network); ``"td"`` is G_t − V(s_t). Discrete actions only: the critic outputs one Q value per action.

Trust region (``epochs > 1`` with ``clip_ratio > 0``): the segment is used for ``epochs`` actor and critic
steps, the actor's on the clipped surrogate of PPO (Schulman et al., 2017),

    L(θ) = −mean min(ρ_t w_t, clip(ρ_t, 1 − ε, 1 + ε) w_t),   ρ_t = π_θ(a_t|s_t) / π_θold(a_t|s_t),

with the weights w_t and critic targets computed once from the networks that collected the segment. Its
first step equals the plain step (ρ = 1, ∇ρ = ∇ log π); the clip stops later ones from moving the policy's
probabilities by more than ε where that would raise the objective.
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
from pathwise.distributions import CategoricalPolicy
from pathwise.estimators.score_function import clipped_surrogate, standardize
from pathwise.loops.on_policy import OnPolicyOptions, Segment, log_probs
from pathwise.networks import MLP
from pathwise.spec import EnvSpec
from pathwise.types import Array, PRNGKey, PyTree

INFO = AlgorithmInfo("qac", loops=("on_policy",), continuous=False, discrete=True,
                     summary="Q actor-critic: a categorical actor weighted by an n-step SARSA critic.")


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig, OnPolicyOptions, ActorDecayOptions, TrustRegionOptions):
    """QAC options: the defaults are the lecture's one plain step per segment; the CartPole-v1 preset adds the
    trust region, standardized weights and the policy step's decay."""

    RENAMED: ClassVar[dict[str, str]] = {"lr": "actor_lr"}  # before 0.3
    #: before 0.3: one plain step per segment on unnormalized weights
    ADDED: ClassVar[dict[str, Any]] = {"normalize_advantages": False, "reward_scale": 1.0}

    num_envs: int = 8
    """Environments run in lockstep; each update sees ``n_steps × num_envs`` transitions."""
    n_steps: int = 8
    """Steps per on-policy update (the n of the n-step SARSA target; 1 = the lecture's one-step δ)."""
    gamma: float = 0.99
    """Discount."""
    reward_scale: float = 1.0
    """The critic learns the return of ``reward_scale · r``. Values near 1/(1−γ) (100 for CartPole-v1's
    1 per step at γ = 0.99) take an output layer far from its initialization; at ``1 − γ`` they lie in
    [0, 1] and the critic keeps up with the policy. The actor's weights scale with it."""
    advantage: Literal["q", "q_minus_v", "td"] = "td"
    """Actor weight: Q_w(s,a) (lecture), Q_w(s,a) − Σ_b π(b|s) Q_w(s,b), or G_t − V(s_t). The first two rank
    the actions by the critic alone, so a critic error larger than the gap between two actions' values steers
    the policy away from an action it then never tries again; "td" weights by the sampled n-step return."""
    actor_lr: float = 1e-3
    """Adam step size of the actor (α)."""
    critic_lr: float = 1e-3
    """Adam step size of the critic (β)."""
    critic_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the critic."""
    entropy_coef: float = 0.01
    """Weight of the policy entropy bonus."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip of both steps (0 disables)."""
    normalize_advantages: bool = False
    """Scale the actor weights to zero mean and unit variance over the segment's real steps."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + at_least(self, 1, "n_steps") + unit_interval(self, "gamma") + \
            one_of(self, "advantage", ("q", "q_minus_v", "td")) + \
            positive(self, "actor_lr", "critic_lr", "reward_scale") + \
            at_least(self, 0, "entropy_coef", "max_grad_norm") + \
            [(len(self.critic_hidden) > 0 and all(h >= 1 for h in self.critic_hidden),
              f"critic_hidden={self.critic_hidden} must list one or more layer sizes >= 1")]


class DiscreteQ(eqx.Module):
    """Q_w(s, ·): an MLP from the observation to one value per discrete action."""

    net: MLP

    def __init__(self, obs_dim: int, num_actions: int, hidden=(64, 64), *, key: PRNGKey):
        self.net = MLP(obs_dim, num_actions, hidden, key=key, act="tanh")

    def __call__(self, obs: Array) -> Array:
        return self.net(obs)


class State(NamedTuple):
    """Everything QAC learns."""

    policy: CategoricalPolicy
    critic: DiscreteQ
    policy_opt: PyTree
    critic_opt: PyTree


# -- the losses ----------------------------------------------------------------------


def sarsa_targets(rewards: Array, terminated: Array, truncated: Array, q_next: Array, gamma: float) -> Array:
    """n-step SARSA targets for one env's segment ([n]): G_t = r_t + γ·(0 | Q(s', a') | G_{t+1}).

    Terminated: no bootstrap; truncated or the segment's last step: Q(s'_t, a'_t); otherwise G_{t+1}.
    Padded steps come after the episode's end, so their values never reach a real step.
    """
    def back(carry, x):
        r, term, trunc, qn = x
        nxt = jnp.where(trunc > 0, qn, carry)
        g = r + gamma * (1.0 - term) * nxt
        return g, g

    _, g = jax.lax.scan(back, q_next[-1], (rewards, terminated, truncated, q_next), reverse=True)
    return g


def q_taken(critic: DiscreteQ, obs: Array, actions: Array) -> tuple[Array, Array]:
    """``(Q_w(s, ·), Q_w(s, a))`` for ``[n, N]`` observations and integer actions."""
    q = jax.vmap(jax.vmap(critic))(obs)
    return q, jnp.take_along_axis(q, actions[..., None], axis=-1)[..., 0]


def critic_loss(critic: DiscreteQ, obs: Array, actions: Array, targets: Array, mask: Array) -> Array:
    """Mean over real steps of (Q_w(s_t, a_t) − G_t)² (the lecture's w ← w + β δ ∇w Q_w)."""
    q_sa = q_taken(critic, obs, actions)[1]
    return jnp.sum(mask * (q_sa - targets) ** 2) / jnp.maximum(mask.sum(), 1.0)


def actor_loss(policy: CategoricalPolicy, obs: Array, actions: Array, weights: Array, mask: Array,
               entropy_coef: float, old_logp: Array | None = None, clip_ratio: float = 0.0) -> Array:
    """−mean log π_θ(a_t|s_t)·w_t − c·H (lecture: θ ← θ + α ∇θ log π_θ(a|s) Q_w(s, a), w = Q or an advantage);
    with ``clip_ratio > 0`` the clipped surrogate −mean min(ρ w, clip(ρ, 1 ± ε) w), ρ = π_θ / exp(``old_logp``)."""
    logp = log_probs(policy, obs, actions)
    ent = jax.vmap(jax.vmap(lambda o: policy(o).entropy()))(obs)
    n = jnp.maximum(mask.sum(), 1.0)
    if clip_ratio > 0:
        objective = clipped_surrogate(logp, old_logp, weights, clip_ratio)
    else:
        objective = logp * jax.lax.stop_gradient(weights)
    return -jnp.sum(mask * (objective + entropy_coef * ent)) / n


def segment_targets(state: State, segment: Segment, key: PRNGKey, gamma: float) -> Array:
    """The SARSA targets of every step of ``segment`` ([n, N]), bootstrapping with a' ~ π_θ(s')."""
    n, m = segment.rewards.shape
    keys = jax.random.split(key, (n, m))
    a_next = jax.vmap(jax.vmap(lambda o, k: state.policy(o).sample(k)))(segment.next_obs, keys)
    q_next = q_taken(state.critic, segment.next_obs, a_next)[1]
    return jax.vmap(sarsa_targets, (1, 1, 1, 1, None), 1)(segment.rewards, segment.terminated, segment.truncated,
                                                         q_next, gamma)


def actor_weights(state: State, segment: Segment, targets: Array, config: Config) -> Array:
    """The actor's weight per step: Q_w(s, a), Q_w(s, a) − V(s) or G − V(s), V(s) = Σ_b π_θ(b|s) Q_w(s, b);
    standardized over the segment's real steps with ``normalize_advantages``."""
    q, q_sa = q_taken(state.critic, segment.obs, segment.actions)
    if config.advantage == "q":
        w = q_sa
    else:
        probs = jax.vmap(jax.vmap(lambda o: state.policy(o).probs))(segment.obs)
        v = jnp.sum(probs * q, axis=-1)
        w = q_sa - v if config.advantage == "q_minus_v" else targets - v
    return standardize(w, segment.mask) if config.normalize_advantages else w


# -- init / update / act --------------------------------------------------------------


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """A fresh categorical actor, critic and their Adam states."""
    k_policy, k_critic = jax.random.split(key)
    policy = CategoricalPolicy(spec.obs_dim, spec.action_dim, config.hidden, key=k_policy)
    critic = DiscreteQ(spec.obs_dim, spec.action_dim, config.critic_hidden, key=k_critic)
    return State(policy, critic, optim.init(config.actor_optimizer(config.max_grad_norm), policy),
                 optim.init(optim.adam(config.critic_lr, config.max_grad_norm), critic))


def update(state: State, segment: Segment, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """``epochs`` actor and critic steps on a segment; targets and weights come from the pre-update networks."""
    segment = segment._replace(rewards=segment.rewards * config.reward_scale)
    targets = segment_targets(state, segment, key, config.gamma)
    weights = actor_weights(state, segment, targets, config)
    old_logp = log_probs(state.policy, segment.obs, segment.actions) if config.clip_ratio > 0 else None
    actor_opt = config.actor_optimizer(config.max_grad_norm)
    critic_opt = optim.adam(config.critic_lr, config.max_grad_norm)

    def epoch(s: State, _) -> tuple[State, tuple[Array, Array]]:
        a_loss, a_grads = eqx.filter_value_and_grad(actor_loss)(s.policy, segment.obs, segment.actions, weights,
                                                                segment.mask, config.entropy_coef, old_logp,
                                                                config.clip_ratio)
        c_loss, c_grads = eqx.filter_value_and_grad(critic_loss)(s.critic, segment.obs, segment.actions, targets,
                                                                 segment.mask)
        policy, policy_opt = optim.apply(s.policy, a_grads, s.policy_opt, actor_opt)
        critic, critic_state = optim.apply(s.critic, c_grads, s.critic_opt, critic_opt)
        return State(policy, critic, policy_opt, critic_state), (a_loss, c_loss)

    if config.epochs == 1:
        state, (a_loss, c_loss) = epoch(state, None)
    else:
        state, (a_losses, c_losses) = jax.lax.scan(epoch, state, None, length=config.epochs)
        a_loss, c_loss = a_losses[0], c_losses[0]
    target_mean = jnp.sum(targets * segment.mask) / jnp.maximum(segment.mask.sum(), 1.0)
    return state, {"actor_loss": a_loss, "critic_loss": c_loss, "target_mean": target_mean}


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """The most likely action, or a sample from π_θ(·|s) (an int index)."""
    dist = state.policy(obs)
    return dist.mode() if deterministic else dist.sample(key)


__all__ = ["Config", "DiscreteQ", "INFO", "State", "act", "actor_loss", "actor_weights", "critic_loss", "init",
           "q_taken", "sarsa_targets", "segment_targets", "update"]
