"""Gradient-estimator variance studies -> benchmarks/sections/30_estimators.md.

    python benchmarks/bench_estimators.py            # full: Gaussian σ sweep, Pendulum σ and horizon sweeps
    python benchmarks/bench_estimators.py --quick    # fewer repeats and sweep points
    python benchmarks/bench_estimators.py --from-json  # re-render the section only

Writes benchmarks/results/estimators.json, then benchmarks/sections/30_estimators.md (from
benchmarks/templates/30_estimators.md) and benchmarks/figures/estimators_*.png.

(a) the lecture's Gaussian example, x ~ N(μ = 1, σ²), f = x², ∂/∂μ: the score-function
variance grows like 1/σ² (log-log slope fitted on σ ≤ 0.1) while the pathwise one stays
bounded; (b) the return gradient of a linear Gaussian Pendulum policy through the true
dynamics, all estimators at equal budgets of rollouts.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from pathwise.estimators.studies import gaussian_study, pendulum_study

from common import finished, machine, options, publish  # benchmarks/common.py

HERE = Path(__file__).resolve().parent
PENDULUM_HORIZON, PENDULUM_SIGMA = 30, 0.3  # fixed while the other is swept
ROW_KEYS = ("estimator", "variance_per_sample", "cosine", "bias_norm", "reference_norm")


def rows_of(study: list[dict], param: str) -> list[dict]:
    """The table's columns of a study's rows, with the noise floor of ‖bias‖:
    sqrt(total variance / n_repeats), the RMS size of ‖mean ĝ − E ĝ‖ from sampling alone."""
    return [{param: r[param], **{k: r[k] for k in ROW_KEYS},
             "noise": float(np.sqrt(r["total_variance"] / r["n_repeats"]))} for r in study]


def measure(args: argparse.Namespace) -> dict:
    facts, quick = machine("equinox", "optax", "numpy"), args.quick
    out = Path(tempfile.mkdtemp(prefix="pathwise_estimators_"))
    t0 = time.time()
    gauss = gaussian_study(str(out), sigmas=tuple(np.logspace(-3, 0, 7 if quick else 10)),
                           n_repeats=200 if quick else 400)
    t_gauss = time.time() - t0
    budget = dict(n_samples=32, n_repeats=30 if quick else 100, reference_samples=5000 if quick else 20000)
    t0 = time.time()
    pend_sigma = pendulum_study(str(out), sweep_over="sigma", values=(0.1, 1.0) if quick else (0.03, 0.1, 0.3, 1.0),
                                horizon=PENDULUM_HORIZON, **budget)
    pend_h = pendulum_study(str(out), sweep_over="horizon", values=(10, 40) if quick else (5, 10, 20, 40, 80),
                            sigma=PENDULUM_SIGMA, **budget)
    t_pend = time.time() - t0
    keep_outputs(out, args.out)
    p = pend_sigma[0]
    return {"machine": finished(facts), "quick": quick, "seconds": {"gaussian": t_gauss, "pendulum": t_pend},
            "gaussian": {"n_samples": gauss[0]["n_samples"], "n_repeats": gauss[0]["n_repeats"],
                         "score_slope": gauss[0]["score_slope"], "rows": rows_of(gauss, "sigma")},
            "pendulum": {"reference": p["reference"], "n_samples": p["n_samples"], "n_repeats": p["n_repeats"],
                         "horizon": PENDULUM_HORIZON, "sigma": PENDULUM_SIGMA, "by_sigma": rows_of(pend_sigma, "sigma"),
                         "by_horizon": rows_of(pend_h, "horizon")}}


def keep_outputs(tmp: Path, out: Path | None) -> None:
    """The studies' figures to OUT/figures/, their CSV/markdown tables to OUT/out/estimators/ (not in git;
    OUT is benchmarks/ unless --out says otherwise); then remove their temporary folder."""
    figures = Path(out or HERE) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for name in ("estimators_gaussian.png", "estimators_pendulum_sigma.png", "estimators_pendulum_horizon.png"):
        shutil.copy(tmp / name, figures / name)
    raw = Path(out or HERE) / "out" / "estimators"
    raw.mkdir(parents=True, exist_ok=True)
    for path in tmp.iterdir():
        if path.suffix in (".csv", ".md"):
            shutil.copy(path, raw / path.name)
    shutil.rmtree(tmp)


def variances(rows: list[dict], estimator: str, sigma: float | None = None) -> list[float]:
    return [r["variance_per_sample"] for r in rows if r["estimator"] == estimator and sigma in (None, r["sigma"])]


def view(results: dict) -> dict:
    """The Gaussian sweep's σ range, the largest pathwise variance, score / pathwise at the smallest σ, and
    the range of the baseline's variance (``None`` where an estimator is missing)."""
    rows = results["gaussian"]["rows"]
    sigmas = sorted({r["sigma"] for r in rows})
    score, pathwise = variances(rows, "score", sigmas[0]), variances(rows, "pathwise", sigmas[0])
    baseline = variances(rows, "score_baseline")
    return {**results, "gaussian_rows": rows, "sigma_rows": results["pendulum"]["by_sigma"],
            "horizon_rows": results["pendulum"]["by_horizon"], "sigma_min": sigmas[0], "sigma_max": sigmas[-1],
            "pathwise_max": max(variances(rows, "pathwise")),
            "score_over_pathwise": score[0] / pathwise[0] if score and pathwise and pathwise[0] else None,
            "baseline": [min(baseline), max(baseline)] if baseline else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sweep points")
    publish(options(parser, "estimators").parse_args(), "estimators", "30_estimators", measure, view)


if __name__ == "__main__":
    main()
