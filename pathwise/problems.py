"""Your own problem: what a user passes as an environment or a differentiable system, as an id pathwise trains on.

Everything downstream (the loops, evaluation, checkpoints, ``pathwise evaluate``) reaches an environment
through a Gymnasium id and its registry record (:mod:`pathwise.registry`). This module turns each accepted
form into such an id, registering it with Gymnasium and pathwise on first use:

==============================  ======================================================================
``env=``                        a Gymnasium or pathwise id (``Pendulum-v1``, ``pendulum``); a
                                ``gymnasium.Env`` instance; a zero-argument function or class that
                                returns one; a ``System`` (used through its Gymnasium wrapper, and
                                differentiable for the algorithms that need one); or the importable
                                string ``"package.module:name"`` of any of these
``system=``                     a pathwise id; a ``System`` instance; a ``System`` class or
                                zero-argument function returning one; or ``"package.module:name"``
==============================  ======================================================================

A user's environment is registered as ``own/<package.module.name>`` when it was given by an importable
string, else ``own/<ClassName>`` (``own/<ClassName>_2``, ... for further objects of the same class). The
importable string is kept in the run record (``env_source``), so a run is resumed, evaluated and loaded in
any process that can import it; a run of an object is so only in the process that made it. An importable
string is imported as Python imports (installed packages, ``PYTHONPATH``), and failing that from the
current directory, as ``python -m`` would.

Each user environment is checked once when registered: a Box observation space of one dimension with
finite-or-infinite bounds ``low <= high``, a Box (float, one dimension) or Discrete (starting at 0) action
space, and a first ``reset(seed=0)`` whose observation has the space's shape and is finite. An environment
without a time limit (no ``TimeLimit`` wrapper, no ``spec.max_episode_steps``) gets one of
``pathwise.spec.DEFAULT_MAX_EPISODE_STEPS`` (1000) steps, so that every episode ends.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import sys
from typing import Any, Callable

import numpy as np

from pathwise import registry
from pathwise.spec import DEFAULT_MAX_EPISODE_STEPS

#: Namespace of the Gymnasium ids of users' environments and systems.
NAMESPACE = "own/"

_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_ENV_FORMS = ("a Gymnasium id such as 'Pendulum-v1', a gymnasium.Env, a zero-argument function returning one, a "
              "pathwise System, or an importable 'package.module:name' of one of these")
_SYSTEM_FORMS = ("a pathwise system id such as 'pendulum', a pathwise System instance, a System class or "
                 "zero-argument function returning one, or an importable 'package.module:Class'")

_SOURCES: dict[str, str | None] = {}  # own id -> its importable string (None: given as an object)
_OBJECTS: list[tuple[Any, str]] = []  # (object given, own id): the same object gets the same id again


def is_import_path(value: Any) -> bool:
    """Whether ``value`` reads ``package.module:name`` (Gymnasium's ``module:Env-v0`` ids contain ``-``)."""
    return isinstance(value, str) and bool(_IMPORT_PATH.match(value))


def source(env_id: str) -> str | None:
    """The importable string ``env_id`` was registered from (what a run records to be rebuilt), else None."""
    return _SOURCES.get(env_id)


def is_own(env_id: str) -> bool:
    """Whether ``env_id`` names a user's environment or system (registered here, or recorded by a run)."""
    return isinstance(env_id, str) and env_id.startswith(NAMESPACE)


def env_id(env: Any, *, option: str = "env") -> str:
    """The Gymnasium id to train on for ``env`` (any form of the module docstring's table), registered if new."""
    if isinstance(env, str):
        if is_import_path(env):
            return _register(load_object(env, option), option, env, want_system=False)
        return _adopt_system_env(registry.check_id(registry.canonical_id(env)))
    if env is None or isinstance(env, (bytes, int, float, bool)):
        raise ValueError(f"{_what(option, env)}: an environment must be {_ENV_FORMS}.")
    return _register(env, option, None, want_system=False)


def system_id(system: Any, *, option: str = "system") -> str:
    """The Gymnasium id of the differentiable ``system`` (a pathwise id, a System, its class or factory, or an
    importable string), registered if new; anything that is not a ``System`` is refused with the fix."""
    if isinstance(system, str) and not is_import_path(system):
        found = registry.check_id(registry.canonical_id(system))
        rec = registry.record(found)
        if rec.system is None:
            raise ValueError(f"{_what(option, system)}: {found} is not a differentiable system (pathwise has no "
                             "System for it). `pathwise list` shows the systems; pass your own as "
                             "'package.module:Class' (a subclass of pathwise.systems.System), or train on it as an "
                             "environment (env=, --env) with a model-free or model-based algorithm.")
        return found if rec.native or rec.twin is None else rec.twin
    obj = load_object(system, option) if isinstance(system, str) else system
    return _register(obj, option, system if isinstance(system, str) else None, want_system=True)


def _adopt_system_env(found: str) -> str:
    """``found``, whose record gains its System when the user registered a ``SystemEnv`` under that id with
    Gymnasium (``gym.register(id, entry_point=lambda: SystemEnv(MySystem()))``), so bptt and friends can use it."""
    import gymnasium as gym

    from pathwise.systems import SystemEnv

    entry = gym.registry[found].entry_point
    if (registry.record(found).system is not None or (isinstance(entry, str) and entry.startswith("gymnasium."))
            or found.startswith(registry.DMC_PREFIX)):  # Gymnasium's and the Control Suite's own: no System inside
        return found
    try:
        env = gym.make(found)
    except Exception:  # noqa: BLE001  (what cannot be made here is reported where it is made for training)
        return found
    try:
        if isinstance(env.unwrapped, SystemEnv):
            _register_system_record(found, env.unwrapped.system, None)
    finally:
        env.close()
    return found


# -- importing ------------------------------------------------------------------------------------------------


def load_object(path: str, option: str) -> Any:
    """The object ``package.module:name`` names (a module in the current directory included), with an error that
    names ``option`` and the fix when it cannot be imported or has no such attribute."""
    module_name, _, attr = path.partition(":")
    module = _import(module_name, path, option)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n, None))]
            import difflib

            close = difflib.get_close_matches(part, names, n=3)
            hint = f" Did you mean {', '.join(f'{module_name}:{c}' for c in close)}?" if close else ""
            raise ValueError(f"{_what(option, path)}: module {module_name!r} ({getattr(module, '__file__', '?')}) "
                             f"has no attribute {attr!r}.{hint} Name a class or function defined there, as "
                             f"{module_name}:NAME.")
        obj = getattr(obj, part)
    return obj


