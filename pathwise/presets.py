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

Presets are applied by default and overridden by ``--config FILE`` and
``--set key=value`` (in that order). They are read through an environment's
registry record (``pathwise.registry.EnvRecord.preset``), so a pathwise system
and the Gymnasium id it reproduces step for step share presets: a table for
``Pendulum-v1`` also serves ``pathwise/Pendulum-v1`` and vice versa (an exact
match wins).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

PRESET_VERSION = 1
RUN_KEYS = ("steps", "eval_every", "eval_episodes")


def _file_name(algo: str) -> str:
    return algo.lower().replace("_", "-") + ".toml"


def _load(algo: str) -> dict[str, Any]:
    path = resources.files("pathwise") / "presets" / _file_name(algo)
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text())
    if data.get("version") != PRESET_VERSION:
        raise ValueError(f"Preset file {_file_name(algo)} has version {data.get('version')}, "
                         f"this pathwise reads version {PRESET_VERSION}.")
    return data


def load(algo: str, env_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config_overrides, run_settings)`` for ``algo`` on ``env_id`` (empty dicts if none)."""
    data = _load(algo)
    table = dict(data.get(env_id, {}))
    run = dict(table.pop("run", {}))
    unknown = sorted(set(run) - set(RUN_KEYS))
    if unknown:
        raise ValueError(f"Preset {algo}/{env_id} has unknown run settings {unknown}; valid: {list(RUN_KEYS)}.")
    return table, run


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
