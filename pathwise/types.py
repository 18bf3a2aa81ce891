"""Shared data types: trajectories and transitions as NamedTuples (pytrees)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

Array = jax.Array
PRNGKey = jax.Array
State = Any  # a pytree; every built-in system uses a flat array
PyTree = Any


class Trajectory(NamedTuple):
    """A rollout of length T (leading axis T; batch axes go in front under vmap).

    ``states[t]`` is the state *before* step t, ``rewards[t] = r(states[t], actions[t])``
    and ``final_state`` is the state after the last step, so the next states are
    ``next_states`` below.
    """

    states: State
    observations: Array
    actions: Array
    rewards: Array
    noises: Array  # additive process noise zeta_t used at step t (zeros if deterministic)
    policy_noises: Array  # explicit policy noise xi_t (empty last axis if none)
    dones: Array  # terminated(next_state), as booleans
    alive: Array  # 1.0 where the episode had not terminated before step t
    final_state: State

    @property
    def next_states(self) -> State:
        """States after each step: ``states[1:]`` followed by ``final_state``."""
        return jax.tree.map(
            lambda s, f: jax.numpy.concatenate([s[1:], f[None]], axis=0),
            self.states,
            self.final_state,
        )

    @property
    def total_reward(self) -> Array:
        """Sum of rewards over time (masked after termination)."""
        return self.rewards.sum(axis=-1)


class Transition(NamedTuple):
    """One environment transition, as stored in replay buffers and datasets."""

    obs: Array
    action: Array
    reward: Array
    next_obs: Array
    terminated: Array  # true terminal: do not bootstrap
    truncated: Array  # time limit: bootstrap from next_obs
