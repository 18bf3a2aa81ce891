"""Gymnasium's ``CartPole-v1`` physics as differentiable systems: balance and swing-up."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey


class _CartPolePhysics(System):
    """Shared CartPole-v1 equations of motion (explicit Euler, tau = 0.02)."""

    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5  # half the pole's length
    force_mag: float = 10.0
    noise_std: float = 0.0

    state_dim: ClassVar[int] = 4
    obs_dim: ClassVar[int] = 4
    angle_entries: ClassVar[tuple[int, ...]] = (2,)
    tau: ClassVar[float] = 0.02
    x_threshold: ClassVar[float] = 2.4
    theta_threshold: ClassVar[float] = 12 * 2 * np.pi / 360

    def accelerate(self, state: Array, force: Array) -> Array:
        """One explicit Euler step (tau = 0.02 s) of the cart-pole under a horizontal ``force`` (N) on the cart.

        With M = masscart + masspole, l = half the pole length and
        ``temp = (F + m_p l theta_dot^2 sin theta) / M``:
        ``theta_acc = (g sin theta - cos theta temp) / (l (4/3 - m_p cos^2 theta / M))``,
        ``x_acc = temp - m_p l theta_acc cos theta / M``; then every coordinate of
        ``[x, x_dot, theta, theta_dot]`` moves by tau times its derivative at the old state (positions advance
        with the old velocities: Gymnasium's "euler" integrator).
        """
        x, x_dot, theta, theta_dot = state[0], state[1], state[2], state[3]
        total_mass = self.masspole + self.masscart
        polemass_length = self.masspole * self.length
        costheta, sintheta = jnp.cos(theta), jnp.sin(theta)
        temp = (force + polemass_length * theta_dot**2 * sintheta) / total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * costheta**2 / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        return jnp.stack(
            [x + self.tau * x_dot, x_dot + self.tau * xacc, theta + self.tau * theta_dot, theta_dot + self.tau * thetaacc]
        )

    def observe(self, state: Array) -> Array:
        """The state itself, ``[x, x_dot, theta, theta_dot]`` (m, m/s, rad, rad/s)."""
        return state

    def state_from_obs(self, obs: Array) -> Array:
        """The observation itself (``observe`` is the identity)."""
        return obs


class CartPole(_CartPolePhysics):
    """Identical to Gymnasium ``CartPole-v1`` (balance, discrete force +-10 N).

    Action: index 0 (push left) or 1 (push right), or a weight vector over the
    two (one-hot, or relaxed by Gumbel-softmax: the force is then the weighted
    mean, which makes the dynamics differentiable in the weights). Terminates
    when |x| > 2.4 or |theta| > 12 degrees; the reward is 1 on every step,
    including the terminating one (Gymnasium's default), so its gradient is 0:
    gradient-based methods need the swing-up variant's shaped reward or a critic.
    """

    name: ClassVar[str] = "CartPole"
    gym_id: ClassVar[str] = "CartPole-v1"
    num_actions: ClassVar[int] = 2
    action_dim: ClassVar[int] = 1
    episode_length: ClassVar[int] = 500

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        big = np.finfo(np.float32).max
        high = np.array([self.x_threshold * 2, big, self.theta_threshold * 2, big], np.float32)
        return -high, high

    def initial_state(self, key: PRNGKey) -> Array:
        """Every coordinate uniform in [-0.05, 0.05], as ``CartPole-v1.reset``."""
        return jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05)

    def dynamics(self, state: Array, action: Array) -> Array:
        """``accelerate`` under the force ``[-10, +10][action]`` N, or the weighted mean for a weight vector."""
        force = self.discrete_value(action, jnp.array([-self.force_mag, self.force_mag]))
        return self.accelerate(state, force)

    def terminated(self, state: Array) -> Array:
        """The pole fell or the cart left the track: |x| > 2.4 m or |theta| > 12 degrees."""
        return (jnp.abs(state[0]) > self.x_threshold) | (jnp.abs(state[2]) > self.theta_threshold)

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """1 on every step, the terminating one included (Gymnasium's default); its gradient is 0."""
        del next_state
        self.check_action(action)
        return jnp.ones((), jnp.result_type(state.dtype, jnp.float32))


class CartPoleSwingUp(_CartPolePhysics):
    """CartPole-v1 physics with a continuous force and the pole starting down.

    Action ``[u]`` in [-1, 1], force = ``force_mag * clip(u)``. The pole starts
    hanging (theta = pi +- 0.05, other coordinates +- 0.05) and the task never
    terminates (500 steps). Shaped, differentiable reward on the pre-step state::

        r = cos(theta) - 0.1 x^2 - 0.01 u^2

    +1 per step when upright, -1 when hanging; the cart term keeps it on the
    2.4 m track (not enforced by the physics). Gradient with respect to u is 0
    outside [-1, 1].
    """

    name: ClassVar[str] = "CartPoleSwingUp"
    action_dim: ClassVar[int] = 1
    episode_length: ClassVar[int] = 500

    @property
    def action_low(self) -> np.ndarray:
        """``[-1]``: the force is ``force_mag * clip(u, -1, 1)``."""
        return -np.ones(1, np.float32)

    def initial_state(self, key: PRNGKey) -> Array:
        """Hanging: ``[0, 0, pi, 0]`` plus uniform noise in [-0.05, 0.05] on every coordinate."""
        return jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05) + jnp.array([0.0, 0.0, jnp.pi, 0.0])

    def dynamics(self, state: Array, action: Array) -> Array:
        """``accelerate`` under the force ``force_mag * clip(u, -1, 1)`` N."""
        return self.accelerate(state, self.force_mag * jnp.clip(action[0], -1.0, 1.0))

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """``cos(theta) - 0.1 x^2 - 0.01 u^2`` on the pre-step state, u = clip(a, -1, 1); ``next_state`` unused."""
        del next_state
        action = self.check_action(action)
        u = jnp.clip(action[0], -1.0, 1.0)
        return jnp.cos(state[2]) - 0.1 * state[0] ** 2 - 0.01 * u**2
