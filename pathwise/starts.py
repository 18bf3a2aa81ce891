"""Evaluation per start state: which starts a policy fails from (``pathwise evaluate``'s report).

A mean return hides a local optimum: a pendulum policy that swings up from most starts but ends off-centre
from the starts at theta0 in +1.2..+2.8 rad scores a fair mean with a sixth of its episodes failing. For an
environment whose record names its start state (``EnvRecord.state_names``: ``env.unwrapped.state`` after
``reset``), :func:`per_start` sets each evaluation episode's start beside its return and whether the return is
below the task's failure line (``EnvRecord.failure_below``); :func:`format_table` prints it, :func:`write_csv`
saves it.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import numpy as np

from pathwise import registry

#: Above this many episodes the printed table lists only the failing starts (the CSV has every episode).
MAX_TABLE_ROWS = 20


def per_start(env_id: str, returns: Any, lengths: Any, seed: int) -> list[dict[str, Any]]:
    """One row per evaluation episode ``i`` (``reset(seed=seed + i)``): ``episode``, ``seed``, the start state's
    entries (``<name>0`` for each of the record's ``state_names``, if any), ``return``, ``length`` and, where the
    task has a failure line, ``failed`` (the return is below it)."""
    from pathwise.envs import reset_states

    rec = registry.record(env_id)
    returns = np.asarray(returns, np.float64)
    states = reset_states(env_id, len(returns), seed) if rec.state_names else np.zeros((len(returns), 0))
    if states.shape[1:] != (len(rec.state_names),):
        raise ValueError(f"{env_id}: the registry names {len(rec.state_names)} start-state entries "
                         f"{rec.state_names}, but env.unwrapped.state holds {states.shape[1:]}; register the right "
                         "names with pathwise.registry.register(env_id, state_names=(...), overwrite=True).")
    rows = []
    for i, (ret, length, state) in enumerate(zip(returns, lengths, states)):
        row = {"episode": i, "seed": seed + i, **{f"{n}0": float(v) for n, v in zip(rec.state_names, state)},
               "return": float(ret), "length": int(length)}
        if rec.failure_below is not None:
            row["failed"] = bool(ret < rec.failure_below)
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], env_id: str) -> str:
    """The per-start report as text: a table (every episode up to ``MAX_TABLE_ROWS``, else the failing ones) and a
    line listing the failing starts with the range of each start-state entry over them."""
    rec = registry.record(env_id)
    names = [f"{n}0" for n in rec.state_names]
    failing = [r for r in rows if r.get("failed")]
    line = f"return below {rec.failure_below:g} fails" if rec.failure_below is not None else "no failure line known"
    head, shown = f"per start state ({env_id}, {line}):", rows
    if len(rows) > MAX_TABLE_ROWS:  # the failing ones, ordered by their start so that a cluster shows
        shown = sorted(failing, key=lambda r: tuple(r[n] for n in names))
        listed = (f"the {len(failing)} failing of {len(rows)} episodes{' by ' + names[0] if names else ''}" if failing
                  else f"{len(rows)} episodes")
        head = head[:-1] + f": {listed} (every episode: --per-start-csv FILE)"
    widths = [max(len(n), 7) for n in names]
    out = [head] + (["  " + "  ".join([f"{'seed':>6}", *(f"{n:>{w}}" for n, w in zip(names, widths)),
                                       f"{'return':>9}"])] if shown else [])
    for r in shown:
        cells = [f"{r['seed']:>6}", *(f"{r[n]:>+{w}.3f}" for n, w in zip(names, widths)), f"{r['return']:>9.1f}"]
        out.append("  " + "  ".join(cells) + ("  FAIL" if r.get("failed") else ""))
    if rec.failure_below is not None:
        out.append(_failing_line(failing, len(rows), names, rec.failure_below))
    return "\n".join(out)


def _failing_line(failing: list[dict[str, Any]], total: int, names: list[str], line: float) -> str:
    if not failing:
        return f"failing starts: none of {total} episodes below {line:g}"
    ranges = ", ".join(f"{n} {min(r[n] for r in failing):+.2f}..{max(r[n] for r in failing):+.2f}" for n in names)
    return f"failing starts: {len(failing)} of {total} episodes below {line:g}" + (f", {ranges}" if ranges else "")


def write_csv(rows: list[dict[str, Any]], path: str | os.PathLike) -> None:
    """The per-start rows as CSV (written atomically: a temporary file renamed into place)."""
    from pathwise.checkpoint import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


__all__ = ["MAX_TABLE_ROWS", "format_table", "per_start", "write_csv"]
