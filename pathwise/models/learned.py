"""A learned dynamics model as a ``System`` over observations.

State = observation, so ``rollout``, ``ilqr``, ``mpc`` and every BPTT learner
run on ``LearnedModel`` unchanged: ``step(o, a, ζ) = f_φ(o, clip(a)) + ζ`` and
``reward(o, a, o') = R(o, a, o')`` with a known differentiable reward
(``pathwise.rewards``) or a learned reward model. ``reset`` draws one of the
recorded initial observations.

Termination is the environment's rule on observations or a learned
``TerminationHead``; a learned one ends an imagined rollout where the predicted
probability exceeds 0.5. That is a hard mask like a known rule (the rewards after
it are zeroed, ``pathwise.rollout``) and, like a known rule, carries no gradient,
so the gradients of the masked return stay finite.

An ensemble model predicts the elites' mean unless a rollout samples a member
(trajectory sampling, Chua et al., 2018): ``system.sample(key)`` is the system
of one imagined rollout, following one random elite for the whole rollout
(``sampling="ts-inf"``) or a fresh one at every step (``"ts-1"``).

Joint limits (``limits``) are what a learned model is worst at: a network fits
the stop at a limit smoothly, and away from the data it lets the joint pass it,
so an imagined rollout can reach what the real system cannot by folding a joint
through its stop. Where the model is given a joint's limits, torque that pushes a
joint at its limit further into it does nothing (the stop takes it), and a
predicted position past the limit is held at it with the outward velocity
removed, as an inelastic stop would.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.models.dynamics import DynamicsModel
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey

RewardFn = Callable[[Array, Array, Array], Array]

#: How an imagined rollout uses an ensemble (see the module docstring).
SAMPLING = ("mean", "ts-1", "ts-inf")
#: One limited joint: (position entry, velocity entry, action entry, low, high); a positive action drives the
#: position up, as a motor of positive gear does.
JointLimit = tuple[int, int, int, float, float]


def check_limits(limits: tuple[JointLimit, ...], obs_dim: int, action_dim: int) -> tuple[JointLimit, ...]:
    """``limits`` as ``(int, int, int, float, float)`` groups; ValueError naming the group that is out of range."""
    out = []
    for i, group in enumerate(limits):
        if len(group) != 5:
            raise ValueError(f"joint limit {i} is {tuple(group)}: give (position entry, velocity entry, action "
                             "entry, low, high).")
        p, v, k, lo, hi = group
        if not all(float(x).is_integer() for x in (p, v, k)) or not (0 <= p < obs_dim and 0 <= v < obs_dim) \
                or not 0 <= k < action_dim:
            raise ValueError(f"joint limit {i} = {tuple(group)} names entries outside the observation (0-"
                             f"{obs_dim - 1}) or the action (0-{action_dim - 1}); the first three are the joint's "
                             "position entry, its velocity entry and the action entry of its motor.")
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"joint limit {i} = {tuple(group)}: low {lo} must be finite and below high {hi}.")
        out.append((int(p), int(v), int(k), float(lo), float(hi)))
    return tuple(out)


class LearnedModel(System):
    """``o' = f_φ(o, clip(a, low, high)) (+ ζ)`` with reward ``R(o, a, o')``.

    Args:
      model: the fitted ``DynamicsModel`` (its parameters are leaves: gradients
        flow into them too, so freeze them with ``stop_gradient`` if needed).
      reward_fn: ``fn(obs, action, next_obs) -> scalar`` (e.g. ``pathwise.rewards.get(env_id)``).
      reward_model: a learned ``fn(obs, action, next_obs)`` module (used when ``reward_fn`` is None).
      action_low / action_high: the action box (actions are clipped into it, as the env does).
      initial_obs: ``[K, obs_dim]`` observations ``reset`` draws from (zeros if not given).
      noise_std: per-dimension std of the additive model noise ζ (e.g. the fit residuals).
      horizon: episode length.
      terminal_fn: ``fn(obs) -> bool``, the environment's termination on observations (imagined rollouts stop
        where the real environment would; no gradient flows through it). Never terminates if None.
      termination_model: a learned ``fn(obs) -> bool`` module (``TerminationHead``: probability > 0.5), used when
        ``terminal_fn`` is None.
      sampling: ``"mean"`` (the elites' mean), ``"ts-inf"`` or ``"ts-1"`` (what ``sample(key)`` draws).
      bonus: β of the optimism bonus: the reward is ``R + (β − λ) · model.disagreement(o, a)`` (0: none).
      penalty: λ of the pessimism penalty in that reward (0: none); :meth:`exploiting` drops β and keeps λ.
      limits: the joints' limits, :data:`JointLimit` groups (see the module docstring); () = none.
    """

    model: DynamicsModel
    low: Array
    high: Array
    initial_obs: Array
    noise_std: Array
    reward_model: eqx.Module | None
    termination_model: eqx.Module | None
    member: Array | None  # the ensemble member a ts-inf rollout follows
    member_key: Array | None  # the key a ts-1 rollout draws its per-step members from
    reward_fn: RewardFn | None = eqx.field(static=True)
    terminal_fn: Callable[[Array], Array] | None = eqx.field(static=True)
    horizon: int = eqx.field(static=True)
    sampling: str = eqx.field(static=True)
    bonus: float = eqx.field(static=True)
    penalty: float = eqx.field(static=True)
    all_members: bool = eqx.field(static=True)  # see batched_members
    limits: tuple[JointLimit, ...] = eqx.field(static=True)

    name = "LearnedModel"

    def __init__(self, model: DynamicsModel, reward_fn: RewardFn | None = None, *, action_low, action_high,
                 reward_model: eqx.Module | None = None, initial_obs=None, noise_std=0.0, horizon: int = 200,
                 terminal_fn: Callable[[Array], Array] | None = None, termination_model: eqx.Module | None = None,
                 sampling: str = "mean", bonus: float = 0.0, penalty: float = 0.0,
                 limits: tuple[JointLimit, ...] = ()):
        if reward_fn is None and reward_model is None:
            raise ValueError("LearnedModel needs a reward: pass reward_fn (e.g. pathwise.rewards.get(env_id)) "
                             "or a learned reward_model.")
        if sampling not in SAMPLING:
            raise ValueError(f"LearnedModel: sampling={sampling!r} must be one of {', '.join(SAMPLING)}.")
        if not math.isfinite(bonus):
            raise ValueError(f"LearnedModel: bonus={bonus!r} must be finite (the weight of the disagreement bonus; "
                             "negative: a penalty).")
        if not math.isfinite(penalty):
            raise ValueError(f"LearnedModel: penalty={penalty!r} must be finite (the weight of the disagreement "
                             "penalty).")
        self.termination_model, self.sampling = termination_model, sampling
        self.bonus, self.penalty = float(bonus), float(penalty)
        self.member, self.member_key = None, None
        self.model, self.reward_fn, self.reward_model = model, reward_fn, reward_model
        self.low = jnp.broadcast_to(jnp.asarray(action_low, jnp.float32), (model.action_dim,))
        self.high = jnp.broadcast_to(jnp.asarray(action_high, jnp.float32), (model.action_dim,))
        init = jnp.zeros((1, model.obs_dim)) if initial_obs is None else jnp.asarray(initial_obs, jnp.float32)
        if init.ndim != 2 or init.shape[1] != model.obs_dim:
            raise ValueError(f"LearnedModel: initial_obs must have shape [K, {model.obs_dim}], got {init.shape}.")
        self.initial_obs = init
        self.noise_std = jnp.broadcast_to(jnp.asarray(noise_std, jnp.float32), (model.obs_dim,))
        self.horizon = int(horizon)
        self.terminal_fn = terminal_fn
        self.all_members = False
        self.limits = check_limits(tuple(limits), model.obs_dim, model.action_dim)

    def batched_members(self) -> "LearnedModel":
        """This system for a large batch of vmapped rollouts that each follow their own member (MBPO's branches):
        every step runs every member on the whole batch and each rollout keeps its member's prediction. By default a
        rollout's member indexes the ensemble's stacked parameters, which ``vmap`` turns into a copy of one member's
        parameters per rollout: 50,000 branches through an ensemble of 5 with 4 layers of 200 would need 25 GB.
        That default stays for the few dozen differentiated rollouts of svgk, where running one member per rollout
        is faster than running every member."""
        out = copy.copy(self)
        object.__setattr__(out, "all_members", True)  # a static field: not a leaf eqx.tree_at can set
        return out

    @property
    def state_dim(self) -> int:  # type: ignore[override]
        return self.model.obs_dim

    @property
    def obs_dim(self) -> int:  # type: ignore[override]
        return self.model.obs_dim

    @property
    def action_dim(self) -> int:  # type: ignore[override]
        return self.model.action_dim

    @property
    def episode_length(self) -> int:  # type: ignore[override]
        return self.horizon

    @property
    def action_low(self) -> np.ndarray:
        """The ``action_low`` box given at construction, ``(action_dim,)``: actions are clipped into it."""
        return np.asarray(self.low)

    @property
    def action_high(self) -> np.ndarray:
        """The ``action_high`` box given at construction, ``(action_dim,)``: actions are clipped into it."""
        return np.asarray(self.high)

    def initial_state(self, key: PRNGKey) -> Array:
        """One of the ``initial_obs`` rows, drawn uniformly (the recorded first observations of real episodes)."""
        return self.initial_obs[jax.random.randint(key, (), 0, self.initial_obs.shape[0])]

    def sample(self, key: PRNGKey) -> "LearnedModel":
        """The system of one imagined rollout: with ``sampling="ts-inf"`` it follows one elite member drawn with
        ``key``; with ``"ts-1"`` each step draws its own elite; with ``"mean"`` (or one member) it is ``self``."""
        if self.sampling == "mean" or self.model.ensemble_size == 1:
            return self
        if self.sampling == "ts-inf":
            return eqx.tree_at(lambda s: s.member, self, self.model.random_member(key), is_leaf=lambda x: x is None)
        return eqx.tree_at(lambda s: s.member_key, self, key, is_leaf=lambda x: x is None)

    def _step_member(self, obs: Array) -> Array:
        """The ts-1 member of the step from ``obs``: drawn from the rollout's key folded with the observation's
        bits, so a step stays a pure function of ``(o, a)`` and distinct steps draw independently."""
        bits = jax.lax.bitcast_convert_type(jax.lax.stop_gradient(obs).astype(jnp.float32), jnp.uint32)
        mixed = jnp.sum(bits * jnp.arange(1, bits.shape[0] + 1, dtype=jnp.uint32) * jnp.uint32(2654435761))
        return self.model.random_member(jax.random.fold_in(self.member_key, mixed))

    def dynamics(self, state: Array, action: Array) -> Array:
        """The learned prediction ``o' = f_φ(o, clip(a, low, high))``, shape ``(obs_dim,)``; the state is the
        observation. Differentiable in ``o``, ``a`` (inside the box) and the model's parameters φ. The elites'
        mean, or the rollout's member (see ``sample``). With ``limits``, the joints stop at them (see the module
        docstring)."""
        action = self._free_action(state, action)
        if self.member is None and self.member_key is None:
            return self._stopped(state, self.model(state, action))
        member = self.member if self.member is not None else self._step_member(state)
        if self.all_members:
            return self._stopped(state, self.model.member_predictions(state, action)[member])
        return self._stopped(state, self.model.member_prediction(state, action, member))

    def _free_action(self, state: Array, action: Array) -> Array:
        """``clip(a, low, high)`` with the torque of each limited joint that sits at a limit and pushes into it set
        to 0 (no gradient through it): the stop takes it, and the model is asked what the joint does free."""
        action = jnp.clip(action, self.low, self.high)
        for p, _, k, lo, hi in self.limits:
            into = ((state[p] >= hi) & (action[k] > 0)) | ((state[p] <= lo) & (action[k] < 0))
            action = action.at[k].set(jnp.where(into, 0.0, action[k]))
        return action

    def _stopped(self, state: Array, pred: Array) -> Array:
        """``pred`` with each limited joint's position kept within its limits (or no further past one than the
        state already is: the real stop is soft) and its velocity out of the range removed where it was held."""
        for p, v, _, lo, hi in self.limits:
            low, high = jnp.minimum(lo, state[p]), jnp.maximum(hi, state[p])
            over, under = pred[p] > high, pred[p] < low
            vel = jnp.where(over, jnp.minimum(pred[v], 0.0), jnp.where(under, jnp.maximum(pred[v], 0.0), pred[v]))
            pred = pred.at[p].set(jnp.clip(pred[p], low, high)).at[v].set(vel)
        return pred

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """``R(o, a, o')``: the known ``reward_fn``, else the learned ``reward_model``, on observations, plus
        ``(bonus − penalty) · disagreement(o, a)`` where that is not 0 (an optimism bonus ``exploration_bonus``
        less a pessimism penalty ``uncertainty_penalty``).

        ``next_state`` defaults to the model's prediction ``dynamics(state, action)``.
        """
        action = self.check_action(action)
        if next_state is None:
            next_state = self.dynamics(state, action)
        fn = self.reward_fn if self.reward_fn is not None else self.reward_model
        reward = fn(state, action, next_state)
        if self.bonus != self.penalty:
            weight = self.bonus - self.penalty
            reward = reward + weight * self.model.disagreement(state, self._free_action(state, action))
        return reward

    def exploiting(self) -> "LearnedModel":
        """This model without the optimism bonus, the penalty kept: what an agent plans over to exploit the model
        rather than explore it (evaluation, deployment)."""
        out = copy.copy(self)
        object.__setattr__(out, "bonus", 0.0)  # a static field: the copy is another compiled program's model
        return out

    def observe(self, state: Array) -> Array:
        """The state itself: a learned model's state is the environment's observation."""
        return state

    def terminated(self, state: Array) -> Array:
        """``terminal_fn(obs)`` (the environment's termination rule), else the learned ``termination_model``
        (probability > 0.5), under ``stop_gradient``; never if both are None."""
        fn = self.terminal_fn if self.terminal_fn is not None else self.termination_model
        if fn is None:
            return jnp.asarray(False)
        return jax.lax.stop_gradient(fn(state))
