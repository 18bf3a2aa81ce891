"""Every picture pathwise writes is written, and shows what it says: the learning curve's labelled, clipped band;
the solve plot's wrapped angles, action bounds and cost panel; the seeds' IQM with rliable's bootstrap interval;
the step and return drawn on rendered frames."""

from __future__ import annotations

import csv
import sys

import numpy as np
import pytest

from pathwise import plots
from pathwise.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def _evals(means, stds, every=100):
    return [{"env_steps": every * (i + 1), "eval_return_mean": m, "eval_return_std": s}
            for i, (m, s) in enumerate(zip(means, stds))]


def test_learning_curve_band_is_labelled_and_clipped_at_the_maximum_return(tmp_path):
    evals = _evals([-900.0, -400.0, -150.0, -120.0], [50.0, 300.0, 200.0, 20.0])
    fig = plots.learning_curve(evals, title="bptt on Pendulum-v1 (seed 0)", step_unit="simulated steps",
                               episodes=10, max_return=0.0, solved_at=-200.0, failure_below=-400.0,
                               stably_solved_at=300, ceiling=-140.0)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "mean ± 1 std over the 10 evaluation episodes, clipped at the maximum return 0" in labels
    assert any(t.startswith("first solved (300 steps)") for t in labels), labels
    assert any(t.startswith("solved from here on (300 steps)") for t in labels), labels
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].max() == 0.0  # -150 + 200 would be +50: a return Pendulum cannot give
    assert ax.get_xlabel() == "simulated steps"
    from pathwise.checkpoint import atomic_save_figure

    atomic_save_figure(fig, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == PNG


def test_a_curve_without_evaluations_is_still_written(tmp_path):
    fig = plots.learning_curve([], title="t", step_unit="env steps", episodes=10, solved_at=-200.0)
    assert any(t.get_text() == "no evaluation yet" for t in fig.axes[0].texts)


def test_a_single_evaluation_is_drawn_with_error_bars_and_a_hint():
    fig = plots.learning_curve(_evals([-900.0], [40.0]), title="t", step_unit="env steps", episodes=1)
    ax = fig.axes[0]
    assert any("--eval-every" in t.get_text() for t in ax.texts)
    assert ax.get_legend().get_texts()[0].get_text() == "mean ± 1 std over the 1 evaluation episode"


def test_solve_plot_wraps_angles_and_draws_bounds_and_the_cost_per_iteration(tmp_path):
    from pathwise import systems

    theta = np.linspace(np.pi, 2 * np.pi + 0.3, 31)  # hanging, swung over the top once: raw angles leave [-pi, pi]
    states = np.stack([theta, np.gradient(theta)], axis=1)
    fig = plots.solution_figure(systems.make("pendulum"), states, np.linspace(-2, 2, 30)[:, None], "ilqr",
                                cost_history=np.r_[900.0, 500.0, 420.0, 410.0, 0.0, 0.0], iterations=3)
    panel_states, panel_actions, panel_cost = fig.axes
    shown = panel_states.get_lines()[0].get_ydata()
    assert np.nanmax(np.abs(shown)) <= np.pi and np.isclose(shown[-1], 0.3, atol=1e-6)
    assert [ln.get_label() for ln in panel_states.get_lines()][:2] == ["θ (0 = upright) [rad, wrapped to ±π]",
                                                                      "dθ/dt"]
    assert any(ln.get_label() == "bounds [-2, 2]" for ln in panel_actions.get_lines())
    assert panel_cost.get_title() == "cost per iteration"
    assert panel_cost.get_lines()[0].get_ydata().tolist() == [900.0, 500.0, 420.0, 410.0]  # iterations 0..3
    assert main(["solve", "lqr", "--horizon", "20", "--out", str(tmp_path / "lqr")]) == 0  # finite-horizon LQR
    assert (tmp_path / "lqr" / "plot.png").read_bytes()[:8] == PNG  # (ilqr's: tests/test_cli_solve.py)


def _fake_run(path, steps, returns, metric=None):
    path.mkdir(parents=True)
    with open(path / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_steps", "eval_return_mean"])
        w.writerows(zip(steps, returns))
    if metric is not None:
        with open(path / "metrics.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["iteration", "env_steps", "loss"])
            w.writerows((i + 1, 10 * (i + 1), v) for i, v in enumerate(metric))
    return path


def test_seeds_aggregate_is_the_iqm_with_rliable_bootstrap_intervals(tmp_path):
    pytest.importorskip("rliable", reason="the aggregate curve over seeds uses rliable (the plots extra)")
    from scipy.stats import trim_mean

    rng = np.random.default_rng(0)
    steps = [100, 200, 300, 400]
    returns = rng.normal(-500, 100, size=(5, 4)).cumsum(axis=1) / 4
    dirs = [_fake_run(tmp_path / f"seed_{i}", steps, r, metric=rng.normal(size=30)) for i, r in enumerate(returns)]
    png = plots.aggregate_seeds(tmp_path, dirs, label="x on y", solved_at=-200.0, max_return=0.0)
    assert png.read_bytes()[:8] == PNG
    with open(tmp_path / "aggregate.csv") as f:
        rows = list(csv.DictReader(f))
    iqm = np.array([float(r["iqm"]) for r in rows])
    low, high = np.array([float(r["ci_low"]) for r in rows]), np.array([float(r["ci_high"]) for r in rows])
    np.testing.assert_allclose(iqm, trim_mean(returns, 0.25, axis=0), rtol=1e-5)
    assert np.all(low <= iqm) and np.all(iqm <= high) and np.all(high - low > 0)
    assert all(r["seeds"] == "5" for r in rows)


def test_seeds_evaluated_at_different_steps_are_interpolated_onto_one_grid():
    steps, values, interpolated = plots.align([(np.array([0.0, 10, 20]), np.array([0.0, 1, 2])),
                                               (np.array([0.0, 12, 24]), np.array([0.0, 2, 4]))])
    assert interpolated and steps.tolist() == [0.0, 10.0, 20.0]
    np.testing.assert_allclose(values, [[0, 1, 2], [0, 10 / 6, 20 / 6]])


def test_train_seeds_aggregate_without_rliable_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    from pathwise import cli

    for i in range(2):
        _fake_run(tmp_path / f"seed_{i}", [100, 200], [-300.0 - i, -200.0 + i])
    args = cli.TrainArgs(seeds=2)
    monkeypatch.setitem(sys.modules, "rliable", None)  # import rliable now fails as if not installed
    cli._write_aggregate(tmp_path, "bptt", "Pendulum-v1", args, [{"learner": {}}] * 2)
    out = capsys.readouterr().out
    assert "pip install \"pathwise[plots]\"" in out and not (tmp_path / "aggregate_curve.png").exists()


def test_rendered_frames_show_the_step_and_the_return(tmp_path):
    frames = [np.full((120, 160, 3), 255, np.uint8) for _ in range(3)]
    marked = plots.annotate_frames(frames, [-1.5, -2.25])
    corner = [m[:30, :, :] for m in marked]
    assert all((c < 128).any() for c in corner)  # dark text in the top-left band
    assert not np.array_equal(corner[1], corner[2])  # step 1, return -1.5 vs step 2, return -3.8
    assert (marked[0][60:] == 255).all()  # the rest of the frame is untouched
    from pathwise.render import render_episode

    gif = render_episode(lambda o: np.array([-2.0 * o[1]], np.float32), "Pendulum-v1", tmp_path / "e.gif", seed=0,
                         max_steps=12)
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 13
        im.seek(10)
        assert (np.asarray(im.convert("L"))[:20, :150] < 128).any()
