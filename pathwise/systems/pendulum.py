"""Gymnasium's ``Pendulum-v1`` as a differentiable system."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey


def angle_normalize(x: Array) -> Array:
    """Wrap an angle to [-pi, pi) exactly as Gymnasium's ``angle_normalize``."""
    return ((x + jnp.pi) % (2 * jnp.pi)) - jnp.pi


class Pendulum(System):
    """Inverted pendulum swing-up, identical to Gymnasium ``Pendulum-v1``.

    State ``[theta, theta_dot]`` (theta = 0 is upright), observation
    ``[cos theta, sin theta, theta_dot]``, action ``[torque]`` in [-2, 2].
    Semi-implicit Euler with dt = 0.05; the new velocity is clipped to
    [-8, 8] *before* the angle update; the reward
    ``-(angle_normalize(theta)^2 + 0.1 theta_dot^2 + 0.001 u^2)`` is taken on the
    pre-step state with the clipped torque.

    Gradients: zero with respect to the torque outside [-2, 2] and with
    respect to the velocity while the velocity clip is active (the forward
    values are Gymnasium's); ``angle_normalize`` has a jump at theta = pi where
    the reward's gradient flips sign but stays finite.
    """

    g: float = 10.0
    m: float = 1.0
    l: float = 1.0
    noise_std: float = 0.0

    name: ClassVar[str] = "Pendulum"
    gym_id: ClassVar[str] = "Pendulum-v1"
    state_dim: ClassVar[int] = 2
    obs_dim: ClassVar[int] = 3
    action_dim: ClassVar[int] = 1
    episode_length: ClassVar[int] = 200
    dt: ClassVar[float] = 0.05
    max_speed: ClassVar[float] = 8.0
    max_torque: ClassVar[float] = 2.0
    positive_parameters: ClassVar[tuple[str, ...]] = ("m", "l")
    angle_entries: ClassVar[tuple[int, ...]] = (0,)

    @property
    def action_low(self) -> np.ndarray:
        """``[-max_torque]`` = ``[-2]`` N m."""
        return np.full(1, -self.max_torque, np.float32)

    @property
    def action_high(self) -> np.ndarray:
        """``[max_torque]`` = ``[2]`` N m."""
        return np.full(1, self.max_torque, np.float32)

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        high = np.array([1.0, 1.0, self.max_speed], np.float32)
        if self.stochastic:  # noise can push the velocity past the clip
            high[2] = np.inf
        return -high, high

    def initial_state(self, key: PRNGKey) -> Array:
        """``[theta, theta_dot]`` uniform in [-pi, pi] x [-1, 1] (rad, rad/s), as ``Pendulum-v1.reset``."""
        return jax.random.uniform(key, (2,), minval=-jnp.array([jnp.pi, 1.0]), maxval=jnp.array([jnp.pi, 1.0]))

    def dynamics(self, state: Array, action: Array) -> Array:
        """One semi-implicit Euler step of Gymnasium's pendulum, dt = 0.05 s.

        With u = clip(a, -2, 2):
        ``theta_dot' = clip(theta_dot + (3 g / (2 l) sin(theta) + 3 u / (m l^2)) dt, -8, 8)`` and
        ``theta' = theta + theta_dot' dt``. The angle is not wrapped (the reward and observation wrap it).
        """
        th, thdot = state[0], state[1]
        u = jnp.clip(action[0], -self.max_torque, self.max_torque)
        acc = 3 * self.g / (2 * self.l) * jnp.sin(th) + 3.0 / (self.m * self.l**2) * u
        newthdot = jnp.clip(thdot + acc * self.dt, -self.max_speed, self.max_speed)
        newth = th + newthdot * self.dt
        return jnp.stack([newth, newthdot])

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """``-(angle_normalize(theta)^2 + 0.1 theta_dot^2 + 0.001 u^2)`` on the pre-step state, u = clip(a, -2, 2).

        At most 0 (upright and still), at least about -16.27; ``next_state`` is not used.
        """
        del next_state
        action = self.check_action(action)
        th, thdot = state[0], state[1]
        u = jnp.clip(action[0], -self.max_torque, self.max_torque)
        return -(angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2)

    def observe(self, state: Array) -> Array:
        """``[cos theta, sin theta, theta_dot]``, shape ``(3,)``."""
        return jnp.stack([jnp.cos(state[0]), jnp.sin(state[0]), state[1]])

    def state_from_obs(self, obs: Array) -> Array:
        """``[atan2(sin, cos), theta_dot]``: theta up to a multiple of 2 pi, which no output depends on."""
        return jnp.stack([jnp.arctan2(obs[1], obs[0]), obs[2]])
