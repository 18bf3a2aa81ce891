"""A user's own problem, importable as ``own_problem_pkg`` (tests/ is on the path of pytest and of the CLI runs in
tests/test_own_problem.py): a small Gymnasium environment class and a small differentiable System."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit

import pathwise as pw


class Drive(gym.Env):
    """A unit mass on a line, pushed by a force in [-1, 1], rewarded for staying near the origin."""

    metadata = {"render_modes": []}

    def __init__(self, dt: float = 0.1):
        self.dt = dt
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.state = np.zeros(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = self.np_random.uniform(-1.0, 1.0, size=2)
        return self.state.astype(np.float32), {}

    def step(self, action):
        x, v = self.state
        force = float(np.clip(np.asarray(action).reshape(-1)[0], -1.0, 1.0))
        v = v + self.dt * force
        self.state = np.array([x + self.dt * v, v])
        reward = -(x**2 + 0.1 * v**2 + 0.01 * force**2)
        return self.state.astype(np.float32), float(reward), False, False, {}


def make() -> gym.Env:
    """The environment with its episode length: what `--env own_problem_pkg:make` builds."""
    return TimeLimit(Drive(), max_episode_steps=20)


def make_not_env():
    return {"not": "an env"}


def make_dict_obs() -> gym.Env:
    env = make()
    env.observation_space = spaces.Dict({"x": spaces.Box(-1.0, 1.0, (2,), np.float32)})
    return env


def make_unbounded() -> gym.Env:
    env = make()
    env.action_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)
    return env


class PointMass(pw.systems.System):
    """The same task as a differentiable System: what `--system own_problem_pkg:PointMass` builds."""

    name: ClassVar[str] = "PointMass"
    state_dim: ClassVar[int] = 2
    obs_dim: ClassVar[int] = 2
    action_dim: ClassVar[int] = 1
    episode_length: ClassVar[int] = 20
    dt: float = 0.1

    def initial_state(self, key):
        return jax.random.uniform(key, (2,), minval=-1.0, maxval=1.0)

    def dynamics(self, state, action):
        x, v = state
        v = v + self.dt * jnp.clip(action[0], -1.0, 1.0)
        return jnp.stack([x + self.dt * v, v])

    def reward(self, state, action, next_state=None):
        return -(state[0] ** 2 + 0.1 * state[1] ** 2 + 0.01 * jnp.clip(action[0], -1.0, 1.0) ** 2)

    def observe(self, state):
        return state

    def state_from_obs(self, obs):
        return obs
