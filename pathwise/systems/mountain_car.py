"""Gymnasium's ``MountainCarContinuous-v0`` as a differentiable system."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey


class MountainCarContinuous(System):
    """Identical to Gymnasium ``MountainCarContinuous-v0``.

    State = observation = ``[position, velocity]``; action ``[force]`` in [-1, 1].
    The velocity update uses the clipped force, the velocity is clipped to
    [-0.07, 0.07], the position to [-1.2, 0.6], and at the left wall a negative
    velocity is reset to 0. The episode terminates when position >= 0.45 and
    velocity >= 0. The reward is ``100 * terminated(next_state) - 0.1 a^2`` with
    the *unclipped* action, as in Gymnasium.

    Gradients: zero with respect to the force outside [-1, 1], with respect to
    the velocity while its clip is active, and through the wall reset; the
    +100 goal bonus is a step function (zero gradient everywhere, undefined on
    the goal line), so gradient methods see only the action cost unless they use
    a shaped reward.
    """

    power: float = 0.0015
    noise_std: float = 0.0

    name: ClassVar[str] = "MountainCarContinuous"
    gym_id: ClassVar[str] = "MountainCarContinuous-v0"
    state_dim: ClassVar[int] = 2
    obs_dim: ClassVar[int] = 2
    action_dim: ClassVar[int] = 1
    episode_length: ClassVar[int] = 999
    min_position: ClassVar[float] = -1.2
    max_position: ClassVar[float] = 0.6
    max_speed: ClassVar[float] = 0.07
    goal_position: ClassVar[float] = 0.45
    goal_velocity: ClassVar[float] = 0.0

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        low = np.array([self.min_position, -self.max_speed], np.float32)
        high = np.array([self.max_position, self.max_speed], np.float32)
        if self.stochastic:
            return np.full(2, -np.inf, np.float32), np.full(2, np.inf, np.float32)
        return low, high

    def initial_state(self, key: PRNGKey) -> Array:
        """``[position, 0]`` with position uniform in [-0.6, -0.4], as ``MountainCarContinuous-v0.reset``."""
        pos = jax.random.uniform(key, (), minval=-0.6, maxval=-0.4)
        return jnp.stack([pos, jnp.zeros_like(pos)])

    def dynamics(self, state: Array, action: Array) -> Array:
        """Gymnasium's update, with F = clip(a, -1, 1):

        ``v' = clip(v + F power - 0.0025 cos(3 x), -0.07, 0.07)``, ``x' = clip(x + v', -1.2, 0.6)``, and
        ``v' = 0`` when ``x' = -1.2`` and ``v' < 0`` (the inelastic left wall).
        """
        position, velocity = state[0], state[1]
        force = jnp.clip(action[0], -1.0, 1.0)
        velocity = velocity + force * self.power - 0.0025 * jnp.cos(3 * position)
        velocity = jnp.clip(velocity, -self.max_speed, self.max_speed)
        position = jnp.clip(position + velocity, self.min_position, self.max_position)
        at_wall = (position == self.min_position) & (velocity < 0)
        velocity = jnp.where(at_wall, jnp.zeros_like(velocity), velocity)
        return jnp.stack([position, velocity])

    def terminated(self, state: Array) -> Array:
        """At the goal: position >= 0.45 and velocity >= 0."""
        return (state[0] >= self.goal_position) & (state[1] >= self.goal_velocity)

    def reward(self, state: Array, action: Array, next_state: Array | None = None) -> Array:
        """``100 [next_state at the goal] - 0.1 a^2`` with the unclipped action, as Gymnasium.

        ``next_state`` defaults to ``dynamics(state, action)``; the bonus has zero gradient.
        """
        action = self.check_action(action)
        if next_state is None:
            next_state = self.dynamics(state, action)
        bonus = jnp.where(self.terminated(next_state), 100.0, 0.0)
        return bonus - 0.1 * action[0] ** 2

    def observe(self, state: Array) -> Array:
        """The state itself, ``[position, velocity]``."""
        return state

    def state_from_obs(self, obs: Array) -> Array:
        """The observation itself (``observe`` is the identity)."""
        return obs
