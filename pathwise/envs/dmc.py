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

Actions are the suite's own float64 Box (most tasks ``[-1, 1]``); rewards are in ``[0, 1]`` per step, so a
return is at most 1000.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import warnings
from typing import Any

import gymnasium as gym

#: Namespace of the DeepMind Control Suite ids (Shimmy's).
PREFIX = "dm_control/"

#: Control steps of a suite episode (the suite's own time limit, restated in the id's spec).
EPISODE_STEPS = 1000

#: The command that installs what the suite needs.
INSTALL = "pip install 'pathwise[dmc]'"


def is_dmc_id(env_id: Any) -> bool:
    """Whether ``env_id`` names an environment of the ``dm_control/`` namespace."""
    return isinstance(env_id, str) and env_id.startswith(PREFIX)


def check_dmc_id(env_id: str) -> str:
    """``env_id`` once the suite's ids are registered; a ``ValueError`` naming the fix when the ``dmc`` extra is
    missing or the id is not a suite task (with the closest suite ids)."""
    ids = suite_ids()
    if env_id in ids:
        return env_id
    if env_id in gym.registry:  # Shimmy's locomotion and manipulation environments
        raise ValueError(f"{env_id} is a dm_control environment outside the Control Suite, whose observations "
                         "pathwise does not flatten; the suite's dm_control/<domain>-<task>-v0 ids work "
                         "(pathwise.envs.dmc.suite_ids() lists them).")
    close = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown DeepMind Control Suite id {env_id!r}.{hint} Suite ids read "
                     f"dm_control/<domain>-<task>-v0, e.g. dm_control/cartpole-swingup-v0; "
                     "pathwise.envs.dmc.suite_ids() lists them all.")


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


def _flat_entry_point(make: Any) -> Any:
    entry = functools.partial(make_flat, make)
    entry.pathwise_flat = True  # type: ignore[attr-defined]
    return entry


def make_flat(make: Any, **kwargs: Any) -> gym.Env:
    """``make(**kwargs)`` (Shimmy's entry point of a suite task) with its Dict observation flattened to a float32
    Box (``FlattenObservation`` then ``DtypeObservation``; keys in the Dict space's sorted order)."""
    import numpy as np
    from gymnasium.wrappers import DtypeObservation, FlattenObservation

    env = make(**kwargs)
    if isinstance(env.observation_space, gym.spaces.Dict):
        env = FlattenObservation(env)
    with warnings.catch_warnings():  # the bounds are +-inf, which float32 holds exactly: Gymnasium warns regardless
        warnings.filterwarnings("ignore", message=".*precision lowered.*")
        return DtypeObservation(env, np.float32)


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


__all__ = ["EPISODE_STEPS", "INSTALL", "PREFIX", "check_dmc_id", "is_dmc_id", "make_flat", "observation_layout",
           "suite_ids"]
