"""Q actor-critic (QAC), batched over lockstep Gymnasium envs.

Lecture, "Q Actor-Critic":

    a' ~ π_θ(s'),   δ = r + γ Q_w(s', a') − Q_w(s, a),
    θ ← θ + α ∇θ log π_θ(a|s) Q_w(s, a),   w ← w + β δ ∇w Q_w(s, a).

Here the update runs every ``n_steps`` steps on the segment just collected from
``num_envs`` envs (on-policy, SARSA style): the critic regresses Q_w(s_t, a_t)
on the n-step SARSA target

    G_t = r_t + γ r_{t+1} + … + γ^{k} Q_w(s_{t+k+1}, a'),  a' ~ π_θ(s_{t+k+1}),

cut at a termination (no bootstrap) and bootstrapped at a truncation (time
limit) from the true final observation. ``n_steps = 1`` is the lecture's
one-step δ. The bootstrap action at the end of a segment is a fresh sample from
π_θ(s'), a draw from the same distribution as the action the env then takes.

Actor weights (``advantage``): ``"q"`` is the lecture's Q_w(s, a); ``"q_minus_v"``
is the advantage A = Q_w(s, a) − V(s) with V(s) = Σ_b π_θ(b|s) Q_w(s, b)
(exact for discrete actions, no second network); ``"td"`` is G_t − V(s_t).
Discrete actions only: the critic outputs one Q value per action.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pathwise.algorithms.base import CommonConfig, Learner
from pathwise.algorithms.reinforce import (PolicyActMixin, StepBatch, env_seeds, lockstep_episodes, make_envs,
                                           max_episode_steps, sample_actions)
from pathwise.distributions import CategoricalPolicy
from pathwise.networks import MLP
from pathwise.types import Array, PRNGKey


class DiscreteQ(eqx.Module):
    """Q_w(s, ·): an MLP from the observation to one value per discrete action."""

    net: MLP

    def __init__(self, obs_dim: int, num_actions: int, hidden=(64, 64), *, key: PRNGKey):
        self.net = MLP(obs_dim, num_actions, hidden, key=key, act="tanh")

    def __call__(self, obs: Array) -> Array:
        return self.net(obs)


class Segment(NamedTuple):
    """``n`` lockstep steps of N envs (leading axes [n, N]); ``mask`` is 1 on real steps."""

    obs: Array
    actions: Array
    rewards: Array
    next_obs: Array
    terminated: Array
    truncated: Array
    mask: Array


def stack_segment(steps: list[StepBatch], n: int) -> Segment:
    """Stack up to ``n`` ``StepBatch``es into fixed [n, N] arrays (zero padded, mask 0)."""
    def stack(name, dtype):
        x = np.stack([getattr(s, name) for s in steps]).astype(dtype)
        return np.pad(x, [(0, n - len(steps))] + [(0, 0)] * (x.ndim - 1))

    return Segment(stack("obs", np.float32), stack("action", np.int32), stack("reward", np.float32),
                   stack("next_obs", np.float32), stack("terminated", np.float32), stack("truncated", np.float32),
                   stack("active", np.float32))


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


def critic_loss(critic: DiscreteQ, obs: Array, actions: Array, targets: Array, mask: Array) -> Array:
    """Mean over real steps of (Q_w(s_t, a_t) − G_t)² (the lecture's w ← w + β δ ∇w Q_w)."""
    q = jax.vmap(jax.vmap(critic))(obs)
    q_sa = jnp.take_along_axis(q, actions[..., None], axis=-1)[..., 0]
    return jnp.sum(mask * (q_sa - targets) ** 2) / jnp.maximum(mask.sum(), 1.0)


def actor_loss(policy: CategoricalPolicy, obs: Array, actions: Array, weights: Array, mask: Array,
               entropy_coef: float) -> Array:
    """−mean log π_θ(a_t|s_t)·w_t − c·H (lecture: θ ← θ + α ∇θ log π_θ(a|s) Q_w(s, a), w = Q or an advantage)."""
    logp = jax.vmap(jax.vmap(lambda o, a: policy(o).log_prob(a)))(obs, actions)
    ent = jax.vmap(jax.vmap(lambda o: policy(o).entropy()))(obs)
    n = jnp.maximum(mask.sum(), 1.0)
    return -jnp.sum(mask * (logp * jax.lax.stop_gradient(weights) + entropy_coef * ent)) / n


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig):
    """QAC options; the defaults are tuned for CartPole-v1."""

    num_envs: int = 8
    """Envs run in lockstep; each update sees ``n_steps × num_envs`` transitions."""
    n_steps: int = 8
    """Steps per on-policy update (the n of the n-step SARSA target; 1 = the lecture's one-step δ)."""
    gamma: float = 0.99
    """Discount."""
    advantage: Literal["q", "q_minus_v", "td"] = "td"
    """Actor weight: Q_w(s,a) (lecture), Q_w(s,a) − Σ_b π(b|s) Q_w(s,b), or G_t − V(s_t). On CartPole the
    first two collapse to one action (the critic's error exceeds the tiny gap between the two actions' values,
    and the action it underrates is never tried again); "td" weights by the sampled n-step return."""
    lr: float = 1e-3
    """Adam step size of the actor (α)."""
    critic_lr: float = 1e-3
    """Adam step size of the critic (β)."""
    critic_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the critic."""
    entropy_coef: float = 0.01
    """Weight of the policy entropy bonus."""
    max_grad_norm: float = 1.0
    """Global gradient-norm clip of both steps."""


class State(NamedTuple):
    policy: CategoricalPolicy
    critic: DiscreteQ
    policy_opt: Any
    critic_opt: Any
    key: PRNGKey
    env_steps: Array


def _optimizer(lr: float, config: Config):
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr))


def init(key: PRNGKey, obs_dim: int, num_actions: int, config: Config) -> State:
    kp, kq, key = jax.random.split(key, 3)
    policy = CategoricalPolicy(obs_dim, num_actions, config.hidden, key=kp)
    critic = DiscreteQ(obs_dim, num_actions, config.critic_hidden, key=kq)
    return State(policy, critic, _optimizer(config.lr, config).init(policy),
                 _optimizer(config.critic_lr, config).init(critic), key, jnp.zeros((), jnp.int32))


def _actor_weights(state: State, seg: Segment, targets: Array, config: Config) -> Array:
    q = jax.vmap(jax.vmap(state.critic))(seg.obs)
    q_sa = jnp.take_along_axis(q, seg.actions[..., None], axis=-1)[..., 0]
    if config.advantage == "q":
        return q_sa
    probs = jax.vmap(jax.vmap(lambda o: state.policy(o).probs))(seg.obs)
    v = jnp.sum(probs * q, axis=-1)
    return q_sa - v if config.advantage == "q_minus_v" else targets - v


def update(state: State, seg: Segment, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """One actor and one critic step on a segment (jit with ``config`` static)."""
    n, m = seg.rewards.shape
    a_next = jax.vmap(lambda o, k: sample_actions(state.policy, o, k, 0))(seg.next_obs, jax.random.split(key, n))
    q_next = jnp.take_along_axis(jax.vmap(jax.vmap(state.critic))(seg.next_obs), a_next[..., None], -1)[..., 0]
    targets = jax.vmap(sarsa_targets, (1, 1, 1, 1, None), 1)(seg.rewards, seg.terminated, seg.truncated,
                                                             q_next, config.gamma)
    weights = _actor_weights(state, seg, targets, config)
    a_loss, a_grads = jax.value_and_grad(actor_loss)(state.policy, seg.obs, seg.actions, weights, seg.mask,
                                                     config.entropy_coef)
    c_loss, c_grads = jax.value_and_grad(critic_loss)(state.critic, seg.obs, seg.actions, targets, seg.mask)
    a_upd, policy_opt = _optimizer(config.lr, config).update(a_grads, state.policy_opt, state.policy)
    c_upd, critic_opt = _optimizer(config.critic_lr, config).update(c_grads, state.critic_opt, state.critic)
    new = state._replace(policy=optax.apply_updates(state.policy, a_upd), policy_opt=policy_opt,
                         critic=optax.apply_updates(state.critic, c_upd), critic_opt=critic_opt,
                         env_steps=state.env_steps + seg.mask.sum().astype(jnp.int32))
    target_mean = jnp.sum(targets * seg.mask) / jnp.maximum(seg.mask.sum(), 1.0)
    return new, {"actor_loss": a_loss, "critic_loss": c_loss, "target_mean": target_mean}


update_jit = jax.jit(update, static_argnames="config")


class QAC(PolicyActMixin, Learner):
    name = "qac"
    Config = Config
    discrete_ok = True
    continuous_ok = False

    def __init__(self, env_id: str, config: Config | None = None, seed: int = 0):
        super().__init__(env_id, config, seed)
        if self.config.num_envs < 1 or self.config.n_steps < 1:
            raise ValueError(f"num_envs and n_steps must be >= 1 (got {self.config.num_envs}, "
                             f"{self.config.n_steps}).")
        if self.config.advantage not in ("q", "q_minus_v", "td"):
            raise ValueError(f"Unknown advantage {self.config.advantage!r}; choose 'q', 'q_minus_v' or 'td'.")
        self.envs = make_envs(env_id, self.config.num_envs)
        self.action_space = self.envs[0].action_space
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise ValueError(f"qac needs a Discrete action space, {env_id} has {self.action_space}; "
                             "use reinforce, ddpg or svg0 for continuous actions.")
        self.discrete = True
        obs_dim = int(np.prod(self.envs[0].observation_space.shape))
        self.state = init(jax.random.key(self.seed), obs_dim, int(self.action_space.n), self.config)
        self._act_key = jax.random.key(self.seed + 1)

    def train_iteration(self) -> dict[str, float]:
        """One episode per env; an update every ``n_steps`` lockstep steps (and at the end)."""
        key, k_env, k_act, k_upd = jax.random.split(self.state.key, 4)
        self.state = self.state._replace(key=key)
        act = lambda obs, t: sample_actions(self.state.policy, jnp.asarray(obs), k_act, jnp.int32(t))  # noqa: E731
        seg, history, returns = [], [], np.zeros(len(self.envs))
        seeds = env_seeds(k_env, len(self.envs))
        for step in lockstep_episodes(self.envs, seeds, act, max_episode_steps(self.envs[0])):
            seg.append(step)
            returns += step.reward * step.active
            if len(seg) == self.config.n_steps:
                history.append(self._update(seg, k_upd, len(history)))
                seg = []
        if seg:
            history.append(self._update(seg, k_upd, len(history)))
        self.env_steps = int(self.state.env_steps)
        metrics = {k: float(np.mean([h[k] for h in history])) for k in history[0]}
        return {**metrics, "episode_return": float(returns.mean())}

    def _update(self, seg: list[StepBatch], key: PRNGKey, index: int) -> dict[str, Array]:
        self.state, metrics = update_jit(self.state, stack_segment(seg, self.config.n_steps),
                                         jax.random.fold_in(key, index), self.config)
        return metrics

    def get_state(self) -> State:
        return self.state

    def set_state(self, state: State) -> None:
        self.state = state
        self.env_steps = int(state.env_steps)
