"""The off-policy replay loop: one real episode, stored, then the updates it pays for.

One iteration resets the Gymnasium environment with a seed drawn from the carry's key, runs one episode
(uniformly random actions for the first ``learning_starts`` steps, then ``act(state, obs, key, False)``),
appends it to the replay buffer and runs ``round(updates_per_step * length)`` updates, each
``update(state, buffer, key, config)`` (the algorithm samples its minibatch from the buffer), inside
one jitted call whatever their number. Updating after the episode instead of interleaving changes the
data an update sees by at most one episode and removes a Python round trip per step.

Each stored item is a :class:`ReplayItem`: the transition and the log-density of its action under the
policy that took it (for algorithms that correct for off-policy data, ``behaviour_log_prob``; the
uniform density during warm-up).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise import envs, replay
from pathwise.algorithms.base import Algorithm
from pathwise.config import Options, at_least
from pathwise.loops import Loop, episode_seed, to_floats
from pathwise.spec import DEFAULT_MAX_EPISODE_STEPS, EnvSpec
from pathwise.types import Array, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class ReplayOptions(Options):
    """Options of the replay loop."""

    buffer_size: int = 200_000
    """Replay buffer capacity (transitions); the oldest are overwritten first."""
    learning_starts: int = 1000
    """Environment steps with uniformly random actions before the first update."""
    updates_per_step: float = 1.0
    """Updates per collected environment step (the update-to-data ratio)."""
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS
    """Episode cap for environments without a time limit of their own (counted as truncation)."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + at_least(self, 1, "buffer_size", "max_episode_steps") + \
            at_least(self, 0, "learning_starts", "updates_per_step")


class ReplayItem(NamedTuple):
    """One stored transition and the behaviour policy's log-density of its action."""

    transition: Transition
    behaviour_log_prob: Array


class ReplayCarry(NamedTuple):
    """The replay loop's carry."""

    algo: Any
    buffer: replay.ReplayBuffer
    key: PRNGKey
    env_steps: Array


def example_item(spec: EnvSpec) -> ReplayItem:
    """One zero item shaped as the loop stores it (Discrete actions as an int32 index)."""
    action = jnp.zeros((), jnp.int32) if spec.discrete else jnp.zeros(spec.action_dim)
    obs = jnp.zeros(spec.obs_dim)
    return ReplayItem(Transition(obs, action, jnp.zeros(()), obs, jnp.zeros((), bool), jnp.zeros((), bool)),
                      jnp.zeros(()))


def uniform_log_density(spec: EnvSpec) -> float:
    """Log-density of the warm-up's uniformly random actions."""
    if spec.discrete:
        return -float(np.log(spec.action_dim))
    return -float(np.sum(np.log(np.asarray(spec.action_high) - np.asarray(spec.action_low))))


@eqx.filter_jit
def _behaviour(act, state: Any, obs: Array, key: PRNGKey, t: Array) -> Array:
    return act(state, obs, jax.random.fold_in(key, t), False)


def _store(algorithm: Algorithm, state: Any, buffer: replay.ReplayBuffer, episode: Transition, length: Array,
           random_rows: Array, spec: EnvSpec) -> replay.ReplayBuffer:
    log_prob_fn = algorithm.hook("behaviour_log_prob")
    log_prob = jnp.full(episode.reward.shape, uniform_log_density(spec))
    if log_prob_fn is not None:
        own = jax.vmap(lambda o, a: log_prob_fn(state, o, a))(episode.obs, episode.action)
        log_prob = jnp.where(random_rows, log_prob, own)
    return replay.add_batch(buffer, ReplayItem(episode, log_prob), length)


@eqx.filter_jit
def store_and_update(algorithm: Algorithm, state: Any, buffer: replay.ReplayBuffer, episode: Transition,
                     length: Array, random_rows: Array, n_updates: Array, key: PRNGKey, spec: EnvSpec, config: Any):
    """Store the first ``length`` rows of ``episode``, then ``n_updates`` updates (a traced count: one
    compilation for any number); metrics averaged over the updates."""
    buffer = _store(algorithm, state, buffer, episode, length, random_rows, spec)
    update = lambda s, k: algorithm.update(s, buffer, k, config)  # noqa: E731
    shapes = jax.eval_shape(update, state, key)[1]

    def body(i, carry):
        s, sums = carry
        s, metrics = update(s, jax.random.fold_in(key, i))
        return s, jax.tree.map(jnp.add, sums, metrics)

    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
    state, sums = jax.lax.fori_loop(0, n_updates, body, (state, zeros))
    return state, buffer, jax.tree.map(lambda s: s / jnp.maximum(n_updates, 1).astype(s.dtype), sums)


class ReplayLoop(Loop):
    """One episode, stored, then the updates it pays for (see the module docstring)."""

    kind = "replay"

    def __init__(self, algorithm: Algorithm, spec: EnvSpec, config: Any):
        super().__init__(algorithm, spec, config)
        self.env = envs.make_env(spec.env_id)
        self.max_steps = spec.max_steps(config)
        if self.max_steps > config.buffer_size:
            raise ValueError(f"buffer_size={config.buffer_size} is smaller than one episode ({self.max_steps} "
                             "steps); raise buffer_size.")

    def init(self, key: PRNGKey) -> ReplayCarry:
        k_algo, key = jax.random.split(key)
        buffer = replay.init(example_item(self.spec), self.config.buffer_size)
        return ReplayCarry(self.algorithm.init(k_algo, self.spec, self.config), buffer, key,
                           jnp.zeros((), jnp.int32))

    def _random_actions(self, key: PRNGKey) -> np.ndarray:
        if self.spec.discrete:
            return np.asarray(jax.random.randint(key, (self.max_steps,), 0, self.spec.action_dim))
        low, high = np.asarray(self.spec.action_low, np.float32), np.asarray(self.spec.action_high, np.float32)
        return np.asarray(jax.random.uniform(key, (self.max_steps, low.size), minval=low, maxval=high))

    def iteration(self, carry: ReplayCarry) -> tuple[ReplayCarry, dict[str, float]]:
        key, k_seed, k_act, k_random, k_update = jax.random.split(carry.key, 5)
        start, random_actions = int(carry.env_steps), self._random_actions(k_random)
        warmup = self.config.learning_starts

        def act(obs, t):
            if start + t < warmup:
                return random_actions[t]
            return np.asarray(_behaviour(self.algorithm.act, carry.algo, jnp.asarray(obs, jnp.float32).reshape(-1),
                                         k_act, np.int32(t)))

        episode, length, episode_return = envs.collect_padded(self.env, act, episode_seed(k_seed), self.max_steps)
        n_updates = int(round(self.config.updates_per_step * length)) if start + length >= warmup else 0
        random_rows = start + np.arange(self.max_steps) < warmup
        algo, buffer, metrics = store_and_update(self.algorithm, carry.algo, carry.buffer, episode, np.int32(length),
                                                 random_rows, np.int32(n_updates), k_update, self.spec, self.config)
        carry = ReplayCarry(algo, buffer, key, carry.env_steps + length)
        return carry, {**to_floats(metrics), "episode_return": episode_return, "episode_length": float(length),
                       "updates": float(n_updates)}

    def close(self) -> None:
        self.env.close()


__all__ = ["ReplayCarry", "ReplayItem", "ReplayLoop", "ReplayOptions", "example_item", "store_and_update",
           "uniform_log_density"]
