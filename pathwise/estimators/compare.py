"""Variance diagnostics: estimators side by side at equal sample budgets.

For each applicable estimator, ``n_repeats`` independent estimates, each from a
budget of ``n_samples`` evaluations of F(θ, ξ), give

- ``bias_norm`` ‖mean(ĝ) − g_ref‖ and ``total_variance`` Σ_i Var(ĝ_i) (per-coordinate in ``variance``),
- ``variance_per_sample`` = n · total_variance (the variance of a one-sample estimate),
- ``cosine``: mean over repeats of cos(ĝ, g_ref), the fraction of the step pointing the right way,

where g_ref is a closed-form gradient when given (``reference`` column "given"), else a high-sample reference
(pathwise if the objective is reparameterizable, otherwise score function with a
mean baseline). ``sweep`` repeats this over σ, τ, horizon, ... and the table and
plot writers make CSV/markdown/PNG.
"""

from __future__ import annotations

import csv
import functools
import os
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from pathwise.estimators.finite_difference import finite_difference_estimate
from pathwise.estimators.objective import StochasticObjective
from pathwise.estimators.reparam import pathwise_estimate
from pathwise.estimators.score_function import score_function_estimate
from pathwise.types import PRNGKey, PyTree

Estimator = Callable[[StochasticObjective, PyTree, PRNGKey, int], PyTree]

ESTIMATORS: dict[str, Estimator] = {
    "score": functools.partial(score_function_estimate, baseline="none"),
    "score_baseline": functools.partial(score_function_estimate, baseline="mean"),
    "pathwise": functools.partial(pathwise_estimate, check=False),
    "finite_difference": finite_difference_estimate,
    "random_fd": functools.partial(finite_difference_estimate, random_directions=True),
}
NEEDS_REPARAM = ("pathwise",)


def applicable(objective: StochasticObjective, names: Sequence[str]) -> list[str]:
    """The estimators (by name) that apply: pathwise only for reparameterizable objectives."""
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        raise ValueError(f"compare: unknown estimators {unknown}; choose from {sorted(ESTIMATORS)}.")
    return [n for n in names if objective.reparameterizable or n not in NEEDS_REPARAM]


def repeated_estimates(objective: StochasticObjective, estimator: Estimator, params: PyTree, key: PRNGKey,
                       n_samples: int, n_repeats: int) -> np.ndarray:
    """``(n_repeats, d)`` flattened estimates, each from its own key (one jitted vmap)."""
    run = jax.jit(jax.vmap(lambda k: ravel_pytree(estimator(objective, params, k, n_samples))[0]))
    return np.asarray(run(jax.random.split(key, n_repeats)), np.float64)


