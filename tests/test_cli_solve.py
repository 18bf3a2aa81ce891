"""`pathwise solve`: every method runs with tiny budgets, writes its outputs, and rejects bad input clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pathwise.cli_solve import main


def test_lqr_infinite_and_finite(capsys, tmp_path):
    assert main(["lqr", "--out", str(tmp_path / "inf")]) == 0
    out = capsys.readouterr().out
    assert "u = -K x" in out
    K = np.array(json.loads((tmp_path / "inf" / "summary.json").read_text())["K"])
    assert K.shape == (1, 2) and np.all(K > 0)
    assert main(["lqr", "--horizon", "10"]) == 0
    assert "finite-horizon LQR" in capsys.readouterr().out


def test_ilqr_writes_solution_summary_and_plot(capsys, tmp_path):
    assert main(["ilqr", "--horizon", "20", "--iterations", "5", "--out", str(tmp_path)]) == 0
    assert "ilqr on Pendulum, horizon 20" in capsys.readouterr().out
    data = np.load(tmp_path / "solution.npz")
    assert data["states"].shape == (21, 2) and data["actions"].shape == (20, 1) and data["K"].shape == (20, 1, 2)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["iterations"] <= 5 and np.isfinite(summary["cost"])
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_the_final_angle_is_printed_wrapped(capsys, tmp_path):
    """A swing-up that ends a full turn away from upright (theta = -2 pi + 0.09) is upright: it is printed as 0.09."""
    import re

    assert main(["ilqr", "--horizon", "20", "--iterations", "3", "--x0", "-6.0", "0.0", "--out", str(tmp_path)]) == 0
    printed = re.search(r"final state \[(\S+), (\S+)\] \(angles wrapped to \[-pi, pi\)\)", capsys.readouterr().out)
    summary = json.loads((tmp_path / "summary.json").read_text())
    theta, wrapped = summary["final_state"][0], float(printed.group(1))
    assert -np.pi <= wrapped < np.pi and summary["final_state_wrapped"][0] == pytest.approx(wrapped, abs=1e-4)
    assert np.cos(theta) == pytest.approx(np.cos(wrapped), abs=1e-3) and np.sin(theta) == pytest.approx(
        np.sin(wrapped), abs=1e-3)


def test_shooting_mpc_and_conditioning_run(capsys):
    assert main(["shooting", "--horizon", "10", "--iterations", "5", "--x0", "0.5", "0.0"]) == 0
    assert main(["mpc", "--steps", "5", "--mpc-horizon", "5", "--iterations", "5", "--x0", "0.2", "0.0"]) == 0
    assert main(["conditioning", "--horizon", "10", "--iterations", "3"]) == 0
    out = capsys.readouterr().out
    assert "shooting on Pendulum" in out and "MPC (iLQR" in out and "ilqr" in out


def test_bad_input_is_named(capsys):
    assert main(["lqg"]) == 2
    assert "Did you mean 'lqr'" in capsys.readouterr().err
    assert main(["ilqr", "--system", "cartpole", "--horizon", "5"]) == 2
    assert "discrete actions" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["ilqr", "--x0", "1", "2", "3"], "pathwise solve ilqr: --x0 needs 2 numbers for Pendulum, got 3"),
    (["lqr", "--system", "cartpoleswingup"], "not a LinearSystem"),
    (["lqr", "--system", "pendulum"], "--system pendulum: Pendulum is not a LinearSystem"),  # was: the double integrator
    (["lqr", "--horizon", "-5"], "--horizon -5: the horizon is a number of steps >= 1"),  # was: infinite horizon
    (["ilqr", "--horizon", "0"], "--horizon 0"),
    (["shooting", "--iterations", "0"], "--iterations 0: must be >= 1"),
    (["mpc", "--mpc-horizon", "0"], "--mpc-horizon 0: must be >= 1"),
    (["mpc", "--episodes", "-1"], "--episodes -1: must be >= 0"),
    (["mpc", "--system", "doubleintegrator", "--episodes", "1", "--steps", "2", "--mpc-horizon", "2",
      "--iterations", "2"], "reproduces no Gymnasium env; drop --episodes"),
])
def test_errors_are_printed_not_swallowed(argv, message, capsys):
    """Every refusal reaches the user as text on stderr with exit code 2 (not a silent SystemExit)."""
    assert main(argv) == 2
    assert message in capsys.readouterr().err