def _import(module_name: str, path: str, option: str) -> Any:
    try:
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or module_name.split(".")[0] != exc.name.split(".")[0] or os.getcwd() in sys.path:
                raise
            sys.path.insert(0, os.getcwd())  # as `python -m` would: a module in the current directory
            return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.split(".")[0] == exc.name.split(".")[0]:
            raise ValueError(f"{_what(option, path)}: cannot import {module_name!r} ({exc}). Make it importable: "
                             "run from the folder that holds it, install its package (pip install -e .), or add "
                             "that folder to PYTHONPATH.") from None
        raise ValueError(f"{_what(option, path)}: importing {module_name!r} failed: {exc}. Install what it "
                         "imports, or fix the module.") from None
    except Exception as exc:  # the user's module raised while importing: say which and what
        raise ValueError(f"{_what(option, path)}: importing {module_name!r} raised {type(exc).__name__}: "
                         f"{_first_line(exc)}. Fix the module (`--debug` on the command line shows the "
                         "traceback).") from exc


# -- registering ----------------------------------------------------------------------------------------------


def _register(obj: Any, option: str, path: str | None, *, want_system: bool) -> str:
    """The own id of ``obj`` (an Env, a System, or a class/function building one), registering it if new."""
    import gymnasium as gym

    from pathwise.systems import System, SystemEnv

    what = _what(option, path if path is not None else obj)
    for known, own in _OBJECTS:
        if known is obj and _SOURCES.get(own) == path:
            if want_system and not registry.record(own).native:
                raise _not_a_system(what, "gymnasium.Env")
            return own
    factory = None if isinstance(obj, (System, gym.Env)) else obj
    if isinstance(obj, (System, gym.Env)) or (isinstance(obj, type) and issubclass(obj, System)):
        built = obj if factory is None else None  # a System class states its shapes: built when first needed
    elif callable(obj):
        built = _call(obj, what)
    else:
        raise ValueError(f"{what}: got a {type(obj).__name__}; {'a system' if want_system else 'an environment'} "
                         f"must be {_SYSTEM_FORMS if want_system else _ENV_FORMS}.")
    if isinstance(built, gym.Env) and isinstance(built.unwrapped, SystemEnv):  # to_gymnasium(system): the system
        built, factory, limit = built.unwrapped.system, None, _time_limit(built)
    else:
        limit = None
    is_system = built is None or isinstance(built, System)
    if want_system and not is_system:
        raise _not_a_system(what, type(built).__name__)
    if not is_system and not isinstance(built, gym.Env):
        raise ValueError(f"{what} returned a {type(built).__name__}, not a gymnasium.Env (or a pathwise System); "
                         "it must build the environment with no arguments, e.g. `def make(): return MyEnv()`.")
    own = _unique(_name(path, built if built is not None else factory))
    if is_system:
        _register_system(own, built, factory, limit)
    else:
        _register_env(own, built, factory, what)
    _SOURCES[own] = path
    _OBJECTS.append((obj, own))
    return own


