"""``EnvSpec``: what an algorithm's ``init`` knows about its environment.

Spaces (flat observation size, action size or number of actions, the action box), the episode
length, and from the environment's registry record (:mod:`pathwise.registry`) the differentiable
``System``, the reward and termination on observations, and the unwrapped-angle observation
entries. A spec is an Equinox module whose only array-valued field is the ``System``, so it can be
passed through ``jax.jit``/``vmap`` with everything else static.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import numpy as np

from pathwise.registry import RewardFn, TerminationFn

#: Episode cap for environments without a time limit of their own, unless a config says otherwise.
DEFAULT_MAX_EPISODE_STEPS = 1000


class EnvSpec(eqx.Module):
    """An environment as an algorithm sees it (see the module docstring)."""

    env_id: str = eqx.field(static=True)
    obs_dim: int = eqx.field(static=True)
    action_dim: int = eqx.field(static=True)  # continuous: size of the action vector; discrete: number of actions
    discrete: bool = eqx.field(static=True)
    action_low: tuple[float, ...] = eqx.field(static=True)  # () for discrete actions
    action_high: tuple[float, ...] = eqx.field(static=True)
    episode_length: int = eqx.field(static=True)  # the environment's time limit; 0 if it has none
    system: Any  # the differentiable System reproducing the environment, or None
    reward: RewardFn | None = eqx.field(static=True, default=None)
    terminated: TerminationFn | None = eqx.field(static=True, default=None)
    angles: tuple[int, ...] = eqx.field(static=True, default=())
    native: bool = eqx.field(static=True, default=False)  # the environment *is* the System (a pathwise/ id)

    def angle_entries(self, override: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """The observation entries a network sees as (cos, sin): ``override`` (an algorithm's ``angle_features``)
        or, if None, the environment's known unwrapped angles (``angles``); ValueError for an index outside the
        observation."""
        angles = tuple(int(i) for i in (self.angles if override is None else override))
        bad = [i for i in angles if not 0 <= i < self.obs_dim]
        if bad:
            raise ValueError(f"angle_features {angles} has indices outside the {self.obs_dim}-dim observation of "
                             f"{self.env_id}: {bad}. Give the entries that are unwrapped angles, or () for none.")
        if len(set(angles)) != len(angles):
            raise ValueError(f"angle_features {angles} lists an entry twice; give each unwrapped angle once.")
        return angles

    def max_steps(self, config: Any = None) -> int:
        """Episode cap: the environment's time limit, else ``config.max_episode_steps``, else 1000."""
        return self.episode_length or int(getattr(config, "max_episode_steps", DEFAULT_MAX_EPISODE_STEPS))


def from_env(env_id: str, env: Any = None) -> EnvSpec:
    """The spec of a Gymnasium id (spaces read from ``env``, or from a freshly made one)."""
    import gymnasium as gym

    from pathwise import registry

    registry.check_id(env_id)
    record = registry.record(env_id)
    own = env is None
    if own:
        try:
            env = gym.make(env_id)
        except gym.error.DependencyNotInstalled as exc:
            raise ValueError(f"{env_id} needs a package that is not installed ({exc}). Install it, e.g. "
                             "`pip install -e '.[mujoco]'` for Gymnasium's MuJoCo environments.") from exc
    try:
        obs_space, act_space = env.observation_space, env.action_space
        limit = env.spec.max_episode_steps if env.spec is not None else None
    finally:
        if own:
            env.close()
    if not isinstance(obs_space, gym.spaces.Box):
        raise ValueError(f"{env_id} has a {type(obs_space).__name__} observation space; pathwise needs a Box "
                         "(wrap it with gymnasium.wrappers.FlattenObservation).")
    discrete = isinstance(act_space, gym.spaces.Discrete)
    if not discrete and not isinstance(act_space, gym.spaces.Box):
        raise ValueError(f"{env_id} has a {type(act_space).__name__} action space; use a Box or Discrete one.")
    system = record.system() if record.system is not None else None
    low = () if discrete else tuple(float(x) for x in np.ravel(act_space.low))
    high = () if discrete else tuple(float(x) for x in np.ravel(act_space.high))
    return EnvSpec(env_id, int(np.prod(obs_space.shape)), int(act_space.n) if discrete else len(low), discrete,
                   low, high, int(limit or 0), system, record.reward, record.terminated, record.angles, record.native)


def from_system(system: Any, env_id: str | None = None) -> EnvSpec:
    """The spec of a ``System`` used directly (no Gymnasium environment): its spaces and dynamics."""
    discrete = system.discrete
    low = () if discrete else tuple(float(x) for x in np.ravel(system.action_low))
    high = () if discrete else tuple(float(x) for x in np.ravel(system.action_high))
    return EnvSpec(env_id or system.name, system.obs_dim, system.num_actions if discrete else system.action_dim,
                   discrete, low, high, int(system.episode_length), system, native=True)


__all__ = ["DEFAULT_MAX_EPISODE_STEPS", "EnvSpec", "from_env", "from_system"]
