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
truncation). Exploration is sampling π_θ; α is tuned towards a target entropy
(as in discrete SAC) unless ``auto_entropy=False``. One ``train_iteration`` is
one episode, then ``updates_per_step`` updates per step in one jit call. Episode
collection, the TD target, the critic ensemble and its loss are shared with
DDPG/SVG(0) (:mod:`pathwise.algorithms.common`); the relaxation is
:func:`pathwise.estimators.relaxed.gumbel_softmax`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from pathwise import replay
from pathwise.algorithms.base import Learner
from pathwise.algorithms.common import (OffPolicyConfig, _validate_config, adam_init, adam_step, collect_episode,
                                        critic_loss, episode_limit, make_critics, make_env, mean_metrics, min_q,
                                        store_episode, td_target)
from pathwise.distributions import CategoricalPolicy
from pathwise.estimators.relaxed import gumbel_softmax
from pathwise.networks import soft_update
from pathwise.types import Array, PRNGKey, PyTree, Transition


@dataclasses.dataclass(frozen=True)
class Config(OffPolicyConfig):
    """Gumbel-softmax SVG(0) options; the defaults are tuned for CartPole-v1."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy (logits) network."""
    critic_hidden: tuple[int, ...] = (128, 128)
    """Hidden layer sizes of each critic Q(s, one_hot(a))."""
    n_critics: int = 2
    """Critics; their minimum is used in the target and by the actor (clipped double Q)."""
    gamma: float = 0.99
    """Discount factor."""
    batch_size: int = 128
    """Transitions per gradient step."""
    buffer_size: int = 100_000
    """Replay capacity (transitions)."""
    learning_starts: int = 1000
    """Steps of uniformly random actions before the first update."""
    tau: float = 0.01
    """Polyak rate of the target critics."""
    temperature: float = 1.0
    """Gumbel-softmax temperature τ (> 0): small τ is closer to one-hot but has higher-variance gradients."""
    hard: bool = True
    """Straight-through: Q sees the one-hot sample, the gradient flows through the soft sample."""
    entropy_coef: float = 0.1
    """α, weight of the policy entropy bonus in the actor objective (the initial α when ``auto_entropy``)."""
    auto_entropy: bool = True
    """Tune α by gradient steps on −log α·(H_target − H(π)) so the entropy stays near the target; without it
    a critic error in the small gap between two actions' values can make π deterministic on the wrong action."""
    target_entropy_ratio: float = 0.3
    """H_target as a fraction of the maximal entropy log(num_actions)."""
    alpha_lr: float = 1e-3
    """Adam step size of log α."""


class State(NamedTuple):
    """Everything the Gumbel-softmax agent learns or needs to resume."""

    actor: CategoricalPolicy
    critics: eqx.Module  # stacked ensemble of QCritic on [obs, one_hot(a)]
    target_critics: eqx.Module
    log_alpha: Array
    actor_opt: PyTree
    critic_opt: PyTree
    alpha_opt: PyTree
    buffer: replay.ReplayBuffer
    key: PRNGKey
    env_steps: Array


def init(key: PRNGKey, obs_dim: int, num_actions: int, config: Config) -> State:
    k_actor, k_critic, key = jax.random.split(key, 3)
    actor = CategoricalPolicy(obs_dim, num_actions, config.hidden, key=k_actor)
    critics = make_critics(k_critic, obs_dim, num_actions, config)
    example = Transition(jnp.zeros(obs_dim), jnp.zeros(num_actions), jnp.zeros(()), jnp.zeros(obs_dim),
                         jnp.zeros((), bool), jnp.zeros((), bool))
    log_alpha = jnp.log(jnp.asarray(config.entropy_coef, jnp.float32))
    return State(actor, critics, critics, log_alpha, adam_init(actor), adam_init(critics), adam_init(log_alpha),
                 replay.init(example, config.buffer_size), key, jnp.zeros((), jnp.int32))


