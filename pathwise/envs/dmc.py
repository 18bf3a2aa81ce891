"""The DeepMind Control Suite as Gymnasium environments (the ``dmc`` extra: ``pip install 'pathwise[dmc]'``).

Ids read ``dm_control/<domain>-<task>-v0`` (``dm_control/cartpole-swingup-v0``, ``dm_control/cheetah-run-v0``):
Shimmy's registration of the suite, done on first use of such an id (importing ``shimmy`` registers them and
loads MuJoCo, so the core import path never does it). pathwise changes two things in what ``gymnasium.make``
returns for a suite id:

- **Flat observations.** The suite observes a dictionary of arrays (cartpole: ``position`` (3,), ``velocity``
  (2,)). They are flattened into one float32 Box by Gymnasium's ``FlattenObservation`` and
  ``DtypeObservation`` wrappers, in the order of the ``Dict`` space's keys, which Gymnasium sorts by name: cartpole's
  observation is ``[position (3), velocity (2)]``. :func:`observation_layout` gives each key's slice.
- **A stated time limit.** Every suite task but the LQR domain's lasts 1000 control steps (the control timestep
  is 0.01 to 0.04 s by domain). The id's spec says so (``max_episode_steps=1000``), so pathwise sees the episode
  length. The tasks pathwise has records for (:mod:`pathwise.registry`) never terminate: the suite ends their
  episodes by truncation (``discount`` 1 at the last step), which Shimmy reports as ``truncated``.

**Action repeat.** ``dm_control/<domain>-<task>-repeatN-v0`` is the same task with each action held for ``N``
control steps (:class:`ActionRepeat`, rewards summed): TD-MPC2 runs the suite with ``N = 2``. A step of such an
id is one decision, and pathwise counts its steps so (``env_steps``, ``--steps``, episode lengths): its
episodes last ``1000 / N`` steps, and a 100k-step run on ``-repeat2`` sees 200k of the suite's control steps, as
TD-MPC2's 100k steps do. The variant is registered when first asked for, knows what its task's record knows
(returns are the same sums of the same rewards), and is resumed, evaluated and loaded by its id like any other.

Actions are the suite's own float64 Box (most tasks ``[-1, 1]``); rewards are in ``[0, 1]`` per step, so a
return is at most 1000.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import warnings
from typing import Any

import gymnasium as gym

from pathwise.registry import DMC_PREFIX as PREFIX  # the namespace of the suite's ids (Shimmy's)

#: Control steps of a suite episode (the suite's own time limit, restated in the id's spec).
EPISODE_STEPS = 1000

_REPEAT = re.compile(rf"({re.escape(PREFIX)}\w+-\w+)-repeat(\d+)-v(\d+)")

#: The command that installs what the suite needs.
INSTALL = "pip install 'pathwise[dmc]'"


def is_dmc_id(env_id: Any) -> bool:
    """Whether ``env_id`` names an environment of the ``dm_control/`` namespace."""
    return isinstance(env_id, str) and env_id.startswith(PREFIX)


def split_repeat(env_id: str) -> tuple[str, int]:
    """``(suite id, action repeat)`` of an id: ``dm_control/cartpole-swingup-repeat2-v0`` ->
    ``("dm_control/cartpole-swingup-v0", 2)``; an id without ``-repeatN`` has repeat 1."""
    found = _REPEAT.fullmatch(env_id)
    if found is None:
        return env_id, 1
    return f"{found.group(1)}-v{found.group(3)}", int(found.group(2))


def check_dmc_id(env_id: str) -> str:
    """``env_id`` once the suite's ids (and an action-repeat variant asked for) are registered; a ``ValueError``
    naming the fix when the ``dmc`` extra is missing or the id is not a suite task (with the closest suite ids)."""
    ids = suite_ids()
    base, repeat = split_repeat(env_id)
    if base in ids and base != env_id and repeat < 2:
        raise ValueError(f"{env_id}: an action repeat must be 2 or more (-repeat2-); {base} is the task without one.")
    if base in ids:
        if base != env_id and env_id not in gym.registry:
            _register_repeat(env_id, base, repeat)
        return env_id
    if env_id in gym.registry:  # Shimmy's locomotion and manipulation environments
        raise ValueError(f"{env_id} is a dm_control environment outside the Control Suite, whose observations "
                         "pathwise does not flatten; the suite's dm_control/<domain>-<task>-v0 ids work "
                         "(pathwise.envs.dmc.suite_ids() lists them).")
    close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown DeepMind Control Suite id {env_id!r}.{hint} Suite ids read "
                     "dm_control/<domain>-<task>-v0, e.g. dm_control/cartpole-swingup-v0 (with an action repeat: "
                     "dm_control/cartpole-swingup-repeat2-v0); pathwise.envs.dmc.suite_ids() lists them all.")


@functools.lru_cache(maxsize=1)
def suite_ids() -> tuple[str, ...]:
    """The suite's Gymnasium ids, registered (flat float32 observations, 1000-step limit) on first call."""
    try:
        with warnings.catch_warnings():  # dm_control's import looks for a display (GLFW) and warns without one
            warnings.simplefilter("ignore")
            import shimmy  # noqa: F401  (registers the dm_control/ ids)
            from shimmy.utils.envs_configs import DM_CONTROL_SUITE_ENVS
            import dm_control.suite  # noqa: F401
    except ImportError as exc:
        raise ValueError(f"The DeepMind Control Suite ids (dm_control/...) need the dmc extra, which is not "
                         f"installed ({exc}). Install it: {INSTALL}.") from None
    ids = []
    for domain, task in DM_CONTROL_SUITE_ENVS:
        env_id = f"{PREFIX}{domain}-{task}-v0"
        spec = gym.registry[env_id]
        if not getattr(spec.entry_point, "pathwise_flat", False):  # replaced once per process
            limit = None if domain == "lqr" else EPISODE_STEPS  # LQR runs until it reaches its goal
            gym.registry[env_id] = dataclasses.replace(spec, entry_point=_flat_entry_point(spec.entry_point),
                                                       max_episode_steps=limit)
        ids.append(env_id)
    return tuple(ids)


