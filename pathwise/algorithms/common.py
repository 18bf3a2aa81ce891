"""Pieces shared by the off-policy actor-critic learners (DDPG, SVG(0), SVG(1), ...).

* the TD target and the critic regression loss (lecture, "Remember: Q learning"),
* critic ensembles (one critic for DDPG, twin critics for SVG(0)),
* collecting one Gymnasium episode into padded :class:`~pathwise.types.Transition` arrays,
* ``OffPolicyLearner``: the Python loop around an algorithm's pure ``init``/``learn`` functions
  (reset the env with a seed from the state's key, collect one episode, store it, run the
  updates it pays for in one jitted call).
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
from typing import Any, Callable

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pathwise import envs, replay
from pathwise.algorithms.base import CommonConfig, Learner
from pathwise.networks import QCritic, ensemble_apply, make_ensemble
from pathwise.types import Array, PRNGKey, PyTree, Transition


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig(CommonConfig):
    """Options of replay-based actor-critic learners; defaults are tuned for Pendulum-v1 (RL Zoo TD3/DDPG)."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of each critic Q(s, a)."""
    n_critics: int = 1
    """Number of critics; with 2 or more the TD target and the actor use their minimum (clipped double Q)."""
    gamma: float = 0.98
    """Discount factor of the return the critic estimates."""
    actor_lr: float = 1e-3
    """Adam learning rate of the actor."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critic(s)."""
    batch_size: int = 256
    """Transitions per gradient step, sampled uniformly from the replay buffer."""
    buffer_size: int = 200_000
    """Replay buffer capacity (transitions); the oldest are overwritten first."""
    learning_starts: int = 1000
    """Environment steps with uniformly random actions before the first gradient update."""
    tau: float = 0.005
    """Polyak rate of the target networks: target <- (1 - tau) target + tau online, after every update."""
    updates_per_step: float = 1.0
    """Gradient updates per collected environment step (update-to-data ratio)."""
    max_episode_steps: int = 1000
    """Episode cap for environments without a time limit of their own (counted as truncation)."""


# ----------------------------------------------------------------------------- losses


def td_target(reward: Array, terminated: Array, next_value: Array, gamma: float | Array) -> Array:
    """``y = r + gamma * (1 - terminated) * V(s')``: no bootstrap past a true terminal; truncation bootstraps."""
    return reward + gamma * (1.0 - terminated.astype(reward.dtype)) * next_value


def make_critics(key: PRNGKey, obs_dim: int, action_dim: int, config: OffPolicyConfig) -> eqx.Module:
    """``config.n_critics`` independently initialized ``QCritic``s stacked on a leading axis."""
    return make_ensemble(lambda k: QCritic(obs_dim, action_dim, config.critic_hidden, key=k), key, config.n_critics)


def q_values(critics: eqx.Module, obs: Array, action: Array) -> Array:
    """``Q_i(s_b, a_b)`` for every critic i and batch row b: shape ``(n_critics, batch)``."""
    return jax.vmap(lambda o, a: ensemble_apply(critics, o, a), out_axes=1)(obs, action)


def min_q(critics: eqx.Module, obs: Array, action: Array) -> Array:
    """``min_i Q_i(s_b, a_b)`` per batch row (equals Q for a single critic)."""
    return q_values(critics, obs, action).min(axis=0)


def critic_loss(critics: eqx.Module, obs: Array, action: Array, target: Array) -> Array:
    """``L(phi) = E[(Q_phi(s, a) - y)^2]`` (lecture, deep Q learning), averaged over critics and batch."""
    return jnp.mean((q_values(critics, obs, action) - jax.lax.stop_gradient(target)[None]) ** 2)


# ----------------------------------------------------------------------------- small helpers


def adam_step(params: eqx.Module, grads: eqx.Module, opt_state: PyTree, lr: float) -> tuple[eqx.Module, PyTree]:
    """One Adam step on the array leaves of an Equinox module."""
    updates, opt_state = optax.adam(lr).update(grads, opt_state, eqx.filter(params, eqx.is_array))
    return eqx.apply_updates(params, updates), opt_state