def _not_a_system(what: str, kind: str) -> ValueError:
    return ValueError(f"{what} is a {kind}, not a differentiable pathwise System; an algorithm that backpropagates "
                      "through the dynamics needs them written in JAX as a subclass of pathwise.systems.System "
                      "(docs/guide.md, 'Your own environment or system'). A Gymnasium environment trains with "
                      "model-free and model-based algorithms: pass it as the environment (env=, --env).")


def _register_system(own: str, system: Any, factory: Any, limit: int | None) -> None:
    """Register a System as ``own``: a Gymnasium id (its ``SystemEnv``) and a record whose system it is."""
    import gymnasium as gym

    from pathwise.systems import SystemEnv
    from pathwise.systems.gym import _episode_length

    make = factory if factory is not None else (lambda: system)
    if limit is None:
        limit = system.episode_length if system is not None else _episode_length(factory)
    gym.register(id=own, entry_point=lambda: SystemEnv(make()), max_episode_steps=limit)
    _register_system_record(own, system, factory)


def _register_system_record(env_id: str, system: Any, factory: Any) -> None:
    """The registry record of a user's System: it *is* the environment; its reward and termination are known on
    observations where ``state_from_obs`` inverts ``observe``."""
    from pathwise import rewards

    make = factory if factory is not None else (lambda: system)
    known = rewards.observation_determines_state(system if system is not None else factory)
    task = _task_of_class(system if system is not None else factory)
    registry.add_own(registry.EnvRecord(env_id, system=make, own_system=True,
                                        reward=rewards.reward_from_system(make) if known else None,
                                        terminated=rewards.termination_from_system(make) if known else None,
                                        presets_of=task, state_names=registry.record(task).state_names if task else ()))


def _task_of_class(system: Any) -> str | None:
    """The pathwise id of the system class of ``system`` (an instance or the class): ``pathwise/Pendulum-v1`` for
    ``Pendulum(g=5.0)``, whose presets and start-state names (``pathwise evaluate``'s per-start report) then serve
    the user's system; None for a class of the user's own (a subclass too: its dynamics may differ)."""
    from pathwise import systems

    cls = system if isinstance(system, type) else type(system)
    return next((env_id for env_id, factory in systems.REGISTRY.items() if factory is cls), None)


def _register_env(own: str, env: Any, factory: Any, what: str) -> None:
    """Register a Gymnasium env as ``own`` (an instance: every make is a copy of it), after checking it."""
    import gymnasium as gym

    if factory is None:
        try:
            probe = copy.deepcopy(env)
        except Exception as exc:  # noqa: BLE001  (whatever the env's state refuses to copy)
            raise ValueError(f"{what}: pathwise makes several copies of an environment (training, evaluation) and "
                             f"this instance cannot be copied ({type(exc).__name__}: {_first_line(exc)}). Pass a "
                             "zero-argument function that builds it instead, e.g. env=lambda: MyEnv(...).") from None

        def make() -> gym.Env:
            return copy.deepcopy(env)
    else:
        probe, make = env, factory
    try:
        check_spaces(probe, what)
        limit = _time_limit(probe)
    finally:
        probe.close()
    # without a limit of its own an episode could run for ever (evaluation waits for its end): Gymnasium's TimeLimit
    gym.register(id=own, entry_point=make, max_episode_steps=limit or DEFAULT_MAX_EPISODE_STEPS)
    registry.add_own(registry.EnvRecord(own))