def expected_sarsa_target(actor: CategoricalPolicy, target_critics: eqx.Module, batch: Transition,
                          gamma: float) -> Array:
    """y = r + γ (1 − terminated) Σ_a' π(a'|s') min_i Q'_i(s', e_a') (expected SARSA on one-hot actions)."""
    n = batch.action.shape[-1]
    probs = jax.vmap(lambda o: actor(o).probs)(batch.next_obs)  # [B, n]
    eye = jnp.eye(n)
    q_next = jax.vmap(lambda a: min_q(target_critics, batch.next_obs, jnp.broadcast_to(a, (len(probs), n))),
                      out_axes=1)(eye)  # [B, n]
    return td_target(batch.reward, batch.terminated, jnp.sum(probs * q_next, -1), gamma)


def actor_loss(actor: CategoricalPolicy, critics: eqx.Module, obs: Array, gumbel: Array, temperature: float,
               hard: bool, entropy_coef: Array) -> Array:
    """−E_s[min_i Q_i(s, y(logits_θ(s), ε, τ)) + α H(π_θ(·|s))] with Gumbel-softmax y (lecture's last slides)."""
    logits = jax.vmap(lambda o: actor(o).logits)(obs)
    y = gumbel_softmax(gumbel, logits, temperature, hard)
    entropy = jax.vmap(lambda o: actor(o).entropy())(obs)
    return -jnp.mean(min_q(critics, obs, y) + entropy_coef * entropy)


