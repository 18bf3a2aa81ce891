"""Gymnasium's ``Acrobot-v1`` physics (RK4) as differentiable systems."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey


def wrap(x: Array, low: float, high: float) -> Array:
    """Gymnasium's ``wrap``: shift by whole periods ``high - low`` into [low, high].

    Gymnasium subtracts the period in a while loop; subtracting ``k`` periods at
    once gives the same arithmetic for the single wrap that one step can cause.
    """
    period = high - low
    shifts = jnp.where(x > high, jnp.ceil((x - high) / period), jnp.where(x < low, -jnp.ceil((low - x) / period), 0.0))
    return x - shifts * period


class _AcrobotPhysics(System):
    """Shared Acrobot-v1 equations ("book" dynamics), one RK4 step of dt = 0.2."""

    link_length_1: float = 1.0
    link_mass_1: float = 1.0
    link_mass_2: float = 1.0
    link_com_pos_1: float = 0.5
    link_com_pos_2: float = 0.5
    link_moi: float = 1.0
    noise_std: float = 0.0

    state_dim: ClassVar[int] = 4
    obs_dim: ClassVar[int] = 6
    episode_length: ClassVar[int] = 500
    dt: ClassVar[float] = 0.2
    max_vel_1: ClassVar[float] = 4 * np.pi
    max_vel_2: ClassVar[float] = 9 * np.pi

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        high = np.array([1.0, 1.0, 1.0, 1.0, self.max_vel_1, self.max_vel_2], np.float32)
        if self.stochastic:
            high[4:] = np.inf
        return -high, high

    def initial_state(self, key: PRNGKey) -> Array:
        """``[theta1, theta2, theta1_dot, theta2_dot]`` each uniform in [-0.1, 0.1], as ``Acrobot-v1.reset``."""
        return jax.random.uniform(key, (4,), minval=-0.1, maxval=0.1)

    def _dsdt(self, s: Array, torque: Array) -> Array:
        m1, m2, l1 = self.link_mass_1, self.link_mass_2, self.link_length_1
        lc1, lc2, i1, i2, g = self.link_com_pos_1, self.link_com_pos_2, self.link_moi, self.link_moi, 9.8
        theta1, theta2, dtheta1, dtheta2 = s[0], s[1], s[2], s[3]
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(theta2)) + i1 + i2
        d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(theta2)) + i2
        phi2 = m2 * lc2 * g * jnp.cos(theta1 + theta2 - jnp.pi / 2.0)
        phi1 = (
            -m2 * l1 * lc2 * dtheta2**2 * jnp.sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * jnp.cos(theta1 - jnp.pi / 2)
            + phi2
        )
        ddtheta2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * jnp.sin(theta2) - phi2) / (
            m2 * lc2**2 + i2 - d2**2 / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])

    def integrate(self, s: Array, torque: Array) -> Array:
        """One RK4 step (dt = 0.2 s) of the "book" equations of motion under ``torque`` on the second joint.

        The derivative ``[theta1_dot, theta2_dot, theta1_acc, theta2_acc]`` is Gymnasium's ``_dsdt`` (Sutton and
        Barto's acrobot, g = 9.8, the torque held constant over the step); afterwards the angles are wrapped to
        [-pi, pi] and the velocities clipped to [-4 pi, 4 pi] and [-9 pi, 9 pi].
        """
        dt, dt2 = self.dt, self.dt / 2.0
        k1 = self._dsdt(s, torque)
        k2 = self._dsdt(s + dt2 * k1, torque)
        k3 = self._dsdt(s + dt2 * k2, torque)
        k4 = self._dsdt(s + dt * k3, torque)
        ns = s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        return jnp.stack(
            [
                wrap(ns[0], -jnp.pi, jnp.pi),
                wrap(ns[1], -jnp.pi, jnp.pi),
                jnp.clip(ns[2], -self.max_vel_1, self.max_vel_1),
                jnp.clip(ns[3], -self.max_vel_2, self.max_vel_2),
            ]
        )

    def tip_height(self, state: Array) -> Array:
        """Height of the tip above the pivot in link lengths, ``-cos(theta1) - cos(theta1 + theta2)``, in [-2, 2]."""
        return -jnp.cos(state[0]) - jnp.cos(state[1] + state[0])

    def terminated(self, state: Array) -> Array:
        """The tip is above the bar: ``tip_height(state) > 1``."""
        return self.tip_height(state) > 1.0

    def observe(self, state: Array) -> Array:
        """``[cos theta1, sin theta1, cos theta2, sin theta2, theta1_dot, theta2_dot]``, shape ``(6,)``."""
        s = state
        return jnp.stack([jnp.cos(s[0]), jnp.sin(s[0]), jnp.cos(s[1]), jnp.sin(s[1]), s[2], s[3]])

    def state_from_obs(self, obs: Array) -> Array:
        """Angles by ``atan2`` (in [-pi, pi], as the wrapped state), velocities as observed."""
        return jnp.stack([jnp.arctan2(obs[1], obs[0]), jnp.arctan2(obs[3], obs[2]), obs[4], obs[5]])


class Acrobot(_AcrobotPhysics):
    """Identical to Gymnasium ``Acrobot-v1``: torques {-1, 0, +1} on the second joint.

    Action: index 0/1/2 or a weight vector over the three torques (differentiable
    in the weights). Reward -1 per step until the tip rises above the bar
    (terminated), 0 on that step, as Gymnasium. Angles are wrapped to [-pi, pi]
    and velocities clipped (zero gradient while clipped); the reward is a step
    function of the state, so its gradient is 0.
    """

    name: ClassVar[str] = "Acrobot"
    gym_id: ClassVar[str] = "Acrobot-v1"
    num_actions: ClassVar[int] = 3

    def dynamics(self, state: Array, action: Array) -> Array:
        """``integrate`` under the torque ``[-1, 0, +1][action]``, or the weighted mean for a weight vector."""
        return self.integrate(state, self.discrete_value(action, jnp.array([-1.0, 0.0, 1.0])))

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """0 on the step that reaches the bar (``terminated(next_state)``), else -1, as Gymnasium.

        ``next_state`` defaults to ``dynamics(state, action)``.
        """
        action = self.check_action(action)
        if next_state is None:
            next_state = self.dynamics(state, action)
        return jnp.where(self.terminated(next_state), 0.0, -1.0)


class AcrobotContinuous(_AcrobotPhysics):
    """Acrobot-v1 physics with a continuous torque ``[u]`` in [-1, 1] and a shaped reward.

    Reward ``r = tip_height(next_state) - 0.01 u^2`` where ``tip_height =
    -cos(theta1) - cos(theta1 + theta2)`` is in [-2, 2]; terminates as Acrobot-v1
    (tip height > 1). Differentiable except through the angle wraps (finite
    jumps of 2 pi in the state, none in the observation or reward) and the clips.
    """

    name: ClassVar[str] = "AcrobotContinuous"

    def dynamics(self, state: Array, action: Array) -> Array:
        """``integrate`` under the torque ``clip(u, -1, 1)``."""
        return self.integrate(state, jnp.clip(action[0], -1.0, 1.0))

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """``tip_height(next_state) - 0.01 u^2``, u = clip(a, -1, 1); ``next_state`` defaults to ``dynamics``."""
        action = self.check_action(action)
        if next_state is None:
            next_state = self.dynamics(state, action)
        u = jnp.clip(action[0], -1.0, 1.0)
        return self.tip_height(next_state) - 0.01 * u**2
