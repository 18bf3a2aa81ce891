"""Optimal-control ceilings, per evaluation episode: the best known return from each start state.

Runs evaluate their policies on a fixed set of episodes: episode ``i`` is
``env.reset(seed=EVALUATION_SEED + i)`` (``pathwise.train`` uses ``EVALUATION_SEED``
for every run unless told otherwise). For each of the first ``episodes`` of them,
``ceilings.json`` (beside this file, written by ``python benchmarks/bench_ceiling.py``)
holds the Gymnasium return of the best trajectory that trajectory optimization
with the true model finds from that episode's initial state: a multi-start,
full-horizon iLQR solve whose guesses include the trajectory of long-horizon
MPC (so it is never worse than that MPC), tracked with iLQR's feedback gains in
Gymnasium's own environment.
A policy is compared with the ceiling on the *same* episodes
(:func:`episode_ceilings`; ``summary.json``'s ``ceiling`` and
``final_over_ceiling``). It is the best return found, not a proven optimum: a
policy that beats it on an episode shows a better trajectory exists there.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import numpy as np

#: File (package data) holding the measured ceilings, written by ``benchmarks/bench_ceiling.py``.
FILE_NAME = "ceilings.json"

#: Episode ``i`` of every run's evaluation (and of the ceiling table) is ``reset(seed=EVALUATION_SEED + i)``.
EVALUATION_SEED = 10_000


def table() -> dict[str, dict[str, Any]]:
    """Env id -> ``{"seed", "episodes", "returns", "mean", "std", "method", "command", "date"}`` (empty if
    nothing was measured); ``returns[i]`` is the ceiling of the episode reset with ``seed + i``."""
    path = resources.files("pathwise") / FILE_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def entry(env_id: str, *also: str | None) -> dict[str, Any] | None:
    """The table's entry for ``env_id`` or, failing that, for the first of ``also`` that has one (a twin)."""
    data = table()
    for name in (env_id, *also):
        if name in data:
            return data[name]
    return None


def episode_ceilings(env_id: str, seed: int, episodes: int, *also: str | None) -> np.ndarray | None:
    """The ceilings of the episodes ``reset(seed=seed + i)``, i < ``episodes``, or None when the table does not
    cover all of them (another evaluation seed, more episodes than were measured, or no entry). ``also``: other
    ids to look under, only where their resets draw the same start states."""
    found = entry(env_id, *also)
    if found is None or "returns" not in found:
        return None
    first = int(seed) - int(found["seed"])
    returns = np.asarray(found["returns"], np.float64)
    if first < 0 or episodes < 1 or first + episodes > returns.size:
        return None
    return returns[first:first + episodes]


__all__ = ["EVALUATION_SEED", "FILE_NAME", "entry", "episode_ceilings", "table"]
