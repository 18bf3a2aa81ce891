"""Reading a run directory's files for comparisons: its CSV rows without the wall-clock columns, and the check
that two runs (e.g. resumed vs uninterrupted) wrote the same metrics, evaluations and last checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pathwise import checkpoint as ckpt

DROP = ("time", "steps_per_s")  # wall-clock columns; everything else must be reproducible


def rows(path, drop=DROP) -> list[dict[str, str]]:
    """The rows of a run's CSV file (metrics.csv, eval.csv) as strings, without the ``drop`` columns."""
    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def assert_same_run(a: Path, b: Path) -> None:
    """Runs ``a`` and ``b`` wrote the same metrics and evaluations and bit-identical last checkpoints."""
    assert rows(a / "metrics.csv") == rows(b / "metrics.csv")
    assert rows(a / "eval.csv") == rows(b / "eval.csv")
    a_arrays, b_arrays = (ckpt.read(d / "checkpoints" / "last.npz")[1] for d in (a, b))
    assert sorted(a_arrays) == sorted(b_arrays)
    for name in a_arrays:
        np.testing.assert_array_equal(a_arrays[name], b_arrays[name])