def check_spaces(env: Any, what: str) -> None:
    """Refuse, naming the fix, an environment whose spaces or first observation pathwise cannot train on."""
    from gymnasium import spaces

    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, spaces.Box):
        raise ValueError(f"{what}: the observation space is a {type(obs).__name__}; pathwise needs a Box of numbers "
                         "(wrap Dict/Tuple spaces with gymnasium.wrappers.FlattenObservation, or return a flat "
                         "float array from reset/step and declare spaces.Box(low, high, (n,), np.float32)).")
    if len(obs.shape) != 1 or not np.issubdtype(obs.dtype, np.number):
        raise ValueError(f"{what}: the observation space has shape {obs.shape} and dtype {obs.dtype}; pathwise "
                         "needs one flat vector of numbers (wrap the env with "
                         "gymnasium.wrappers.FlattenObservation, or declare spaces.Box(low, high, (n,), np.float32)).")
    _check_box(obs, "observation", what)
    if isinstance(act, spaces.Discrete):
        if int(act.start) != 0:
            raise ValueError(f"{what}: the Discrete action space starts at {act.start}; pathwise's policies pick "
                             f"actions 0..n-1, so declare spaces.Discrete({act.n}) and shift the action in step().")
    elif isinstance(act, spaces.Box):
        if len(act.shape) != 1 or not np.issubdtype(act.dtype, np.floating):
            raise ValueError(f"{what}: the action space has shape {act.shape} and dtype {act.dtype}; pathwise's "
                             "continuous policies output one flat float vector, so declare "
                             "spaces.Box(low, high, (n,), np.float32) and reshape it in step() if needed.")
        _check_box(act, "action", what)
    else:
        raise ValueError(f"{what}: the action space is a {type(act).__name__}; pathwise needs a Box (continuous) "
                         "or Discrete action space (MultiDiscrete/Dict actions: flatten them into one of these).")
    _check_first_observation(env, obs, what)


def _check_box(space: Any, kind: str, what: str) -> None:
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    if np.any(np.isnan(low)) or np.any(np.isnan(high)) or np.any(low > high):
        raise ValueError(f"{what}: the {kind} space's bounds low={low} high={high} contain NaN or low > high; "
                         "declare bounds with low <= high (use -np.inf/np.inf where a value is unbounded).")


def _check_first_observation(env: Any, space: Any, what: str) -> None:
    try:
        obs, _ = env.reset(seed=0)
    except Exception as exc:  # the user's reset: name it and the contract
        raise ValueError(f"{what}: reset(seed=0) raised {type(exc).__name__}: {_first_line(exc)}. reset must "
                         "accept seed= and options= keywords and return (observation, info).") from exc
    obs = np.asarray(obs)
    if obs.shape != space.shape or not np.all(np.isfinite(obs.astype(np.float64, copy=False))):
        raise ValueError(f"{what}: reset(seed=0) returned an observation of shape {obs.shape} ({obs.ravel()[:6]}), "
                         f"but the observation space has shape {space.shape}; return a finite array of that shape "
                         "(or fix observation_space).")


def _time_limit(env: Any) -> int | None:
    """The episode cap of ``env``: its ``TimeLimit`` wrapper's, else its spec's, else None."""
    from gymnasium.wrappers import TimeLimit

    inner = env
    while inner is not None:
        if isinstance(inner, TimeLimit):
            return int(inner._max_episode_steps)
        inner = getattr(inner, "env", None)
    spec = getattr(env, "spec", None)
    return getattr(spec, "max_episode_steps", None)


def _call(factory: Callable[[], Any], what: str) -> Any:
    try:
        return factory()
    except Exception as exc:  # the user's factory: name it and the contract
        raise ValueError(f"{what}: calling it with no arguments raised {type(exc).__name__}: {_first_line(exc)}. "
                         "Pass a function or class that builds the environment or system with no arguments "
                         "(e.g. functools.partial(MyEnv, size=5)).") from exc


def _name(path: str | None, obj: Any) -> str:
    if path is not None:
        return path.replace(":", ".")
    cls = obj if isinstance(obj, type) else type(getattr(obj, "unwrapped", obj))
    return re.sub(r"[^\w.]", "_", cls.__name__)


def _unique(name: str) -> str:
    import gymnasium as gym

    own, n = NAMESPACE + name, 1
    while own in gym.registry:
        n += 1
        own = f"{NAMESPACE}{name}_{n}"
    return own


def _what(option: str, value: Any) -> str:
    """How an error names what was given: ``--env mypkg:make`` on the command line, ``env='mypkg:make'`` in Python."""
    if option.startswith("--"):
        return f"{option} {value}" if isinstance(value, str) else option
    return f"{option}={value!r}" if isinstance(value, str) else f"{option}={_short(value)}"


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def not_resumable(env_id: str, where: str) -> ValueError:
    """The error for a run of an object (no importable string recorded) opened in a process that lacks it."""
    return ValueError(f"{where}: the run's environment {env_id!r} was given as a Python object (an instance or a "
                      "function), which another process cannot rebuild. Load or continue it in the process that "
                      "trained it, or train with an importable string (env='mypkg.envs:make', --env "
                      "mypkg.envs:make; --system mypkg.sys:MySystem) so the run can be resumed anywhere.")


__all__ = ["NAMESPACE", "check_spaces", "env_id", "is_import_path", "is_own", "not_resumable", "source",
           "system_id"]