def adam_init(params: eqx.Module) -> PyTree:
    return optax.adam(1.0).init(eqx.filter(params, eqx.is_array))  # Adam's state does not depend on lr


def mean_metrics(step: Callable[[Any, PRNGKey], tuple[Any, dict[str, Array]]], state: Any, key: PRNGKey,
                 n_updates: Array, example_metrics: dict[str, Array]) -> tuple[Any, dict[str, Array]]:
    """Run ``step`` ``n_updates`` times (a traced count: one compilation for any number) and average its metrics."""

    def body(i, carry):
        state, sums = carry
        state, metrics = step(state, jax.random.fold_in(key, i))
        return state, jax.tree.map(jnp.add, sums, metrics)

    zeros = jax.tree.map(jnp.zeros_like, example_metrics)
    state, sums = jax.lax.fori_loop(0, n_updates, body, (state, zeros))
    return state, jax.tree.map(lambda s: s / jnp.maximum(n_updates, 1).astype(s.dtype), sums)


# ----------------------------------------------------------------------------- Gymnasium interaction


def make_env(env_id: str) -> gym.Env:
    """A Gymnasium env for ``env_id`` (Gymnasium ids and the ``pathwise/...`` ids; unknown ids: ValueError)."""
    return envs.make_env(env_id)


