"""The on-policy loop: ``num_envs`` Gymnasium environments in lockstep, one episode each per iteration.

The environments are reset with seeds drawn from the carry's key and stepped together with
``act(state, obs, key, False)`` (vmapped over the environments); a finished environment is not stepped
again, so every real step is used once and nothing needs an autoreset. Every ``n_steps`` lockstep steps
(the config's ``n_steps``; 0 or absent: whole episodes) the loop calls
``update(state, segment, key, config)`` on the :class:`Segment` just collected, and the following steps
act with the updated policy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, NamedTuple

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from pathwise import envs
from pathwise.algorithms.base import Algorithm
from pathwise.config import Options, at_least
from pathwise.loops import Loop, update_once
from pathwise.spec import DEFAULT_MAX_EPISODE_STEPS, EnvSpec
from pathwise.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class OnPolicyOptions(Options):
    """Options of the on-policy loop."""

    num_envs: int = 8
    """Environments run in lockstep (each runs one episode per iteration)."""
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS
    """Episode cap for environments without a time limit of their own (counted as truncation)."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + at_least(self, 1, "num_envs", "max_episode_steps")


class Segment(NamedTuple):
    """Consecutive lockstep steps of N environments, leading axes ``[steps, N]``; ``mask`` is 1 on real steps.

    ``next_obs`` is the true next observation, also where the time limit cut the episode (``truncated``).
    """

    obs: Array
    actions: Array
    rewards: Array
    next_obs: Array
    terminated: Array
    truncated: Array
    mask: Array


def log_probs(policy: Any, obs: Array, actions: Array) -> Array:
    """log π_θ(a_t|s_t) of every step of a segment's ``[steps, N]`` observations and actions."""
    return jax.vmap(jax.vmap(lambda o, a: policy(o).log_prob(a)))(obs, actions)


class OnPolicyCarry(NamedTuple):
    """The on-policy loop's carry."""

    algo: Any
    key: PRNGKey
    env_steps: Array


def lockstep(env_list: list[gym.Env], seeds: np.ndarray, act, max_steps: int) -> Iterator[tuple]:
    """One episode in each env (reset with ``seeds``), one ``(obs, action, reward, next_obs, terminated,
    truncated, active)`` tuple of ``[N, ...]`` arrays per lockstep step; ``act(obs[N, d], t) -> actions[N]``."""
    obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(env_list, seeds)]).astype(np.float32)
    obs = obs.reshape(len(env_list), -1)
    active, t = np.ones(len(env_list), bool), 0
    while active.any():
        actions = np.asarray(act(obs, t))
        next_obs, reward = obs.copy(), np.zeros(len(env_list), np.float32)
        term, trunc = np.zeros(len(env_list), bool), np.zeros(len(env_list), bool)
        for i in np.flatnonzero(active):
            action = envs.to_env_action(np.clip(actions[i], env_list[i].action_space.low,
                                                env_list[i].action_space.high)
                                        if isinstance(env_list[i].action_space, gym.spaces.Box) else actions[i],
                                        env_list[i].action_space)
            o, reward[i], term[i], trunc[i], _ = env_list[i].step(action)
            next_obs[i] = np.asarray(o, np.float32).reshape(-1)
        trunc |= active & ~term & (t == max_steps - 1)
        yield obs, actions, reward, next_obs, term, trunc, active.copy()
        active &= ~(term | trunc)
        obs, t = next_obs, t + 1


def stack(steps: list[tuple], length: int) -> Segment:
    """Lockstep steps as a :class:`Segment` zero-padded to ``length`` rows (mask 0 on padding)."""
    dtypes = (np.float32, None, np.float32, np.float32, np.float32, np.float32, np.float32)

    def column(i):
        x = np.stack([s[i] for s in steps])
        x = x.astype(dtypes[i]) if dtypes[i] is not None else x
        return np.pad(x, [(0, length - len(steps))] + [(0, 0)] * (x.ndim - 1))

    return Segment(*(column(i) for i in range(7)))


def mean_metrics(history: list[dict[str, Array]]) -> dict[str, float]:
    """The updates' metrics as one value each, on the host: the mean, or the last value of a running total
    (names ending in ``_total``). Computed with NumPy, since the number of updates varies between iterations."""
    history = jax.device_get(history)
    return {k: float(history[-1][k] if k.endswith("_total") else np.mean([h[k] for h in history]))
            for k in history[0]}


@eqx.filter_jit
def _act_batch(act, state: Any, obs: Array, key: PRNGKey, t: Array) -> Array:
    keys = jax.random.split(jax.random.fold_in(key, t), obs.shape[0])
    return jax.vmap(lambda o, k: act(state, o, k, False))(obs, keys)


class OnPolicyLoop(Loop):
    """Lockstep episodes with an update every ``n_steps`` steps (see the module docstring)."""

    kind = "on_policy"

    def __init__(self, algorithm: Algorithm, spec: EnvSpec, config: Any):
        super().__init__(algorithm, spec, config)
        self.envs = [envs.make_env(spec.env_id) for _ in range(config.num_envs)]
        self.max_steps = spec.max_steps(config)
        self.segment_length = getattr(config, "n_steps", 0) or self.max_steps

    def init(self, key: PRNGKey) -> OnPolicyCarry:
        k_algo, key = jax.random.split(key)
        return OnPolicyCarry(self.algorithm.init(k_algo, self.spec, self.config), key, jnp.zeros((), jnp.int32))

    def iteration_is(self) -> str:
        return f"{len(self.envs)} whole episodes run in lockstep (num_envs)"

    def iteration(self, carry: OnPolicyCarry) -> tuple[OnPolicyCarry, dict[str, float]]:
        key, k_env, k_act, k_update = jax.random.split(carry.key, 4)
        seeds = np.asarray(jax.random.randint(k_env, (len(self.envs),), 0, 2**31 - 1))
        state, rows, history, returns, steps = carry.algo, [], [], np.zeros(len(self.envs)), 0
        act = lambda obs, t: _act_batch(self.algorithm.act, state, jnp.asarray(obs), k_act, np.int32(t))  # noqa

        def update_on_rows():
            nonlocal state
            state, metrics = update_once(self.algorithm.update, state, stack(rows, self.segment_length),
                                     jax.random.fold_in(k_update, len(history)), self.config)
            history.append(metrics)
            rows.clear()

        for row in lockstep(self.envs, seeds, act, self.max_steps):
            rows.append(row)
            returns += row[2] * row[6]
            steps += int(row[6].sum())
            if len(rows) == self.segment_length:
                update_on_rows()
        if rows:
            update_on_rows()
        return OnPolicyCarry(state, key, carry.env_steps + steps), {**mean_metrics(history),
                                                                    "episode_return": float(returns.mean())}

    def close(self) -> None:
        for env in self.envs:
            env.close()


__all__ = ["OnPolicyCarry", "OnPolicyLoop", "OnPolicyOptions", "Segment", "lockstep", "log_probs", "mean_metrics",
           "stack"]
