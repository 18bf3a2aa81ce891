"""Optimal-control ceilings: what MPC with the true model scores on the real environment.

Every learned policy is compared to this reference (``summary.json``'s
``final_over_ceiling``; the learning-curve plots draw it as a dashed line); it is
read through an environment's registry record (``pathwise.registry.record(env_id).ceiling``,
which a ``pathwise/`` twin shares). The numbers are measured, not assumed:
``python benchmarks/bench_ceiling.py`` runs the controller on Gymnasium's own environment over 100 seeded episodes
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
