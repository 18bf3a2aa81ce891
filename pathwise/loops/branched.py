"""Model-generated data for the replay learners: MBPO's short branched rollouts (Janner et al. 2019).

With ``model_rollouts_per_step > 0`` the replay loop (:mod:`pathwise.loops.replay`) adds three steps to each
iteration, after the real episode is stored in the replay buffer ``D_env``:

1. refit a dynamics model on all of ``D_env`` (warm-started; the same model, fit and reward/termination sources
   as the model-based loop: :class:`pathwise.loops.model_based.ModelFitOptions`), after every episode or, with
   ``model_fit_every``, once per that many real steps;
2. branch ``M = round(model_rollouts_per_step · episode length)`` rollouts of ``k = model_horizon`` steps through
   the frozen model, each from a state drawn uniformly from ``D_env``, with the current stochastic policy
   ``a ~ π(·|s)`` (:func:`pathwise.rollout.rollout`, the rollout every model-based learner uses), and append
   their transitions to a model buffer ``D_model`` (a ring of ``model_buffer_size``: old model data age out);
   a branch stops at the model's termination (known rule or learned head);
3. the iteration's ``updates_per_step · length`` updates sample minibatches from both buffers, a fraction
   ``real_ratio`` from ``D_env`` and the rest from ``D_model`` (:class:`pathwise.replay.MixedReplay`).

Branches are short because the model's error compounds with the horizon, while branching from every visited
state still covers the state distribution of the data (MBPO's argument). With an ensemble each branch follows
its own randomly drawn elite (``model_sampling='ts-inf'``) or a fresh one per step (``'ts-1'``).

The model buffer and the number of branches have fixed shapes (the branches are padded to the longest episode),
so one compiled program generates and stores them whatever the episode's length or the buffers' fill.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise import replay
from pathwise.config import at_least
from pathwise.loops.model_based import ModelFitOptions
from pathwise.models.learned import LearnedModel
from pathwise.rollout import rollout
from pathwise.types import Array, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class BranchOptions(ModelFitOptions):
    """Options of the replay loop's model rollouts (MBPO); off while ``model_rollouts_per_step`` is 0."""

    ADDED: ClassVar[dict[str, Any]] = {"model_fit_every": 0}  # since 2026-12-07 (a refit after every episode)

    model_rollouts_per_step: float = 0.0
    """Branched model rollouts per real environment step (MBPO's M per step); 0: no model data."""
    model_horizon: int = 1
    """Steps k of each branched rollout (MBPO's rollout length)."""
    real_ratio: float = 0.05
    """Fraction of each update's minibatch drawn from the real transitions; the rest from the model's."""
    model_buffer_size: int = 100_000
    """Capacity of the model-generated buffer (the oldest model transitions are overwritten first)."""
    model_fit_every: int = 0
    """Real steps between refits of the model: after an episode the model is refitted only where the real step
    count has passed a multiple of this since the episode began (and always for its first fit); the branches and
    updates of every episode go on through the model last fitted. 0: refit after every episode. Where episodes are
    short (Hopper-v5's early ones last a few dozen steps), refitting after each costs most of a run; MBPO refits
    every 250 steps."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + at_least(self, 0, "model_rollouts_per_step", "model_fit_every") + \
            at_least(self, 1, "model_horizon", "model_buffer_size") + \
            [(0.0 <= self.real_ratio <= 1.0, f"real_ratio={self.real_ratio} must lie in [0, 1]")]

    @property
    def branches(self) -> bool:
        """Whether the replay loop generates model data."""
        return self.model_rollouts_per_step > 0

    def refits(self, start: int, length: int) -> bool:
        """Whether a fitted model is refitted after an episode of ``length`` real steps begun at real step
        ``start``: after every episode or, with ``model_fit_every``, where the real step count passes a multiple
        of it."""
        every = self.model_fit_every
        return every == 0 or (start + length) // every > start // every

    def max_branches(self, max_steps: int) -> int:
        """Branched rollouts of the longest episode (the padded, static count of one iteration)."""
        return max(1, math.ceil(self.model_rollouts_per_step * max_steps))


def branch_transitions(system: LearnedModel, policy: Callable[[Array, Array], Array], starts: Array, key: PRNGKey,
                       horizon: int) -> tuple[Transition, Array]:
    """``len(starts)`` rollouts of ``horizon`` steps through ``system`` (each with its own sampled member), as
    flat transitions ``[len(starts) · horizon]`` and a mask of the rows before or at each rollout's termination.

    ``policy(obs, key)`` acts; ``truncated`` is False everywhere (a branch's end is not the environment's), so the
    learners bootstrap from its last state. Through an ensemble, every member steps the whole batch and each branch
    keeps its own member's prediction (``LearnedModel.batched_members``), so memory grows with the branches' states,
    not with a copy of a member's parameters per branch.
    """
    system = system.batched_members()

    def one(start, k):
        k_member, k_noise, k_policy = jax.random.split(k, 3)
        traj = rollout(system.sample(k_member), policy, start, horizon, key=k_noise,
                       policy_noise=jax.random.split(k_policy, horizon))
        return Transition(traj.observations, traj.actions, traj.rewards, traj.next_states, traj.dones,
                          jnp.zeros_like(traj.dones)), traj.alive > 0

    transitions, alive = jax.vmap(one)(starts, jax.random.split(key, starts.shape[0]))
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), transitions), alive.reshape(-1)


@eqx.filter_jit
def add_branches(act, log_prob: Callable | None, state: Any, system: LearnedModel, buffer: replay.ReplayBuffer,
                 model_buffer: replay.ReplayBuffer, count: Array, key: PRNGKey, n_branches: int, horizon: int,
                 uniform_log_prob: float) -> tuple[replay.ReplayBuffer, dict[str, Array]]:
    """Branch ``count`` (traced, at most the static ``n_branches``) rollouts of ``horizon`` steps from states of
    ``buffer`` (real ``ReplayItem`` s) with ``act(state, obs, key, False)`` and append their transitions to
    ``model_buffer``: one program for any ``count``. Each stored item carries the acting policy's log-density of its
    action (``log_prob(state, obs, action)``), or ``uniform_log_prob`` for algorithms without one. Returns the
    buffer and the branches' mean reward per step and mean length."""
    from pathwise.loops.replay import ReplayItem  # the replay loop imports this module

    k_start, k_roll = jax.random.split(key)
    starts = replay.sample(buffer, k_start, n_branches).transition.obs
    policy = lambda obs, k: act(state, obs, k, False)  # noqa: E731
    transitions, alive = branch_transitions(system, policy, starts, k_roll, horizon)
    rows = alive & (jnp.arange(alive.shape[0]) // horizon < count)  # wanted branches, up to their termination
    kept = jnp.sum(rows).astype(jnp.int32)
    metrics = {"model_branch_reward": jnp.sum(jnp.where(rows, transitions.reward, 0.0)) / jnp.maximum(kept, 1),
               "model_branch_length": kept / jnp.maximum(jnp.minimum(count, n_branches), 1)}
    order = jnp.argsort(~rows, stable=True)  # the kept rows first, in order: add_batch stores a prefix
    transitions = jax.tree.map(lambda x: x[order], transitions)
    behaviour = (jax.vmap(lambda o, a: log_prob(state, o, a))(transitions.obs, transitions.action)
                 if log_prob is not None else jnp.full(transitions.reward.shape, uniform_log_prob))
    return replay.add_batch(model_buffer, ReplayItem(transitions, behaviour), kept), metrics


__all__ = ["BranchOptions", "add_branches", "branch_transitions"]
