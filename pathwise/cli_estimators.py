"""``pathwise estimators {gaussian,pendulum}``: the gradient-estimator variance studies from the command line."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Literal

import tyro

from pathwise import helptext

STUDY_SUMMARIES = (
    ("gaussian", "d/dmu E[f(x)], x ~ N(mu, sigma^2): score function vs pathwise vs finite differences as sigma -> 0"),
    ("pendulum", "gradient of a Pendulum policy's return through the true dynamics, sweeping sigma or the horizon"),
)

USAGE = helptext.page("pathwise estimators STUDY [options]",
                      "Variance of gradient estimators at equal sample budgets (table + plot).",
                      [helptext.section("studies", STUDY_SUMMARIES)],
                      "Run 'pathwise estimators STUDY --help' for a study's options.")


@dataclasses.dataclass(frozen=True)
class GaussianArgs:
    """The lecture's Gaussian example: the score-function variance grows like 1/sigma^2, the pathwise one stays bounded."""

    out: str = "runs/estimators"
    """Directory for estimators_gaussian.{csv,md,png}."""
    mu: float = 1.0
    """Mean of the Gaussian (the parameter differentiated)."""
    sigmas: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    """Standard deviations swept."""
    f: str = "square"
    """Integrand f(x) (square has a closed-form score-function variance, drawn on the plot)."""
    n_samples: int = 16
    """Samples per gradient estimate (the equal budget)."""
    n_repeats: int = 400
    """Independent estimates per point (the variance is measured over them)."""
    seed: int = 0
    """Random seed."""


@dataclasses.dataclass(frozen=True)
class PendulumArgs:
    """Score function vs pathwise vs finite differences for the return of a linear Gaussian Pendulum policy."""

    out: str = "runs/estimators"
    """Directory for estimators_pendulum_{sweep}.{csv,md,png}."""
    sweep: Literal["sigma", "horizon"] = "sigma"
    """What to sweep: the policy noise sigma or the horizon."""
    values: tuple[float, ...] | None = None
    """Values of the swept parameter (default: 0.03 0.1 0.3 1 for sigma; 5 10 20 40 80 for the horizon)."""
    sigma: float = 0.3
    """Policy noise when sweeping the horizon."""
    horizon: int = 30
    """Horizon when sweeping sigma."""
    n_samples: int = 32
    """Trajectories per gradient estimate."""
    n_repeats: int = 100
    """Independent estimates per point."""
    reference_samples: int = 20_000
    """Pathwise samples of the high-accuracy reference gradient."""
    seed: int = 0
    """Random seed (also picks the fixed random policy)."""


COLUMNS = ("estimator", "total_variance", "variance_per_sample", "bias_norm", "cosine")


def _print(rows: list[dict], param: str) -> None:
    head = [param, *COLUMNS]
    print("  ".join(f"{h:>19s}" for h in head))
    for r in rows:
        cells = [r[param], *(r.get(c, float("nan")) for c in COLUMNS)]
        print("  ".join(f"{c:>19.4g}" if isinstance(c, float) else f"{str(c):>19s}" for c in cells))


def _progress(study: str, count: int, unit: str):
    """The study's progress, one step per swept value (each compiles and runs every estimator)."""
    from pathwise.progress import Progress

    print(f"estimators {study}: {count} {unit}, each compiled and run for every estimator", flush=True)
    return Progress(count, desc=f"estimators {study}", unit=unit)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    study, rest = argv[0], argv[1:]
    from pathwise.estimators import studies

    studies_args = {"gaussian": GaussianArgs, "pendulum": PendulumArgs}
    if study in studies_args and helptext.has_help(rest):
        cls = studies_args[study]
        print(helptext.page(f"pathwise estimators {study} [options]", cls.__doc__ or "",
                            [helptext.section("options", helptext.options(cls))]), end="")
        return 0
    if study == "gaussian":
        a = tyro.cli(GaussianArgs, args=rest, prog="pathwise estimators gaussian")
        with _progress("gaussian", len(a.sigmas), "sigma values") as bar:
            rows = studies.gaussian_study(a.out, mu=a.mu, sigmas=a.sigmas, f_name=a.f, n_samples=a.n_samples,
                                          n_repeats=a.n_repeats, seed=a.seed, progress=lambda i, n: bar.update(i))
        _print(rows, "sigma")
        print(f"score-function variance vs sigma: log-log slope {rows[0]['score_slope']:.2f} (theory: -2)")
        stem = Path(a.out) / "estimators_gaussian"
    elif study == "pendulum":
        a = tyro.cli(PendulumArgs, args=rest, prog="pathwise estimators pendulum")
        count = len(a.values) if a.values is not None else (4 if a.sweep == "sigma" else 5)  # the study's defaults
        with _progress(f"pendulum ({a.sweep})", count, f"{a.sweep} values") as bar:
            rows = studies.pendulum_study(a.out, sweep_over=a.sweep, values=a.values, sigma=a.sigma,
                                          horizon=a.horizon, n_samples=a.n_samples, n_repeats=a.n_repeats,
                                          reference_samples=a.reference_samples, seed=a.seed,
                                          progress=lambda i, n: bar.event(i))
        _print(rows, a.sweep)
        stem = Path(a.out) / f"estimators_pendulum_{a.sweep}"
    else:
        print(f"pathwise estimators: unknown study {study!r}; choose gaussian or pendulum.", file=sys.stderr)
        return 2
    print(f"table: {stem}.md, {stem}.csv; plot: {stem}.png")
    return 0
