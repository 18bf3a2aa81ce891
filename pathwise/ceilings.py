"""Optimal-control ceilings: what MPC with the true model scores on the real environment.

Every learned policy is compared to this reference (``summary.json``'s
``final_over_ceiling``; the learning-curve plots draw it as a dashed line). The
numbers are measured, not assumed: ``python benchmarks/bench_ceiling.py``
runs the controller on Gymnasium's own environment over 100 seeded episodes
(``reset(seed=i)``, i = 0..99) and rewrites ``ceilings.json`` beside this file.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

#: File (package data) holding the measured ceilings, written by ``benchmarks/bench_ceiling.py``.
FILE_NAME = "ceilings.json"


def table() -> dict[str, dict[str, Any]]:
    """Env id -> ``{"mean", "std", "episodes", "controller", "command", "date"}`` (empty if not measured)."""
    path = resources.files("pathwise") / FILE_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def ceiling(env_id: str) -> float | None:
    """Mean return of MPC on the true model for ``env_id`` (``pathwise/`` ids share the Gymnasium one's)."""
    data = table()
    if env_id in data:
        return float(data[env_id]["mean"])
    if env_id.startswith("pathwise/") and env_id.split("/", 1)[1] in data:
        return float(data[env_id.split("/", 1)[1]]["mean"])
    return None


#: Env id -> mean return (the measured ceilings as plain numbers).
CEILINGS: dict[str, float] = {k: float(v["mean"]) for k, v in table().items()}