def reference_gradient(objective: StochasticObjective, params: PyTree, key: PRNGKey, n: int,
                       chunk: int = 1000) -> np.ndarray:
    """A high-sample estimate (mean of ``ceil(n / chunk)`` chunks, computed one chunk at a time)."""
    name = "pathwise" if objective.reparameterizable else "score_baseline"
    chunks = max(1, -(-n // chunk))
    estimates = repeated_estimates(objective, ESTIMATORS[name], params, key, min(n, chunk), chunks)
    return estimates.mean(axis=0)


def summarize(name: str, estimates: np.ndarray, reference: np.ndarray, n_samples: int) -> dict[str, Any]:
    """One table row from the repeated estimates of one estimator."""
    mean, variance = estimates.mean(axis=0), estimates.var(axis=0, ddof=1)
    norms = np.linalg.norm(estimates, axis=1) * np.linalg.norm(reference)
    cosines = np.where(norms > 0, estimates @ reference / np.maximum(norms, 1e-300), 0.0)
    return {"estimator": name, "n_samples": n_samples, "n_repeats": len(estimates),
            "bias_norm": float(np.linalg.norm(mean - reference)), "total_variance": float(variance.sum()),
            "variance_per_sample": float(n_samples * variance.sum()), "cosine": float(cosines.mean()),
            "reference_norm": float(np.linalg.norm(reference)), "variance": variance.tolist()}


def compare(objective: StochasticObjective, params: PyTree, estimators: Sequence[str] = tuple(ESTIMATORS),
            n_samples: int = 64, n_repeats: int = 100, reference_samples: int = 100_000, *,
            key: PRNGKey | None = None, reference: PyTree | None = None) -> list[dict[str, Any]]:
    """Mean, variance and cosine to the reference of each applicable estimator at equal budgets (rows of dicts)."""
    if n_samples < 1 or n_repeats < 2:
        raise ValueError(f"compare: need n_samples >= 1 and n_repeats >= 2, got {n_samples}, {n_repeats}.")
    key = jax.random.PRNGKey(0) if key is None else key
    k_ref, k_est = jax.random.split(key)
    if reference is not None:
        ref, ref_desc = np.asarray(ravel_pytree(reference)[0], np.float64), "given"
    else:
        ref = reference_gradient(objective, params, k_ref, reference_samples)
        ref_desc = f"{'pathwise' if objective.reparameterizable else 'score_baseline'} x{reference_samples}"
    rows = []
    for i, name in enumerate(applicable(objective, estimators)):
        est = repeated_estimates(objective, ESTIMATORS[name], params, jax.random.fold_in(k_est, i), n_samples,
                                 n_repeats)
        rows.append({**summarize(name, est, ref, n_samples), "reference": ref_desc})
    return rows


def sweep(param_name: str, values: Sequence[float], build: Callable[[float], tuple[StochasticObjective, PyTree,
          PyTree | None]], progress: Callable[[int, int], None] | None = None,
          **compare_kwargs) -> list[dict[str, Any]]:
    """``compare`` at each value of a setting; ``build(value) -> (objective, params, reference or None)``.

    ``progress(done, total)`` is called after each value (a command's progress display)."""
    rows = []
    for i, value in enumerate(values):
        objective, params, reference = build(value)
        for row in compare(objective, params, reference=reference, **compare_kwargs):
            rows.append({param_name: float(value), **row})
        if progress is not None:
            progress(i + 1, len(values))
    return rows


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


TABLE_COLUMNS = ("estimator", "n_samples", "n_repeats", "bias_norm", "total_variance", "variance_per_sample",
                 "cosine", "reference_norm", "reference")


def write_table(rows: Sequence[dict[str, Any]], path_stem: str) -> tuple[str, str]:
    """Write ``<stem>.csv`` and ``<stem>.md`` (scalar columns only); returns both paths."""
    cols = [c for c in rows[0] if c not in TABLE_COLUMNS and c != "variance"] + list(TABLE_COLUMNS)
    os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
    with open(path_stem + ".csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    with open(path_stem + ".md", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path_stem + ".csv", path_stem + ".md"


def plot_sweep(rows: Sequence[dict[str, Any]], param_name: str, path: str, title: str = "",
               extra_lines: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None) -> str:
    """Two panels against ``param_name`` (log x): variance per sample (log y) and cosine to the reference."""
    import matplotlib.ticker
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))  # not pyplot: the user's backend stays as it is
    ax_v, ax_c = fig.subplots(1, 2)
    for name in dict.fromkeys(r["estimator"] for r in rows):
        sel = [r for r in rows if r["estimator"] == name]
        x = [r[param_name] for r in sel]
        ax_v.plot(x, [max(r["variance_per_sample"], 1e-30) for r in sel], "o-", label=name)
        ax_c.plot(x, [r["cosine"] for r in sel], "o-", label=name)
    for label, (x, y) in (extra_lines or {}).items():
        ax_v.plot(x, y, "k--", lw=1, label=label)
    ax_v.set(xscale="log", yscale="log", xlabel=param_name, ylabel="variance of a 1-sample estimate")
    low = min(-0.1, min(r["cosine"] for r in rows) - 0.05)
    ax_c.set(xscale="log", xlabel=param_name, ylabel=f"cosine to reference (n={rows[0]['n_samples']})",
             ylim=(low, 1.05))
    values = sorted({float(r[param_name]) for r in rows})
    if all(v == int(v) for v in values):  # integer sweeps (horizon): tick exactly the swept values
        for ax in (ax_v, ax_c):
            ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax_v.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
