"""``System`` -> ``gymnasium.Env``, and the ``pathwise/...`` Gymnasium ids."""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit

from pathwise.systems.base import System


def _make_step_fn(system: System) -> Callable:
    """One compiled function per system: (state, action, seed) -> (state', obs', reward, terminated, finite).

    The PRNG key is built from an integer seed inside the compiled function and
    the finiteness check happens there too, so a Python ``step`` costs one
    dispatch and one device-to-host transfer.
    """

    def transition(state, action, seed):
        noise = system.sample_noise(jax.random.key(seed)) if system.stochastic else None
        next_state = system.step(state, action, noise)
        reward = system.reward(state, action, next_state)
        finite = jnp.all(jnp.isfinite(next_state))
        return next_state, system.observe(next_state), reward, system.terminated(next_state), finite

    return jax.jit(transition)


class SystemEnv(gym.Env):
    """A pathwise ``System`` behind the Gymnasium API (no time limit; see ``to_gymnasium``).

    Randomness (initial state, process noise) comes from ``self.np_random``, so
    ``reset(seed=s)`` is deterministic. Actions are checked against the action
    space; a non-finite action or state raises ``ValueError``.
    """

    metadata = {"render_modes": []}

    def __init__(self, system: System):
        self.system = system
        low, high = system.observation_bounds()
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        if system.discrete:
            self.action_space = spaces.Discrete(system.num_actions)
        else:
            self.action_space = spaces.Box(system.action_low, system.action_high, dtype=np.float32)
        self._transition = _make_step_fn(system)
        self._reset = jax.jit(lambda seed: (lambda s: (s, system.observe(s)))(system.reset(jax.random.key(seed))))
        self.state = None

    def _seed(self) -> np.ndarray:
        return np.asarray(self.np_random.integers(0, 2**31 - 1), np.uint32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Draw s0 = ``system.reset(key)`` with a key from ``np_random`` (seeded by ``seed`` if given).

        Returns ``(observe(s0) as float32, {})``; ``options`` is accepted for the API and ignored.
        """
        super().reset(seed=seed)
        self.state, obs = jax.device_get(self._reset(self._seed()))
        return np.asarray(obs, np.float32), {}

    def step(self, action):
        """One transition s' = f(s, a) + zeta (zeta drawn from ``np_random`` for a stochastic system).

        Returns ``(observe(s') as float32, reward(s, a, s'), terminated(s'), False, {})``: truncation is the
        ``TimeLimit``'s job (``to_gymnasium``). ``action`` is an int for a discrete system, else a
        ``(action_dim,)`` array; a wrong shape, a non-finite action or a non-finite next state raises ``ValueError``.
        """
        if self.state is None:
            raise RuntimeError("Call reset() before step().")
        if self.system.discrete:
            action = np.asarray(action)
            if action.shape != () or not np.issubdtype(action.dtype, np.integer):
                raise ValueError(f"{self.system.name}: expected an integer action in [0, {self.system.num_actions}), got {action!r}.")
        else:
            action = np.asarray(action, np.float32)
            if action.shape != (self.system.action_dim,):
                raise ValueError(
                    f"{self.system.name}: expected an action of shape ({self.system.action_dim},), got shape {action.shape}."
                )
            if not np.all(np.isfinite(action)):
                raise ValueError(f"{self.system.name}: action contains NaN or inf: {action}.")
        state, obs, reward, terminated, finite = jax.device_get(self._transition(self.state, action, self._seed()))
        if not finite:
            raise ValueError(
                f"{self.system.name}: the state became non-finite ({np.asarray(state)}); check the action "
                "magnitude and the system's parameters."
            )
        self.state = state
        return np.asarray(obs, np.float32), float(reward), bool(terminated), False, {}


def to_gymnasium(system: System, max_episode_steps: int | None = None) -> gym.Env:
    """Wrap ``system`` as a ``gymnasium.Env`` with a ``TimeLimit`` of its episode length."""
    if not isinstance(system, System):
        raise TypeError(f"to_gymnasium expects a pathwise System, got {type(system).__name__}.")
    return TimeLimit(SystemEnv(system), max_episode_steps or system.episode_length)


def _entry_point(factory: Callable[..., System]) -> Callable[..., gym.Env]:
    def make(**kwargs) -> gym.Env:
        return SystemEnv(factory(**kwargs))

    return make


def register_systems(registry: dict[str, Callable[..., System]]) -> None:
    """Register each ``pathwise/<Name>`` id with Gymnasium (idempotent)."""
    for env_id, factory in registry.items():
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point=_entry_point(factory),
            max_episode_steps=_episode_length(factory),
        )


def _episode_length(factory: Callable[..., System]) -> int:
    """The default episode length of ``factory``'s system, read without building it where the class states it.

    Building a system creates JAX arrays, which would start JAX's backend at ``import pathwise`` and leave
    no chance to choose its devices afterwards (``pathwise.seeds.use_host_devices``).
    """
    length = getattr(factory, "episode_length", None)
    return length if isinstance(length, int) else factory().episode_length