def box_action_space(env: gym.Env, algo: str) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` of a bounded Box action space, or a ValueError saying what to use instead."""
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"{algo} needs a continuous (Box) action space, got {space}; "
                         "for discrete actions use 'svg0-discrete' or 'reinforce'.")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ValueError(f"{algo} squashes actions into a bounded box, but {env.spec.id if env.spec else env} "
                         "has unbounded actions; wrap it with gymnasium.wrappers.ClipAction/RescaleAction.")
    return space.low.astype(np.float32), space.high.astype(np.float32)


def collect_episode(env: gym.Env, seed: int, act: Callable[[np.ndarray, int], np.ndarray],
                    max_steps: int) -> tuple[Transition, int, float]:
    """Run one episode from ``env.reset(seed=seed)`` with ``act(obs, t)``; return padded transitions.

    The transitions have leading length ``max_steps`` (rows past the episode are zero padding, so
    episodes of any length share one compiled update), ``next_obs`` is the true next observation
    also on truncation, and an episode still running after ``max_steps`` is marked truncated.
    Returns ``(transitions, length, undiscounted return)``.
    """
    step = itertools.count()
    episode, total, length = envs.run_episode(env, lambda obs: act(obs, next(step)), seed=seed, max_steps=max_steps)
    return jax.tree.map(lambda x: _pad(x, max_steps), episode), length, total


def _pad(x: np.ndarray, length: int) -> np.ndarray:
    dtype = np.float32 if np.issubdtype(x.dtype, np.floating) else x.dtype
    out = np.zeros((length, *x.shape[1:]), dtype)
    out[: len(x)] = x
    return out


def episode_limit(env: gym.Env, config: OffPolicyConfig) -> int:
    """The env's own time limit, or ``config.max_episode_steps`` if it has none."""
    limit = env.spec.max_episode_steps if env.spec is not None else None
    return int(limit) if limit else int(config.max_episode_steps)


def store_episode(buffer: replay.ReplayBuffer, episode: Transition, length: Array) -> replay.ReplayBuffer:
    """Append the first ``length`` rows of a padded episode to the replay buffer."""
    return replay.add_batch(buffer, episode, length)


# ----------------------------------------------------------------------------- the Python driver


class OffPolicyLearner(Learner):
    """One ``train_iteration`` = one episode of interaction, then ``updates_per_step`` x its length updates.

    An iteration ends at an episode boundary and resets the env with a seed drawn from the state's
    key, so ``set_state(get_state())`` reproduces the run exactly. Subclasses provide the pure parts:
    ``init_state``, ``behaviour_action`` (one observation and one standard-noise row -> action),
    ``mode_action``, ``noise_dim`` and ``learn`` (store the episode and run the updates).
    """

    Config = OffPolicyConfig

    def __init__(self, env_id: str, config: OffPolicyConfig | None = None, seed: int = 0):
        super().__init__(env_id, config, seed)
        _validate_config(self.config)
        self.env = make_env(env_id)
        self.low, self.high = box_action_space(self.env, self.name)
        self.obs_dim = int(np.prod(self.env.observation_space.shape))
        self.action_dim = int(self.low.size)
        self.max_steps = episode_limit(self.env, self.config)
        if self.max_steps > self.config.buffer_size:
            raise ValueError(f"buffer_size={self.config.buffer_size} is smaller than one episode "
                             f"({self.max_steps} steps); raise buffer_size.")
        self.state = self.init_state(jax.random.key(self.seed))  # typed key: the driver can fold retries into it
        self._act_key = jax.random.key(self.seed + 1)  # only for act(deterministic=False)

    # --- hooks -------------------------------------------------------------------------------
    @abc.abstractmethod
    def init_state(self, key: PRNGKey) -> Any: ...

    @abc.abstractmethod
    def behaviour_action(self, state: Any, obs: Array, noise: Array) -> Array: ...

    @abc.abstractmethod
    def mode_action(self, state: Any, obs: Array) -> Array: ...

    @abc.abstractmethod
    def learn(self, state: Any, episode: Transition, length: Array, n_updates: Array,
              key: PRNGKey) -> tuple[Any, dict[str, Array]]: ...

    @property
    @abc.abstractmethod
    def noise_dim(self) -> int:
        """Length of the standard-normal noise row ``behaviour_action`` takes per step."""

    # --- Learner API ---------------------------------------------------------------------------
    def train_iteration(self) -> dict[str, float]:
        key, k_env, k_noise, k_random, k_update = jax.random.split(self.state.key, 5)
        seed = int(jax.random.randint(k_env, (), 0, 2**31 - 1))
        noise = np.asarray(jax.random.normal(k_noise, (self.max_steps, self.noise_dim)))
        uniform = np.asarray(jax.random.uniform(k_random, (self.max_steps, self.action_dim), minval=self.low,
                                                maxval=self.high))
        start, state = self.env_steps, self.state

        def act(obs, t):
            if start + t < self.config.learning_starts:
                return uniform[t]
            return self.behaviour_action(state, np.asarray(obs, np.float32), noise[t])

        episode, length, episode_return = collect_episode(self.env, seed, act, self.max_steps)
        self.env_steps += length
        n_updates = 0
        if self.env_steps >= self.config.learning_starts:
            n_updates = int(round(self.config.updates_per_step * length))
        state, metrics = self.learn(state._replace(key=key), episode, jnp.asarray(length, jnp.int32),
                                    jnp.asarray(n_updates, jnp.int32), k_update)
        self.state = state._replace(env_steps=jnp.asarray(self.env_steps, jnp.int32))
        out = {k: float(v) for k, v in metrics.items()}
        out.update(episode_return=episode_return, episode_length=float(length), updates=float(n_updates))
        return out

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        obs = np.asarray(obs, np.float32).reshape(self.obs_dim)
        if deterministic:
            return np.asarray(self.mode_action(self.state, obs))
        self._act_key, key = jax.random.split(self._act_key)
        return np.asarray(self.behaviour_action(self.state, obs, jax.random.normal(key, (self.noise_dim,))))

    def get_state(self) -> Any:
        return self.state

    def set_state(self, state: Any) -> None:
        self.state = state
        self.env_steps = int(state.env_steps)


def _validate_config(config: OffPolicyConfig) -> None:
    checks = [
        (0.0 < config.gamma <= 1.0, f"gamma={config.gamma} must be in (0, 1]"),
        (0.0 < config.tau <= 1.0, f"tau={config.tau} must be in (0, 1]"),
        (config.batch_size >= 1, f"batch_size={config.batch_size} must be >= 1"),
        (config.n_critics >= 1, f"n_critics={config.n_critics} must be >= 1"),
        (config.updates_per_step >= 0, f"updates_per_step={config.updates_per_step} must be >= 0"),
        (config.actor_lr > 0 and config.critic_lr > 0, "learning rates must be positive"),
        (config.learning_starts >= 0, f"learning_starts={config.learning_starts} must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"Invalid config: {message}.")
