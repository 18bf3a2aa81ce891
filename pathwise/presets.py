"""Tuned hyperparameters per (algorithm, environment), shipped inside the package.

One TOML file per algorithm in ``pathwise/presets/`` (as RL Zoo keeps one
file per algorithm). Each file has a ``version`` and one table per
environment id; a table holds algorithm config keys plus optional run
settings prefixed with ``run.`` in a sub-table::

    version = 1

    ["Pendulum-v1"]
    lr = 3e-4
    horizon = 50

    ["Pendulum-v1".run]
    steps = 2000        # default training budget (environment steps)
    eval_every = 250    # evaluation interval (environment steps)

A table may build on another table of the same file: with ``extends = "ENV_ID"`` its values and run
settings are that table's (itself possibly extending a third), with its own keys on top::

    ["HalfCheetah-v5"]
    extends = "Hopper-v5"   # Hopper's recipe as it is
    horizon = 16            # but this

Presets are applied by default and overridden by ``--config FILE`` and
``--set key=value`` (in that order). A preset file of one's own in this format (``pathwise tune`` writes
one) replaces the shipped preset with ``pathwise train ALGO --env ID --preset-file FILE``
(:func:`load_file`; :func:`dumps` writes the format). They are read through an environment's
registry record (``pathwise.registry.EnvRecord.preset``), so a pathwise system
and the Gymnasium id it reproduces step for step share presets: a table for
``Pendulum-v1`` also serves ``pathwise/Pendulum-v1`` and vice versa (an exact
match wins).
"""

from __future__ import annotations

import json
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

PRESET_VERSION = 1
RUN_KEYS = ("steps", "eval_every", "eval_episodes")
#: The key by which a table builds on another table of the same file (see the module docstring).
EXTENDS = "extends"


def _file_name(algo: str) -> str:
    return algo.lower().replace("_", "-") + ".toml"


def _check_version(data: dict[str, Any], source: str) -> dict[str, Any]:
    if data.get("version") != PRESET_VERSION:
        raise ValueError(f"Preset file {source} has version {data.get('version')}, "
                         f"this pathwise reads version {PRESET_VERSION}.")
    return data


def _load(algo: str) -> dict[str, Any]:
    path = resources.files("pathwise") / "presets" / _file_name(algo)
    if not path.is_file():
        return {}
    return _check_version(tomllib.loads(path.read_text()), _file_name(algo))


def _split(data: dict[str, Any], env_id: str, source: str, chain: tuple[str, ...] = ()
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A preset table's ``(config values, run settings)``, those of the table it ``extends`` (if any) underneath
    its own; unknown run settings, a missing base table and a cycle of ``extends`` are refused."""
    table = dict(data.get(env_id, {}))
    run = dict(table.pop("run", {}))
    unknown = sorted(set(run) - set(RUN_KEYS))
    if unknown:
        raise ValueError(f"Preset {source}/{env_id} has unknown run settings {unknown}; valid: {list(RUN_KEYS)}.")
    if EXTENDS not in table:
        return table, run
    base = table.pop(EXTENDS)
    if not isinstance(base, str) or not isinstance(data.get(base), dict):
        tables = sorted(k for k, v in data.items() if isinstance(v, dict))
        raise ValueError(f"Preset {source}/{env_id} has {EXTENDS} = {base!r}, which is not a table of the same "
                         f"file; name one of {tables}.")
    if base in chain + (env_id,):
        raise ValueError(f"Preset {source}/{env_id}: {EXTENDS} makes a cycle ({' -> '.join(chain + (env_id, base))}); "
                         "write the values of one of these tables out.")
    base_values, base_run = _split(data, base, source, chain + (env_id,))
    return {**base_values, **table}, {**base_run, **run}


def load(algo: str, env_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config_overrides, run_settings)`` for ``algo`` on ``env_id`` (empty dicts if none)."""
    return _split(_load(algo), env_id, algo)


def load_file(path: str | Path, env_id: str, twin: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config values, run settings)`` of the table for ``env_id`` (else ``twin``) in a preset file of one's own.

    Errors name the file and the fix: a missing file, invalid TOML, another format version, no table for the
    environment.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--preset-file {path}: no such file (it is written by `pathwise tune`, or copy one "
                                "from pathwise/presets/).")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--preset-file {path} is not valid TOML ({exc}).") from exc
    _check_version(data, str(path))
    for key in (env_id, twin):
        if key is not None and isinstance(data.get(key), dict):
            return _split(data, key, str(path))
    tables = sorted(k for k, v in data.items() if isinstance(v, dict))
    raise ValueError(f"--preset-file {path} has no table for {env_id} (it has {tables or 'none'}); pass the --env "
                     "it was written for or add a [\"" + env_id + "\"] table.")


def _toml_value(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"preset key {key}={value}: TOML presets hold finite numbers only.")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the names configs use
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, key) for v in value) + "]"
    raise ValueError(f"preset key {key}={value!r}: a {type(value).__name__} cannot be written to a preset.")


def dumps(env_id: str, values: dict[str, Any], run: dict[str, Any], comment: str = "") -> str:
    """The text of a preset file with one table, ``env_id``'s (``values``) and its run settings (``run``).

    ``comment`` lines go at the top as TOML comments. The text is read back before it is returned, so a value
    TOML cannot hold is refused here, not when the file is used.
    """
    unknown = sorted(set(run) - set(RUN_KEYS))
    if unknown:
        raise ValueError(f"run settings {unknown} are not preset run settings; valid: {list(RUN_KEYS)}.")
    lines = [f"# {line}".rstrip() for line in comment.splitlines()] + [f"version = {PRESET_VERSION}", ""]
    lines += [f"[{json.dumps(env_id)}]"] + [f"{k} = {_toml_value(v, k)}" for k, v in values.items()]
    if run:
        lines += ["", f"[{json.dumps(env_id)}.run]"] + [f"{k} = {_toml_value(v, k)}" for k, v in run.items()]
    text = "\n".join(lines) + "\n"
    table, back = _split(tomllib.loads(text), env_id, "written preset")
    if table != {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()} or back != run:
        raise ValueError(f"preset for {env_id}: the values do not survive a TOML round trip ({values}).")
    return text


def available() -> dict[str, list[str]]:
    """Algorithm name -> environment ids with a preset."""
    out: dict[str, list[str]] = {}
    folder = resources.files("pathwise") / "presets"
    if not folder.is_dir():
        return out
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            data = tomllib.loads(entry.read_text())
            out[entry.name[:-5]] = sorted(k for k, v in data.items() if isinstance(v, dict))
    return out
