"""Gradient-estimator variance studies -> benchmarks/sections/30_estimators.md.

    python benchmarks/bench_estimators.py            # full: Gaussian σ sweep, Pendulum σ and horizon sweeps
    python benchmarks/bench_estimators.py --quick    # fewer repeats and sweep points

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

HERE = Path(__file__).resolve().parent
SECTION = HERE / "sections" / "30_estimators.md"
FIGURES = HERE / "figures"


def versions() -> str:
    import equinox
    import jax
    import optax

    return f"jax {jax.__version__}, equinox {equinox.__version__}, optax {optax.__version__}, numpy {np.__version__}"


def table(rows: list[dict], param: str) -> list[str]:
    lines = [f"| {param} | estimator | variance of a 1-sample estimate | cosine to reference "
             "| ‖bias‖ (vs ‖g_ref‖) | noise in ‖bias‖ |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r[param]:.3g} | {r['estimator']} | {r['variance_per_sample']:.4g} | {r['cosine']:.3f} | "
                     f"{r['bias_norm']:.3g} ({r['reference_norm']:.3g}) | {mean_noise(r):.3g} |")
    return lines


def mean_noise(r: dict) -> float:
    """RMS size of ‖mean ĝ − E ĝ‖ from sampling alone: sqrt(total variance / n_repeats)."""
    return float(np.sqrt(r["total_variance"] / r["n_repeats"]))


def ratio_line(rows: list[dict], param: str, value: float) -> str:
    by = {r["estimator"]: r["variance_per_sample"] for r in rows if r[param] == value}
    if "score" not in by or "pathwise" not in by or by["pathwise"] == 0:
        return ""
    return f"- at {param} = {value:g}: score / pathwise variance = {by['score'] / by['pathwise']:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sweep points")
    args = parser.parse_args()
    quick = args.quick
    out = Path(tempfile.mkdtemp(prefix="pathwise_estimators_"))
    t0 = time.time()
    gauss = gaussian_study(str(out), sigmas=tuple(np.logspace(-3, 0, 7 if quick else 10)),
                           n_repeats=200 if quick else 400)
    t_gauss = time.time() - t0
    common = dict(n_samples=32, n_repeats=30 if quick else 100, reference_samples=5000 if quick else 20000)
    t0 = time.time()
    sigmas = (0.1, 1.0) if quick else (0.03, 0.1, 0.3, 1.0)
    pend_sigma = pendulum_study(str(out), sweep_over="sigma", values=sigmas, horizon=30, **common)
    pend_h = pendulum_study(str(out), sweep_over="horizon", values=(10, 40) if quick else (5, 10, 20, 40, 80),
                            sigma=0.3, **common)
    t_pend = time.time() - t0
    for name in ("estimators_gaussian.png", "estimators_pendulum_sigma.png", "estimators_pendulum_horizon.png"):
        shutil.copy(out / name, FIGURES / name)
    raw = HERE / "out" / "estimators"  # the studies' CSV/markdown tables (ignored by git)
    raw.mkdir(parents=True, exist_ok=True)
    for path in out.iterdir():
        if path.suffix in (".csv", ".md"):
            shutil.copy(path, raw / path.name)
    shutil.rmtree(out)
    command = "python benchmarks/bench_estimators.py" + (" --quick" if quick else "")
    SECTION.write_text("\n".join(section(command, gauss, pend_sigma, pend_h, t_gauss, t_pend)) + "\n")
    print(f"wrote {SECTION}")


def baseline_line(rows: list[dict]) -> str:
    v = [r["variance_per_sample"] for r in rows if r["estimator"] == "score_baseline"]
    if not v:
        return ""
    return (f"- score function with the leave-one-out mean baseline: variance between {min(v):.3g} and {max(v):.3g} "
            "over the sweep (f(x) − b ≈ f'(μ) σ (z − z̄) cancels the 1/σ for a smooth f)")


def section(command, gauss, pend_sigma, pend_h, t_gauss, t_pend) -> list[str]:
    slope = gauss[0]["score_slope"]
    sig = sorted({r["sigma"] for r in gauss})
    path_max = max(r["variance_per_sample"] for r in gauss if r["estimator"] == "pathwise")
    return [
        "## Gradient estimators: variance at equal sample budgets",
        "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d', time.gmtime())}  ",
        "Machine: 2-core CPU container, no GPU; shared with other jobs during this run  ",
        f"Versions: {versions()}  ",
        f"Wall-clock (incl. compilation, shared machine): Gaussian {t_gauss:.0f} s, Pendulum {t_pend:.0f} s",
        "",
        "Protocol (`pathwise.estimators.compare`): each estimator gives `n_repeats` independent estimates, each "
        "from the same budget of `n_samples` evaluations of F(θ, ξ) (for finite differences: coordinate-wise "
        "central differences over max(1, n/2d) common noise draws, or n/2 random Gaussian directions). "
        "\"variance of a 1-sample estimate\" = n_samples × Σ_i Var(ĝ_i); cosine = mean over repeats of "
        "cos(ĝ, g_ref); ‖bias‖ = ‖mean ĝ − g_ref‖ over the repeats, which is never exactly 0 for an unbiased "
        "estimator: \"noise in ‖bias‖\" = sqrt(Σ_i Var(ĝ_i) / n_repeats) is its expected size from sampling alone "
        "(a ‖bias‖ a few times larger on the Pendulum rows reflects the heavy-tailed per-rollout gradients of a "
        "chaotic system, whose variance 100 repeats underestimate; unbiasedness itself is tested against closed "
        "forms and finite differences in `tests/test_estimators.py` and `tests/test_estimator_studies.py`). "
        "`score_baseline` uses the leave-one-out mean of the other "
        "samples' returns (per time step) as the baseline.",
        "",
        "### (a) Gaussian: x ~ N(μ = 1, σ²), f(x) = x², g = ∂/∂μ E[f] = 2μ (closed-form reference)",
        "",
        f"n_samples = {gauss[0]['n_samples']}, n_repeats = {gauss[0]['n_repeats']}, σ from {sig[0]:g} to "
        f"{sig[-1]:g}.",
        "",
        f"- score-function variance vs σ, log-log slope fitted on σ ≤ 0.1: **{slope:.3f}** (lecture: 1/σ², "
        "slope −2; exact variance μ⁴/σ² + 14μ² + 15σ², dashed in the plot)",
        f"- pathwise variance stays bounded: at most {path_max:.3g} over the sweep (exactly 4σ² for f = x²)",
        ratio_line(gauss, "sigma", sig[0]),
        baseline_line(gauss),
        "",
        *table(gauss, "sigma"),
        "",
        "![Gaussian study](../figures/estimators_gaussian.png)",
        "",
        "### (b) Pendulum-v1: return gradient of a linear Gaussian policy through the true dynamics",
        "",
        "Policy a = W o + b + σ ξ (4 parameters, fixed random W, b), random initial states from "
        "`Pendulum.reset`, undiscounted H-step return. Pathwise = backprop through `pw.rollout.rollout` "
        "with explicit policy noise; score function = Σ_t ∇ log π(a_t|s_t) × reward-to-go; reference = "
        f"{pend_sigma[0]['reference']} samples. "
        f"n_samples = {pend_sigma[0]['n_samples']} rollouts per estimate, n_repeats = {pend_sigma[0]['n_repeats']}.",
        "",
        "Sweep over σ (H = 30):",
        "",
        *table(pend_sigma, "sigma"),
        "",
        "![Pendulum σ sweep](../figures/estimators_pendulum_sigma.png)",
        "",
        "Sweep over the horizon H (σ = 0.3):",
        "",
        *table(pend_h, "horizon"),
        "",
        "![Pendulum horizon sweep](../figures/estimators_pendulum_horizon.png)",
    ]


if __name__ == "__main__":
    main()