def update_step(state: State, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """One critic TD step, one actor step through the updated critic, a Polyak step of the target critics."""
    k_batch, k_gumbel = jax.random.split(key)
    batch = replay.sample(state.buffer, k_batch, config.batch_size)
    target = expected_sarsa_target(state.actor, state.target_critics, batch, config.gamma)
    c_loss, c_grads = eqx.filter_value_and_grad(critic_loss)(state.critics, batch.obs, batch.action, target)
    critics, critic_opt = adam_step(state.critics, c_grads, state.critic_opt, config.critic_lr)
    gumbel = jax.random.gumbel(k_gumbel, batch.action.shape)
    a_loss, a_grads = eqx.filter_value_and_grad(actor_loss)(state.actor, critics, batch.obs, gumbel,
                                                            config.temperature, config.hard,
                                                            jnp.exp(state.log_alpha))
    actor, actor_opt = adam_step(state.actor, a_grads, state.actor_opt, config.actor_lr)
    entropy = jnp.mean(jax.vmap(lambda o: actor(o).entropy())(batch.obs))
    log_alpha, alpha_opt = state.log_alpha, state.alpha_opt
    if config.auto_entropy:
        target = config.target_entropy_ratio * jnp.log(batch.action.shape[-1])
        log_alpha, alpha_opt = adam_step(log_alpha, -(target - entropy), alpha_opt, config.alpha_lr)
    state = state._replace(actor=actor, critics=critics, log_alpha=log_alpha, actor_opt=actor_opt,
                           critic_opt=critic_opt, alpha_opt=alpha_opt,
                           target_critics=soft_update(state.target_critics, critics, config.tau))
    return state, {"critic_loss": c_loss, "actor_loss": a_loss, "entropy": entropy, "alpha": jnp.exp(log_alpha)}


@functools.partial(jax.jit, static_argnames="config")
def learn(state: State, episode: Transition, length: Array, n_updates: Array, key: PRNGKey,
          config: Config) -> tuple[State, dict[str, Array]]:
    """Store the first ``length`` rows of ``episode``, then run ``n_updates`` update steps (one compilation)."""
    state = state._replace(buffer=store_episode(state.buffer, episode, length))
    example = dict.fromkeys(["critic_loss", "actor_loss", "entropy", "alpha"], jnp.zeros(()))
    return mean_metrics(lambda s, k: update_step(s, k, config), state, key, n_updates, example)


@jax.jit
def sample_one_hot(actor: CategoricalPolicy, obs: Array, gumbel: Array) -> Array:
    """An exact sample of π_θ(·|s) as a one-hot vector (Gumbel-max: argmax(logits + ε))."""
    return jax.nn.one_hot(actor(obs).sample_from_noise(gumbel), gumbel.shape[-1])


@jax.jit
def _mode(actor: CategoricalPolicy, obs: Array) -> Array:
    return actor(obs).mode()


class OneHotActions(gym.ActionWrapper):
    """Presents a ``Discrete(n)`` env as taking one-hot vectors, so replay stores the critic's input."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.action_space = gym.spaces.Box(0.0, 1.0, (int(env.action_space.n),), np.float32)

    def action(self, action: np.ndarray) -> int:
        return int(np.argmax(action))


class GumbelSVG0(Learner):
    """Gumbel-softmax SVG(0) on a Gymnasium env with a Discrete action space (see the module docstring)."""

    name = "svg0-discrete"
    Config = Config
    discrete_ok = True
    continuous_ok = False

    def __init__(self, env_id: str, config: Config | None = None, seed: int = 0):
        super().__init__(env_id, config, seed)
        _validate_config(self.config)
        if not self.config.temperature > 0:
            raise ValueError(f"temperature={self.config.temperature} must be > 0 (the Gumbel-softmax τ).")
        env = make_env(env_id)
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ValueError(f"svg0-discrete needs a Discrete action space, {env_id} has {env.action_space}; "
                             "use svg0 or ddpg for continuous actions.")
        self.env = OneHotActions(env)
        self.num_actions = int(env.action_space.n)
        self.obs_dim = int(np.prod(env.observation_space.shape))
        self.max_steps = episode_limit(env, self.config)
        self.state = init(jax.random.key(self.seed), self.obs_dim, self.num_actions, self.config)
        self._act_key = jax.random.key(self.seed + 1)

    def train_iteration(self) -> dict[str, float]:
        """One episode (random actions until ``learning_starts``), then ``updates_per_step`` × its length updates."""
        key, k_env, k_noise, k_random, k_update = jax.random.split(self.state.key, 5)
        seed = int(jax.random.randint(k_env, (), 0, 2**31 - 1))
        gumbel = np.asarray(jax.random.gumbel(k_noise, (self.max_steps, self.num_actions)))
        uniform = np.eye(self.num_actions, dtype=np.float32)[
            np.asarray(jax.random.randint(k_random, (self.max_steps,), 0, self.num_actions))]
        start, state = self.env_steps, self.state

        def act(obs, t):
            if start + t < self.config.learning_starts:
                return uniform[t]
            return sample_one_hot(state.actor, jnp.asarray(obs, jnp.float32), gumbel[t])

        episode, length, episode_return = collect_episode(self.env, seed, act, self.max_steps)
        self.env_steps += length
        n_updates = int(round(self.config.updates_per_step * length)) if self.env_steps >= \
            self.config.learning_starts else 0
        state, metrics = learn(state._replace(key=key), episode, jnp.asarray(length, jnp.int32),
                               jnp.asarray(n_updates, jnp.int32), k_update, self.config)
        self.state = state._replace(env_steps=jnp.asarray(self.env_steps, jnp.int32))
        return {**{k: float(v) for k, v in metrics.items()}, "episode_return": episode_return,
                "episode_length": float(length), "updates": float(n_updates)}

    def act(self, obs: np.ndarray, deterministic: bool = True) -> int:
        obs = jnp.asarray(obs, jnp.float32).reshape(self.obs_dim)
        if deterministic:
            return int(_mode(self.state.actor, obs))
        self._act_key, key = jax.random.split(self._act_key)
        return int(jnp.argmax(sample_one_hot(self.state.actor, obs, jax.random.gumbel(key, (self.num_actions,)))))

    def get_state(self) -> State:
        return self.state

    def set_state(self, state: State) -> None:
        self.state = state
        self.env_steps = int(state.env_steps)
