"""Pictures of results: solved trajectories, curves aggregated over seeds, annotated episode frames.

Every figure is a ``matplotlib.figure.Figure`` saved with ``fig.savefig`` (through
:func:`pathwise.checkpoint.atomic_save_figure`), never pyplot, so plotting does not touch the global
backend. The learning curve of one run is drawn by the training driver (``pathwise.train``).

Curves over several seeds use ``rliable`` (the ``plots`` extra): the interquartile mean (IQM) of the
seeds' evaluation returns at each evaluation and its stratified-bootstrap 95% confidence interval, the
aggregate Agarwal et al. (2021, "Deep RL at the edge of the statistical precipice") recommend for a
few runs.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pathwise.checkpoint import atomic_save_figure, atomic_write_text

#: State entries of the built-in systems: a label per entry and which entries are angles (drawn wrapped to
#: [-pi, pi), so a swing-up that ends upright after a full turn reads 0, not 2 pi). Other systems get x0, x1, ...
STATE_LAYOUT: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "Pendulum": (("θ (0 = upright)", "dθ/dt"), (0,)),
    "CartPole": (("x", "dx/dt", "θ (0 = upright)", "dθ/dt"), (2,)),
    "CartPoleSwingUp": (("x", "dx/dt", "θ (0 = upright)", "dθ/dt"), (2,)),
    "Acrobot": (("θ1", "θ2", "dθ1/dt", "dθ2/dt"), (0, 1)),
    "AcrobotContinuous": (("θ1", "θ2", "dθ1/dt", "dθ2/dt"), (0, 1)),
    "MountainCarContinuous": (("position", "velocity"), ()),
}

RLIABLE_MISSING = ("the aggregate curve over seeds (IQM with bootstrap 95% confidence intervals) needs rliable; "
                   "install it with pip install \"pathwise[plots]\" and run pathwise.plots.aggregate_seeds on the "
                   "run directory, or compare the seeds' own learning_curve.png files.")


def wrap_angle(x: np.ndarray) -> np.ndarray:
    """Angles in [-pi, pi)."""
    return (np.asarray(x) + np.pi) % (2 * np.pi) - np.pi


def state_layout(system: Any) -> tuple[list[str], tuple[int, ...]]:
    """``(names, angle_entries)`` for plotting a system's state: a label per state entry (with its unit or
    convention, e.g. "θ (0 = upright)") and the indices that are angles, for the built-in systems; ``x0, x1, ...``
    and no angles for any other system (or one whose ``state_dim`` does not match)."""
    names, angles = STATE_LAYOUT.get(getattr(system, "name", ""), ((), ()))
    dim = int(getattr(system, "state_dim", len(names)))
    return ([*names] if len(names) == dim else [f"x{i}" for i in range(dim)]), (angles if len(names) == dim else ())


# -- one run ------------------------------------------------------------------------------------------------


def learning_curve(evals: Sequence[dict[str, Any]], *, title: str, step_unit: str, episodes: int,
                   max_return: float | None = None, ceiling: float | None = None, solved_at: float | None = None,
                   failure_below: float | None = None, stably_solved_at: int | None = None):
    """A run's evaluations (``Trainer.evals``): the mean return over the evaluation episodes with a band of one
    standard deviation (clipped at the environment's maximum return: no episode returns more), the optimal-control
    ceiling, the solved and failure lines, the first solve (a star) and the step from which it stayed solved."""
    from matplotlib.figure import Figure

    steps = np.array([r["env_steps"] for r in evals], float)
    mean = np.array([r["eval_return_mean"] for r in evals])
    std = np.array([r["eval_return_std"] for r in evals])
    high = mean + std if max_return is None else np.minimum(mean + std, max_return)
    band = f"mean ± 1 std over the {episodes} evaluation episode{'s' if episodes != 1 else ''}"
    band += f", clipped at the maximum return {max_return:g}" if max_return is not None else ""
    fig = Figure(figsize=(7, 4.4))
    ax = fig.add_subplot()
    if len(steps) == 0:  # logs written before the first evaluation (an interrupted run)
        ax.text(0.5, 0.5, "no evaluation yet", transform=ax.transAxes, ha="center", color="0.4")
    elif len(steps) < 3:  # a band needs a few points to be seen
        ax.errorbar(steps, mean, yerr=[std, high - mean], fmt="o", capsize=6, label=band)
        ax.set_xlim(steps[0] - max(1.0, 0.05 * steps[-1]), steps[-1] + max(1.0, 0.05 * steps[-1]))
        ax.text(0.02, 0.02, f"{len(steps)} evaluation{'s' if len(steps) != 1 else ''}: a smaller --eval-every "
                "draws a curve", transform=ax.transAxes, fontsize=8, color="0.4")
    else:
        ax.plot(steps, mean, marker="o", ms=3, label="mean return")
        ax.fill_between(steps, mean - std, high, alpha=0.2, label=band)
    if ceiling is not None:
        ax.axhline(ceiling, color="k", ls="--", lw=1, label=f"optimal-control ceiling {ceiling:.1f} (same episodes)")
    if solved_at is not None:
        ax.axhline(solved_at, color="g", ls=":", lw=1, label=f"solved ({solved_at:g})")
        reached = np.flatnonzero(mean >= solved_at)
        if len(reached):
            first = reached[0]
            ax.plot(steps[first], mean[first], "*", color="g", ms=12, zorder=3,
                    label=f"first solved ({steps[first]:,.0f} steps)")
        if stably_solved_at is not None:
            ax.axvline(stably_solved_at, color="g", lw=1.5, alpha=0.6,
                       label=f"solved from here on ({stably_solved_at:,} steps)")
    if failure_below is not None:
        ax.axhline(failure_below, color="r", ls=":", lw=1, label=f"an episode below {failure_below:g} failed")
    ax.set(xlabel=step_unit, ylabel=f"evaluation return ({episodes} episode{'s' if episodes != 1 else ''})",
           title=title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="x-small")
    fig.tight_layout()
    return fig


# -- solved trajectories --------------------------------------------------------------------------------------


def solution_figure(system: Any, states: Any, actions: Any, title: str, *, cost_history: Any = None,
                    iterations: int | None = None, rewards: Any = None):
    """States (angles wrapped), actions with the system's bounds, and the cost per solver iteration (or, without
    one, the reward per step): one labelled panel each."""
    from matplotlib.figure import Figure

    states, actions = np.asarray(states), np.asarray(actions).reshape(len(actions), -1)
    names, angles = state_layout(system)
    third = cost_history is not None or rewards is not None
    fig = Figure(figsize=(14 if third else 9.5, 3.8))
    axes = fig.subplots(1, 3 if third else 2)
    _states_panel(axes[0], states, names, angles)
    _actions_panel(axes[1], actions, system)
    if cost_history is not None:
        hist = np.asarray(cost_history)[: (int(iterations) + 1) if iterations is not None else None]
        axes[2].plot(np.arange(len(hist)), hist, marker=".", label="cost J (= -return)")
        axes[2].set(title="cost per iteration", xlabel="solver iteration", ylabel="cost",
                    yscale="log" if np.all(hist > 0) else "linear")
        axes[2].annotate(f"final {hist[-1]:.4g}", (len(hist) - 1, hist[-1]), textcoords="offset points",
                         xytext=(-5, 8), ha="right", fontsize=8)
        axes[2].legend(fontsize="small")
    elif rewards is not None:
        r = np.asarray(rewards)
        axes[2].plot(r, label="reward per step")
        axes[2].plot(np.cumsum(r) / max(len(r), 1), ls="--", label="running mean reward")
        axes[2].set(title=f"reward (return {r.sum():.1f})", xlabel="step t", ylabel="reward")
        axes[2].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _states_panel(ax: Any, states: np.ndarray, names: list[str], angles: tuple[int, ...]) -> None:
    t = np.arange(len(states))
    for i, name in enumerate(names):
        x = wrap_angle(states[:, i]) if i in angles else states[:, i]
        if i in angles:  # no vertical line where the angle jumps from pi to -pi
            x = np.where(np.abs(np.diff(x, prepend=x[0])) > np.pi, np.nan, x)
        ax.plot(t, x, label=name + (" [rad, wrapped to ±π]" if i in angles else ""))
    if angles:
        for y in (-np.pi, np.pi):
            ax.axhline(y, color="0.6", lw=0.6, ls=":")
    ax.set(title="states", xlabel="step t")
    ax.legend(fontsize="small", loc="best")


def _actions_panel(ax: Any, actions: np.ndarray, system: Any) -> None:
    t = np.arange(len(actions))
    for j in range(actions.shape[1]):
        ax.step(t, actions[:, j], where="post", label=f"u{j}" if actions.shape[1] > 1 else "action u")
    low, high = getattr(system, "action_low", None), getattr(system, "action_high", None)
    if low is not None and high is not None and np.all(np.isfinite(np.asarray(low))):
        lo, hi = float(np.min(low)), float(np.max(high))
        ax.axhline(hi, color="r", ls="--", lw=1, label=f"bounds [{lo:g}, {hi:g}]")
        ax.axhline(lo, color="r", ls="--", lw=1)
        pad = 0.08 * (hi - lo)
        ax.set_ylim(min(lo, np.min(actions)) - pad, max(hi, np.max(actions)) + pad)
    ax.set(title="actions", xlabel="step t")
    ax.legend(fontsize="small", loc="best")


def save_solution(path: str | os.PathLike, system: Any, states: Any, actions: Any, title: str, **extra: Any) -> None:
    """Write :func:`solution_figure` of ``states`` ``(T + 1, state_dim)`` and ``actions`` ``(T, action_dim)``
    as a PNG at ``path``, atomically; ``extra`` (``cost_history``, ``iterations``, ``rewards``) goes to it."""
    atomic_save_figure(solution_figure(system, states, actions, title, **extra), path)


# -- curves over seeds ----------------------------------------------------------------------------------------


def read_evals(run_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(env_steps, mean return)`` of a run directory's evaluations (its eval.csv)."""
    with open(Path(run_dir) / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return (np.array([float(r["env_steps"]) for r in rows]), np.array([float(r["eval_return_mean"]) for r in rows]))


#: Training metrics an aggregate figure shows beside the evaluations, the first one every seed logged.
TRAINING_METRICS = ("mean_return", "episode_return", "loss", "actor_loss")
#: At most this many points of a training metric go into the bootstrap (evenly spaced iterations).
MAX_METRIC_POINTS = 200


def read_metric(run_dir: str | os.PathLike) -> tuple[str, np.ndarray, np.ndarray] | None:
    """``(name, env_steps, values)`` of the first of :data:`TRAINING_METRICS` in a run's metrics.csv, or None."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for name in TRAINING_METRICS:
        if rows and name in rows[0]:
            ok = [r for r in rows if r.get(name) not in (None, "")]
            return name, np.array([float(r["env_steps"]) for r in ok]), np.array([float(r[name]) for r in ok])
    return None


def align(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, bool]:
    """The seeds' curves on one grid of steps: ``(steps, returns[seed, step], interpolated)``.

    Seeds evaluated at the same steps (the simulated loop, fixed-length episodes) are stacked as they are;
    otherwise each is interpolated linearly onto the evaluation steps of the seed with the fewest, within
    the range every seed covers.
    """
    if all(len(s) == len(curves[0][0]) and np.array_equal(s, curves[0][0]) for s, _ in curves):
        return curves[0][0], np.stack([r for _, r in curves]), False
    lo, hi = max(s[0] for s, _ in curves), min(s[-1] for s, _ in curves)
    grid = min((s for s, _ in curves), key=len)
    grid = grid[(grid >= lo) & (grid <= hi)]
    if len(grid) == 0:
        grid = np.array([hi])
    return grid, np.stack([np.interp(grid, s, r) for s, r in curves]), True


def iqm_with_ci(returns: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """IQM over seeds at each step and its stratified-bootstrap 95% interval (``rliable``): ``(iqm, ci[2, step])``."""
    import warnings

    from rliable import library as rly
    from scipy.stats import trim_mean

    scores = {"run": returns[:, None, :]}  # (seeds, tasks = 1, steps)

    def iqm(s: np.ndarray) -> np.ndarray:  # rliable's metrics.aggregate_iqm at every step in one call
        return trim_mean(s[:, 0, :], proportiontocut=0.25, axis=0)

    with warnings.catch_warnings():  # arch deprecates RandomState, the only seed rliable passes on
        warnings.simplefilter("ignore", FutureWarning)
        point, interval = rly.get_interval_estimates(scores, iqm, reps=reps,
                                                     random_state=np.random.RandomState(seed))
    return np.asarray(point["run"]), np.asarray(interval["run"])


def aggregate_seeds(root: str | os.PathLike, run_dirs: Sequence[str | os.PathLike], *, label: str,
                    step_unit: str = "environment steps", solved_at: float | None = None,
                    max_return: float | None = None) -> Path:
    """Write ``root/aggregate_curve.png`` and ``root/aggregate.csv``: the IQM over the seeds in ``run_dirs`` and
    its bootstrap 95% confidence interval at each evaluation, with every seed's own curve faintly behind.

    Raises ``ImportError`` (``name="rliable"``) with :data:`RLIABLE_MISSING`'s advice when ``rliable`` is not
    installed or does not import.
    """
    try:
        from rliable import library  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(RLIABLE_MISSING, name="rliable") from exc
    except Exception as exc:  # installed, but its dependencies do not import (arch 7 under pandas 3)
        raise ImportError(f"rliable is installed but does not import ({type(exc).__name__}: {exc}); "
                          + RLIABLE_MISSING, name="rliable") from exc
    from matplotlib.figure import Figure

    root = Path(root)
    steps, returns, interpolated = align([read_evals(d) for d in run_dirs])
    point, ci = iqm_with_ci(returns)
    if max_return is not None:  # no return exceeds the maximum: neither does an interval of them
        ci = np.minimum(ci, max_return)
    metrics = [read_metric(d) for d in run_dirs]
    metric = metrics[0][0] if all(m is not None and m[0] == metrics[0][0] for m in metrics) else None
    fig = Figure(figsize=(12 if metric else 6.5, 4.2))
    axes = fig.subplots(1, 2 if metric else 1, squeeze=False)[0]
    _aggregate_panel(axes[0], steps, returns, point, ci, "evaluation return (mean over episodes)")
    if solved_at is not None:
        axes[0].axhline(solved_at, color="g", ls=":", lw=1, label=f"solved ({solved_at:g})")
    axes[0].set(xlabel=step_unit + (" (seeds interpolated onto one grid)" if interpolated else ""),
                title=f"{label}: evaluations")
    axes[0].legend(loc="best", fontsize="x-small")
    if metric:
        m_steps, m_values, _ = align([(s, v) for _, s, v in metrics])
        keep = np.unique(np.linspace(0, len(m_steps) - 1, min(len(m_steps), MAX_METRIC_POINTS)).astype(int))
        m_point, m_ci = iqm_with_ci(m_values[:, keep])
        _aggregate_panel(axes[1], m_steps[keep], m_values[:, keep], m_point, m_ci,
                         f"training metric {metric} (per iteration)")
        axes[1].set(xlabel=step_unit, title="training (not an evaluation)")
        axes[1].legend(loc="best", fontsize="x-small")
    fig.tight_layout()
    atomic_save_figure(fig, root / "aggregate_curve.png")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["env_steps", "iqm", "ci_low", "ci_high", "seeds"])
    w.writerows([[f"{s:g}", f"{p:.6g}", f"{lo:.6g}", f"{hi:.6g}", len(returns)]
                 for s, p, lo, hi in zip(steps, point, ci[0], ci[1])])
    atomic_write_text(root / "aggregate.csv", buf.getvalue())
    return root / "aggregate_curve.png"


def _aggregate_panel(ax: Any, steps: np.ndarray, values: np.ndarray, point: np.ndarray, ci: np.ndarray,
                     ylabel: str) -> None:
    """Each seed faintly, the IQM, and its interval (a band, or error bars when there are too few points for one)."""
    for i, v in enumerate(values):
        ax.plot(steps, v, color="0.6", lw=0.8, alpha=0.6, marker="." if len(steps) < 3 else None,
                label="each seed" if i == 0 else None)
    label, ci_label = f"IQM over {len(values)} seeds", "95% bootstrap CI (rliable)"
    if len(steps) < 3:
        ax.errorbar(steps, point, yerr=[point - ci[0], ci[1] - point], fmt="o", color="C0", capsize=6,
                    label=f"{label}, {ci_label}")
        ax.set_xlim(steps[0] - max(1.0, 0.05 * steps[-1]), steps[-1] + max(1.0, 0.05 * steps[-1]))
    else:
        ax.plot(steps, point, color="C0", label=label)
        ax.fill_between(steps, ci[0], ci[1], color="C0", alpha=0.25, label=ci_label)
    ax.set_ylabel(ylabel)


# -- episode frames -------------------------------------------------------------------------------------------


def annotate_frames(frames: Sequence[np.ndarray], rewards: Sequence[float]) -> list[np.ndarray]:
    """Each frame with its step and the return so far written in its top-left corner (frame ``t`` follows
    ``t`` steps, so frame 0 shows return 0)."""
    from PIL import Image, ImageDraw, ImageFont

    returns = np.concatenate([[0.0], np.cumsum(np.asarray(rewards, float))])
    size = max(12, np.asarray(frames[0]).shape[0] // 28)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    out = []
    for t, frame in enumerate(frames):
        image = Image.fromarray(np.asarray(frame)).convert("RGB")
        draw = ImageDraw.Draw(image)
        text = f"step {t}/{len(frames) - 1}   return {returns[min(t, len(returns) - 1)]:.1f}"
        left, top, right, bottom = draw.textbbox((6, 4), text, font=font)
        draw.rectangle((left - 3, top - 2, right + 3, bottom + 2), fill=(255, 255, 255))
        draw.text((6, 4), text, fill=(0, 0, 0), font=font)
        out.append(np.asarray(image))
    return out


__all__ = ["learning_curve", "RLIABLE_MISSING", "STATE_LAYOUT", "aggregate_seeds", "align", "annotate_frames", "iqm_with_ci",
           "read_evals", "save_solution", "solution_figure", "state_layout", "wrap_angle"]