def _register_repeat(env_id: str, base: str, repeat: int) -> None:
    """Register ``env_id``: the suite task ``base`` acting every ``repeat`` control steps, its limit in decisions."""
    spec = gym.registry[base]
    limit = None if spec.max_episode_steps is None else -(-spec.max_episode_steps // repeat)
    gym.registry[env_id] = dataclasses.replace(spec, id=env_id, kwargs={**spec.kwargs, "action_repeat": repeat},
                                               max_episode_steps=limit)


def _flat_entry_point(make: Any) -> Any:
    entry = functools.partial(make_flat, make)
    entry.pathwise_flat = True  # type: ignore[attr-defined]
    return entry


def make_flat(make: Any, action_repeat: int = 1, **kwargs: Any) -> gym.Env:
    """``make(**kwargs)`` (Shimmy's entry point of a suite task) with its Dict observation flattened to a float32
    Box (``FlattenObservation`` then ``DtypeObservation``; keys in the Dict space's sorted order), each action held
    for ``action_repeat`` control steps (:class:`ActionRepeat`) when that is above 1."""
    import numpy as np
    from gymnasium.wrappers import DtypeObservation, FlattenObservation

    env = make(**kwargs)
    if isinstance(env.observation_space, gym.spaces.Dict):
        env = FlattenObservation(env)
    with warnings.catch_warnings():  # the bounds are +-inf, which float32 holds exactly: Gymnasium warns regardless
        warnings.filterwarnings("ignore", message=".*precision lowered.*")
        env = DtypeObservation(env, np.float32)
    return ActionRepeat(env, action_repeat) if action_repeat != 1 else env


class ActionRepeat(gym.Wrapper):
    """Apply each action for ``repeat`` steps of the wrapped environment: one step of this wrapper is one decision.

    The reward is the sum of the ``repeat`` rewards, the observation and ``info`` the last step's; the repeats
    stop early where the episode terminates or is truncated. (Gymnasium has no such wrapper: its
    ``MaxAndSkipObservation`` also max-pools Atari frames.)
    """

    def __init__(self, env: gym.Env, repeat: int):
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"ActionRepeat: repeat must be an integer >= 1, got {repeat!r}; e.g. repeat=2 (TD-MPC2's "
                             "setting for the Control Suite).")
        super().__init__(env)
        self.repeat = repeat

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step ``repeat`` times (fewer if the episode ends) and return the summed reward."""
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


def observation_layout(env_id: str) -> dict[str, slice]:
    """Where each entry of a suite task's dictionary observation lies in pathwise's flat observation.

    >>> observation_layout("dm_control/cartpole-swingup-v0")  # doctest: +SKIP
    {'position': slice(0, 3, None), 'velocity': slice(3, 5, None)}
    """
    import numpy as np

    check_dmc_id(env_id)
    env = gym.make(env_id)
    try:
        space = env.unwrapped.observation_space
    finally:
        env.close()
    out, start = {}, 0
    for key, sub in space.spaces.items():
        size = int(np.prod(sub.shape))
        out[key] = slice(start, start + size)
        start += size
    return out


__all__ = ["ActionRepeat", "EPISODE_STEPS", "INSTALL", "PREFIX", "check_dmc_id", "is_dmc_id", "make_flat",
           "observation_layout", "split_repeat", "suite_ids"]
