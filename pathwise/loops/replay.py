"""The off-policy replay loop: one real episode, stored, then the updates it pays for.

One iteration resets the Gymnasium environment with a seed drawn from the carry's key, runs one episode
(uniformly random actions for the first ``learning_starts`` steps, then ``act(state, obs, key, False)``, or with
``noise_color`` > 0 ``act_from_noise`` of noise correlated over the episode),
appends it to the replay buffer and runs ``round(updates_per_step * length)`` updates, each
``update(state, buffer, key, config)`` (the algorithm samples its minibatch from the buffer), inside
one jitted call whatever their number. Updating after the episode instead of interleaving changes the
data an update sees by at most one episode and removes a Python round trip per step.

Each stored item is a :class:`ReplayItem`: the transition and the log-density of its action under the
policy that took it (for algorithms that correct for off-policy data, ``behaviour_log_prob``; the
uniform density during warm-up).

With ``model_rollouts_per_step > 0`` each iteration also refits a dynamics model on the buffer and adds
short branched model rollouts to a second buffer that the updates sample from too (MBPO,
:mod:`pathwise.loops.branched`).
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
from pathwise.config import at_least
from pathwise.loops import (Loop, NoiseOptions, act_with_noise_once, check_noise, colored_noise, episode_seed,
                            to_floats, uniform_from_noise)
from pathwise.loops.branched import BranchOptions, add_branches
from pathwise.loops.model_based import fit_data, learned_system
from pathwise.models import fit
from pathwise.spec import DEFAULT_MAX_EPISODE_STEPS, EnvSpec
from pathwise.types import Array, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class ReplayOptions(BranchOptions, NoiseOptions):
    """Options of the replay loop (and of its optional model rollouts, ``BranchOptions``)."""

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
    model: Any = None  # the dynamics model of the branched rollouts (None without them)
    model_buffer: replay.ReplayBuffer | None = None  # their transitions (None without them)


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


def _updates(algorithm: Algorithm, state: Any, data: Any, n_updates: Array, key: PRNGKey, config: Any):
    """``n_updates`` (traced) updates on ``data`` in one loop; metrics averaged over them."""
    update = lambda s, k: algorithm.update(s, data, k, config)  # noqa: E731
    shapes = jax.eval_shape(update, state, key)[1]

    def body(i, carry):
        s, sums = carry
        s, metrics = update(s, jax.random.fold_in(key, i))
        return s, jax.tree.map(jnp.add, sums, metrics)

    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
    state, sums = jax.lax.fori_loop(0, n_updates, body, (state, zeros))
    return state, jax.tree.map(lambda s: s / jnp.maximum(n_updates, 1).astype(s.dtype), sums)


@eqx.filter_jit
def store_and_update(algorithm: Algorithm, state: Any, buffer: replay.ReplayBuffer, episode: Transition,
                     length: Array, random_rows: Array, n_updates: Array, key: PRNGKey, spec: EnvSpec, config: Any):
    """Store the first ``length`` rows of ``episode``, then ``n_updates`` updates (a traced count: one
    compilation for any number); metrics averaged over the updates."""
    buffer = _store(algorithm, state, buffer, episode, length, random_rows, spec)
    state, metrics = _updates(algorithm, state, buffer, n_updates, key, config)
    return state, buffer, metrics


@eqx.filter_jit
def store(algorithm: Algorithm, state: Any, buffer: replay.ReplayBuffer, episode: Transition, length: Array,
          random_rows: Array, spec: EnvSpec) -> replay.ReplayBuffer:
    """Store the first ``length`` rows of ``episode`` (with their behaviour log-densities)."""
    return _store(algorithm, state, buffer, episode, length, random_rows, spec)


@eqx.filter_jit
def run_updates(algorithm: Algorithm, state: Any, data: Any, n_updates: Array, key: PRNGKey, config: Any):
    """``n_updates`` (traced) updates on ``data`` (e.g. a :class:`pathwise.replay.MixedReplay`) as one program."""
    return _updates(algorithm, state, data, n_updates, key, config)


class ReplayLoop(Loop):
    """One episode, stored, then the updates it pays for (see the module docstring)."""

    kind = "replay"

    def __init__(self, algorithm: Algorithm, spec: EnvSpec, config: Any):
        super().__init__(algorithm, spec, config)
        self.max_steps = spec.max_steps(config)
        if self.max_steps > config.buffer_size:
            raise ValueError(f"buffer_size={config.buffer_size} is smaller than one episode ({self.max_steps} "
                             "steps); raise buffer_size.")
        self.branching = bool(config.branches)
        self.last_fit = None
        config.learns(spec)  # svg1's model and the branches' learn what is not registered; 'known' without it: refused
        config.imagined_reward(spec)  # and a reward_source function that cannot be imported or traced
        check_noise(algorithm, config)
        if self.branching:
            self._check_branching(spec, config)
        else:
            for name in ("mirror", "joint_limits"):
                if getattr(config, name):
                    raise ValueError(f"{name}={getattr(config, name)} applies in {algorithm.name}'s replay loop to "
                                     "the model of its model rollouts (MBPO), which are off here "
                                     f"(model_rollouts_per_step=0): set model_rollouts_per_step > 0, or {name}=().")
        self.env = envs.make_env(spec.env_id)

    def _check_branching(self, spec: EnvSpec, config: Any) -> None:
        if spec.discrete:
            raise ValueError(f"model_rollouts_per_step={config.model_rollouts_per_step}: model rollouts need a "
                             f"dynamics model of continuous actions, but {spec.env_id} has discrete actions; set "
                             "model_rollouts_per_step=0.")
        config.mirror_signs(spec)  # mirror signs of the wrong count are refused here
        config.limits(spec)  # and joint limits that name entries the task lacks
        rows = config.max_branches(self.max_steps) * config.model_horizon
        if rows > config.model_buffer_size:
            raise ValueError(f"model_buffer_size={config.model_buffer_size} cannot hold one episode's model rollouts "
                             f"({config.max_branches(self.max_steps)} rollouts x model_horizon={config.model_horizon}"
                             f" = {rows} transitions); raise model_buffer_size or lower model_rollouts_per_step.")

    def init(self, key: PRNGKey) -> ReplayCarry:
        k_algo, key = jax.random.split(key)
        buffer = replay.init(example_item(self.spec), self.config.buffer_size)
        carry = ReplayCarry(self.algorithm.init(k_algo, self.spec, self.config), buffer, key,
                            jnp.zeros((), jnp.int32))
        if not self.branching:
            return carry
        k_model, key = jax.random.split(key)
        return carry._replace(key=key, model=self.config.new_model(self.spec, k_model),
                              model_buffer=replay.init(example_item(self.spec), self.config.model_buffer_size))

    def _random_actions(self, key: PRNGKey) -> np.ndarray:
        if self.spec.discrete:
            return np.asarray(jax.random.randint(key, (self.max_steps,), 0, self.spec.action_dim))
        if self.config.noise_color:  # Φ of colored noise: uniform on the box at every step, correlated in time
            return uniform_from_noise(colored_noise(key, self.max_steps, self.spec, self.config.noise_color), self.spec)
        low, high = np.asarray(self.spec.action_low, np.float32), np.asarray(self.spec.action_high, np.float32)
        return np.asarray(jax.random.uniform(key, (self.max_steps, low.size), minval=low, maxval=high))

    def iteration_is(self) -> str:
        return "one whole episode"

    def iteration(self, carry: ReplayCarry) -> tuple[ReplayCarry, dict[str, float]]:
        key, k_seed, k_act, k_random, k_update = jax.random.split(carry.key, 5)
        start, random_actions = int(carry.env_steps), self._random_actions(k_random)
        warmup = self.config.learning_starts

        if self.config.noise_color:  # the policy's samples for one episode of colored noise
            noise, from_noise = colored_noise(k_act, self.max_steps, self.spec, self.config.noise_color), \
                self.algorithm.hook("act_from_noise")
            sample = lambda obs, t: act_with_noise_once(from_noise, carry.algo, obs, noise[t])  # noqa: E731
        else:
            sample = lambda obs, t: _behaviour(self.algorithm.act, carry.algo, obs, k_act, np.int32(t))  # noqa: E731

        def act(obs, t):
            if start + t < warmup:
                return random_actions[t]
            return np.asarray(sample(jnp.asarray(obs, jnp.float32).reshape(-1), t))

        episode, length, episode_return = envs.collect_padded(self.env, act, episode_seed(k_seed), self.max_steps)
        n_updates = int(round(self.config.updates_per_step * length)) if start + length >= warmup else 0
        random_rows = start + np.arange(self.max_steps) < warmup
        args = (episode, np.int32(length), random_rows)
        if self.branching and n_updates > 0:
            algo, carry, metrics = self._branch_and_update(carry, args, n_updates, k_update)
        else:
            algo, buffer, metrics = store_and_update(self.algorithm, carry.algo, carry.buffer, *args,
                                                     np.int32(n_updates), k_update, self.spec, self.config)
            carry = carry._replace(buffer=buffer)
        carry = carry._replace(algo=algo, key=key, env_steps=carry.env_steps + length)
        return carry, {**to_floats(metrics), "episode_return": episode_return, "episode_length": float(length),
                       "updates": float(n_updates)}

    def _branch_and_update(self, carry: ReplayCarry, args: tuple, n_updates: int, key: PRNGKey):
        """Store the episode, refit the model (when due: ``model_fit_every``), add its branched rollouts, then the
        updates on both buffers."""
        cfg, spec = self.config, self.spec
        k_fit, k_branch, k_update = jax.random.split(key, 3)
        buffer = store(self.algorithm, carry.algo, carry.buffer, *args, spec)
        real = buffer._replace(storage=buffer.storage.transition)
        if int(buffer.size) < cfg.fit_config().min_transitions:  # too few real transitions to fit a model yet
            algo, metrics = run_updates(self.algorithm, carry.algo, buffer, np.int32(n_updates), k_update, cfg)
            return algo, carry._replace(buffer=buffer), metrics
        start, length = int(carry.env_steps), int(args[1])
        # not fitted yet: the first episode past the random steps, or the first since with enough transitions
        first = start < cfg.learning_starts or min(start, cfg.buffer_size) < cfg.fit_config().min_transitions
        model, refit = carry.model, first or cfg.refits(start, length)
        if refit:
            model, self.last_fit = fit(model, fit_data(real, spec, cfg), cfg.fit_config(), k_fit)
        count = np.int32(round(cfg.model_rollouts_per_step * length))
        model_buffer, branch = add_branches(self.algorithm.act, self.algorithm.hook("behaviour_log_prob"), carry.algo,
                                            learned_system(model, spec, self.max_steps, cfg), buffer,
                                            carry.model_buffer, count, k_branch, cfg.max_branches(self.max_steps),
                                            cfg.model_horizon, uniform_log_density(spec))
        data = replay.MixedReplay(buffer, model_buffer, cfg.real_ratio)
        algo, metrics = run_updates(self.algorithm, carry.algo, data, np.int32(n_updates), k_update, cfg)
        fitted = {} if self.last_fit is None else {"model_one_step_mse": self.last_fit.one_step_mse}  # None: resumed
        metrics = {**metrics, **branch, **fitted, "model_refit": float(refit), "model_buffer_size": model_buffer.size}
        return algo, carry._replace(buffer=buffer, model=model, model_buffer=model_buffer), metrics

    def close(self) -> None:
        self.env.close()


__all__ = ["ReplayCarry", "ReplayItem", "ReplayLoop", "ReplayOptions", "example_item", "run_updates", "store",
           "store_and_update", "uniform_log_density"]
