"""A learned dynamics model as a ``System`` over observations.

State = observation, so ``rollout``, ``ilqr``, ``mpc`` and every BPTT learner
run on ``LearnedModel`` unchanged: ``step(o, a, ζ) = f_φ(o, clip(a)) + ζ`` and
``reward(o, a, o') = R(o, a, o')`` with a known differentiable reward
(``pathwise.rewards``) or a learned reward model. ``reset`` draws one of the
recorded initial observations.
"""

from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.models.dynamics import DynamicsModel
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey

RewardFn = Callable[[Array, Array, Array], Array]


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
    """

    model: DynamicsModel
    low: Array
    high: Array
    initial_obs: Array
    noise_std: Array
    reward_model: eqx.Module | None
    reward_fn: RewardFn | None = eqx.field(static=True)
    terminal_fn: Callable[[Array], Array] | None = eqx.field(static=True)
    horizon: int = eqx.field(static=True)

    name = "LearnedModel"

    def __init__(self, model: DynamicsModel, reward_fn: RewardFn | None = None, *, action_low, action_high,
                 reward_model: eqx.Module | None = None, initial_obs=None, noise_std=0.0, horizon: int = 200,
                 terminal_fn: Callable[[Array], Array] | None = None):
        if reward_fn is None and reward_model is None:
            raise ValueError("LearnedModel needs a reward: pass reward_fn (e.g. pathwise.rewards.get(env_id)) "
                             "or a learned reward_model.")
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

    def dynamics(self, state: Array, action: Array) -> Array:
        """The learned prediction ``o' = f_φ(o, clip(a, low, high))``, shape ``(obs_dim,)``; the state is the
        observation. Differentiable in ``o``, ``a`` (inside the box) and the model's parameters φ."""
        return self.model(state, jnp.clip(action, self.low, self.high))

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """``R(o, a, o')``: the known ``reward_fn``, else the learned ``reward_model``, on observations.

        ``next_state`` defaults to the model's prediction ``dynamics(state, action)``.
        """
        action = self.check_action(action)
        if next_state is None:
            next_state = self.dynamics(state, action)
        fn = self.reward_fn if self.reward_fn is not None else self.reward_model
        return fn(state, action, next_state)

    def observe(self, state: Array) -> Array:
        """The state itself: a learned model's state is the environment's observation."""
        return state

    def terminated(self, state: Array) -> Array:
        """``terminal_fn(obs)`` under ``stop_gradient`` (the environment's termination rule), never if it is None."""
        if self.terminal_fn is None:
            return jnp.asarray(False)
        return jax.lax.stop_gradient(self.terminal_fn(state))
