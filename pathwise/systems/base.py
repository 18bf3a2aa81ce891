"""The ``System`` interface: pure, differentiable dynamics you can backpropagate through.

A system is an immutable ``equinox.Module``. Its numeric constructor parameters
(gravity, masses, noise scale, ...) are pytree leaves, so a system can be passed
into ``jax.jit`` and even differentiated with respect to its physics. Shapes and
discrete structure are class-level constants, static under ``jit``.

What a subclass writes: ``initial_state(key)``, ``dynamics(state, action)`` (the deterministic part of a
step), ``reward(state, action, next_state=None)``, ``observe(state)``, where they apply ``terminated(state)``
and ``state_from_obs(obs)``, and the class constants below (``state_dim``, ``obs_dim``, ``action_dim`` or
``num_actions``, ``episode_length``). What the base class gives everything else (docs/guide.md, "Your own
system")::

    s  = sys.reset(key)              # initial state (a flat array for built-ins)
    s2 = sys.step(s, a)              # deterministic dynamics
    s2 = sys.step(s, a, noise)       # + additive process noise zeta (reparameterized)
    r  = sys.reward(s, a)            # scalar reward of the transition from s under a
    o  = sys.observe(s)              # observation as Gymnasium returns it
    sys.terminated(s)                # boolean

The process noise is the additive perturbation itself: ``step(s, a, zeta) =
f(s, a) + zeta``. Draw it with ``sys.sample_noise(key)`` (zero-mean Gaussian
with standard deviation ``noise_std``); because ``zeta`` is an explicit input,
a trajectory is a deterministic function of its noise, and the noise of a
recorded transition can be recovered exactly as ``s' - f(s, a)``.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.types import Array, PRNGKey


class System(eqx.Module):
    """Abstract base of every differentiable system.

    Subclasses set the class constants below and implement ``dynamics``,
    ``reward``, ``observe``, ``initial_state`` (and ``terminated`` if the task
    can end early).
    """

    # Class-level constants (static under jit). Subclasses override.
    name: ClassVar[str] = "System"
    gym_id: ClassVar[str | None] = None  # the Gymnasium env this system reproduces
    state_dim: ClassVar[int] = 0
    obs_dim: ClassVar[int] = 0
    action_dim: ClassVar[int] = 1  # continuous: size of the action vector
    num_actions: ClassVar[int] = 0  # discrete: number of actions (0 = continuous)
    episode_length: ClassVar[int] = 200  # Gymnasium's TimeLimit
    positive_parameters: ClassVar[tuple[str, ...]] = ()  # physical parameters that must be > 0 (masses, lengths)
    angle_entries: ClassVar[tuple[int, ...]] = ()  # state entries that are angles (reported wrapped to [-pi, pi))

    # -- abstract physics -------------------------------------------------
    def initial_state(self, key: PRNGKey) -> Array:
        """Draw an initial state s0 ~ p(s0), shape ``(state_dim,)``, as the reproduced environment's ``reset`` does.

        Subclasses implement this; users call ``reset(key)``, which checks the key and calls it. Make it a pure
        function of ``key`` (same key, same state) so rollouts are reproducible and vmappable over keys.
        """
        raise NotImplementedError

    def dynamics(self, state: Array, action: Array) -> Array:
        """Deterministic part f(s, a) of the transition (``action`` already validated)."""
        raise NotImplementedError

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """Scalar reward r(s, a) of the transition from ``state`` (``(state_dim,)``) under ``action``.

        Subclasses implement this as a differentiable function of ``state`` and ``action`` (the pathwise
        gradient flows through it). Rewards that depend on where the step lands (a goal bonus) read
        ``next_state`` and compute ``dynamics(state, action)`` themselves when it is ``None``. Returns a float
        array of shape ``()``.
        """
        raise NotImplementedError

    def observe(self, state: Array) -> Array:
        """The observation o = h(s) of ``state``, shape ``(obs_dim,)``, exactly as the Gymnasium env returns it.

        Subclasses implement this; it must be differentiable (policies act on observations, and the gradient of
        the return reaches the state through it). Without noise it is the identity for fully observed systems.
        """
        raise NotImplementedError

    def terminated(self, state: Array) -> Array:
        """Whether ``state`` ends the episode (Gymnasium's ``terminated``, not the time limit): a bool array ``()``.

        The default is never; systems whose task can end early (a pole that falls, a goal that is reached)
        override it. It is a step function of the state, so it carries no gradient; rollouts use it to mask
        the rewards after the end.
        """
        del state
        return jnp.asarray(False)

    def state_from_obs(self, obs: Array) -> Array:
        """Invert ``observe``: the state an observation came from, when the observation determines it.

        Used to evaluate the reward on observations (``pathwise.rewards``).
        Systems whose observation loses information keep this default.
        """
        raise NotImplementedError(f"{self.name}: the observation does not determine the state.")

    # -- noise -------------------------------------------------------------
    @property
    def noise_scale(self) -> Array:
        """Standard deviation of the process noise, broadcast to the state shape."""
        return jnp.broadcast_to(jnp.asarray(getattr(self, "noise_std", 0.0)), (self.state_dim,))

    @property
    def stochastic(self) -> bool:
        """True when ``noise_std`` is non-zero (checked on concrete values only)."""
        std = getattr(self, "noise_std", 0.0)
        if isinstance(std, jax.core.Tracer):
            return True
        return bool(np.any(np.asarray(std) != 0))

    def sample_noise(self, key: PRNGKey, shape: tuple[int, ...] = ()) -> Array:
        """Additive process noise zeta ~ N(0, diag(noise_std^2)) of shape ``shape + (state_dim,)``."""
        eps = jax.random.normal(key, shape + (self.state_dim,))
        return eps * self.noise_scale

    # -- the public contract ---------------------------------------------------
    def reset(self, key: PRNGKey) -> Array:
        """Initial state, drawn as Gymnasium's ``reset`` draws it."""
        if not isinstance(key, jax.Array) or not (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                                  or (key.dtype == jnp.uint32 and key.shape[-1:] == (2,))):
            raise ValueError(f"{self.name}.reset: key must be a JAX PRNG key such as jax.random.key(0), got "
                             f"{key!r}; a seed goes through the key: system.reset(jax.random.key(seed)).")
        return self.initial_state(key)

    def __check_init__(self) -> None:
        """Refuse physical parameters that are not finite numbers (and a negative ``noise_std``) at construction.

        Only concrete Python numbers are checked: traced values (a system built inside ``jit``/``grad`` to
        differentiate with respect to its physics) pass through.
        """
        import dataclasses

        for field in dataclasses.fields(self):
            value = getattr(self, field.name, None)
            structural = isinstance(value, str) and field.metadata.get("static", False)  # a mode, not a number
            if (isinstance(value, str) and not structural) or (isinstance(value, float) and not np.isfinite(value)):
                example = "" if field.default is dataclasses.MISSING else \
                    f"; e.g. {type(self).__name__}({field.name}={field.default!r})"
                raise ValueError(f"{self.name}: parameter {field.name}={value!r} must be a finite number{example}.")
        std = getattr(self, "noise_std", 0.0)
        if isinstance(std, (int, float)) and std < 0:
            raise ValueError(f"{self.name}: noise_std={std!r} must be >= 0 (the standard deviation of the process "
                             "noise; 0 for deterministic dynamics).")
        for name in self.positive_parameters:
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not value > 0:
                raise ValueError(f"{self.name}: {name}={value!r} must be > 0.")

    def step(self, state: Array, action: Array, noise: Array | None = None) -> Array:
        """Next state ``f(s, a) (+ noise)``; pure and differentiable in ``state`` and ``action``."""
        state = self.check_state(state)
        action = self.check_action(action)
        next_state = self.dynamics(state, action)
        if noise is not None:
            noise = jnp.asarray(noise)
            if noise.shape != (self.state_dim,):
                raise ValueError(
                    f"{self.name}.step: noise must have the state's shape ({self.state_dim},), "
                    f"got {noise.shape}. Draw it with system.sample_noise(key)."
                )
            next_state = next_state + noise
        return next_state

    # -- spaces ---------------------------------------------------------------
    @property
    def discrete(self) -> bool:
        """True for a system with ``num_actions`` discrete actions, False for a continuous action vector."""
        return self.num_actions > 0

    @property
    def action_low(self) -> np.ndarray:
        """Lower bound of the Gymnasium action space, float32 ``(action_dim,)``; -1 unless overridden."""
        return -np.ones(self.action_dim, np.float32)

    @property
    def action_high(self) -> np.ndarray:
        """Upper bound of the Gymnasium action space, float32 ``(action_dim,)``; +1 unless overridden."""
        return np.ones(self.action_dim, np.float32)

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the Gymnasium observation space (infinite unless overridden)."""
        inf = np.full(self.obs_dim, np.inf, np.float32)
        return -inf, inf

    # -- validation -------------------------------------------------------------
    def check_state(self, state: Array) -> Array:
        """Return ``state`` as an array after checking it has the shape ``(state_dim,)`` of one unbatched state.

        Runs at trace time (shapes only, no cost under ``jit``); a batch raises a ``ValueError`` that says to
        ``jax.vmap`` instead.
        """
        state = jnp.asarray(state)
        if state.shape != (self.state_dim,):
            raise ValueError(
                f"{self.name}: state must have shape ({self.state_dim},), got {state.shape}. "
                "Use jax.vmap(system.step) for a batch of states."
            )
        return state

    def check_action(self, action: Array) -> Array:
        """Validate an action's shape (trace time) and return it as an array.

        Discrete systems take an integer index (shape ``()``) or a vector of
        ``num_actions`` weights (one-hot, or relaxed as Gumbel-softmax gives);
        continuous systems take a vector of shape ``(action_dim,)``.
        """
        action = jnp.asarray(action)
        if self.discrete:
            if action.shape == () and jnp.issubdtype(action.dtype, jnp.integer):
                return action
            if action.shape == (self.num_actions,):
                return action
            raise ValueError(
                f"{self.name}: a discrete action must be an integer index of shape () or a "
                f"one-hot/relaxed vector of shape ({self.num_actions},); got shape {action.shape} "
                f"and dtype {action.dtype}. Batch with jax.vmap."
            )
        if action.shape != (self.action_dim,):
            hint = " Wrap a scalar as jnp.array([a])." if action.shape == () else " Batch with jax.vmap."
            raise ValueError(
                f"{self.name}: action must have shape ({self.action_dim},), got {action.shape}.{hint}"
            )
        return action

    def discrete_value(self, action: Array, values: Array) -> Array:
        """Map a discrete action (index or weight vector) to ``values[action]``.

        For a weight vector this is ``weights @ values``, which equals the
        indexed value for a one-hot vector and is differentiable in the weights
        (the straight-through / Gumbel-softmax route into discrete dynamics).
        """
        values = jnp.asarray(values)
        if action.shape == ():
            return values[action]
        return action @ values



class SystemWrapper(System):
    """``base`` as it is, except where a subclass overrides a method (e.g. a penalized reward).

    Shapes, bounds, dynamics, observation, termination and noise are the wrapped system's.
    """

    base: System

    state_dim = property(lambda self: self.base.state_dim)  # type: ignore[assignment]
    obs_dim = property(lambda self: self.base.obs_dim)  # type: ignore[assignment]
    action_dim = property(lambda self: self.base.action_dim)  # type: ignore[assignment]
    num_actions = property(lambda self: self.base.num_actions)  # type: ignore[assignment]
    episode_length = property(lambda self: self.base.episode_length)  # type: ignore[assignment]
    action_low = property(lambda self: self.base.action_low)
    action_high = property(lambda self: self.base.action_high)
    noise_scale = property(lambda self: self.base.noise_scale)
    stochastic = property(lambda self: self.base.stochastic)

    def initial_state(self, key: PRNGKey) -> Array:
        """The wrapped system's initial state, ``base.reset(key)``."""
        return self.base.reset(key)

    def dynamics(self, state: Array, action: Array) -> Array:
        """The wrapped system's deterministic step, ``base.dynamics(state, action)``."""
        return self.base.dynamics(state, action)

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """The wrapped system's reward, ``base.reward(state, action, next_state)``; subclasses change it."""
        return self.base.reward(state, action, next_state)

    def observe(self, state: Array) -> Array:
        """The wrapped system's observation, ``base.observe(state)``."""
        return self.base.observe(state)

    def terminated(self, state: Array) -> Array:
        """The wrapped system's termination, ``base.terminated(state)``."""
        return self.base.terminated(state)

    def state_from_obs(self, obs: Array) -> Array:
        """The wrapped system's inverse observation, ``base.state_from_obs(obs)``."""
        return self.base.state_from_obs(obs)
