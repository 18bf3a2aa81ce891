"""``pathwise evaluate``'s per-start report (``pathwise.starts``) on hand-written returns: which start states
fail, as a table, a line of failing starts and a CSV file."""

import csv

import numpy as np
import pytest

from pathwise import registry, starts
from pathwise.envs import reset_states


def _rows(thetas, returns):
    return [{"episode": i, "seed": 10_000 + i, "theta0": t, "theta_dot0": 0.1 * i, "return": r, "length": 200,
             "failed": r < -400} for i, (t, r) in enumerate(zip(thetas, returns))]


def test_per_start_sets_each_start_beside_its_return():
    returns = np.array([-120.0, -650.0, -390.0])
    rows = starts.per_start("Pendulum-v1", returns, np.array([200, 200, 200]), 10_000)
    expected = reset_states("Pendulum-v1", 3, 10_000)  # what evaluate's episodes start from
    assert [list(r) for r in rows] == [["episode", "seed", "theta0", "theta_dot0", "return", "length", "failed"]] * 3
    assert np.allclose([[r["theta0"], r["theta_dot0"]] for r in rows], expected)
    assert [r["seed"] for r in rows] == [10_000, 10_001, 10_002] and [r["failed"] for r in rows] == [0, 1, 0]
    # no start state known (CartPole): seed, return, length, failed
    rows = starts.per_start("CartPole-v1", [500.0, 120.0], [500, 120], 7)
    assert rows == [{"episode": 0, "seed": 7, "return": 500.0, "length": 500, "failed": False},
                    {"episode": 1, "seed": 8, "return": 120.0, "length": 120, "failed": True}]


def test_table_marks_the_failing_starts_and_their_range():
    text = starts.format_table(_rows([0.1, 1.3, 2.7], [-120.0, -650.0, -420.0]), "Pendulum-v1")
    lines = text.splitlines()
    assert lines[0] == "per start state (Pendulum-v1, return below -400 fails):"
    assert lines[1].split() == ["seed", "theta0", "theta_dot0", "return"]
    assert lines[2].split() == ["10000", "+0.100", "+0.000", "-120.0"]
    assert lines[3].split() == ["10001", "+1.300", "+0.100", "-650.0", "FAIL"] and lines[4].endswith("FAIL")
    assert lines[5] == "failing starts: 2 of 3 episodes below -400, theta0 +1.30..+2.70, theta_dot0 +0.10..+0.20"
    assert starts.format_table(_rows([0.1], [-10.0]), "Pendulum-v1").endswith("failing starts: none of 1 "
                                                                              "episodes below -400")


def test_a_long_table_lists_only_the_failing_starts_ordered_by_start():
    thetas = np.linspace(-3, 3, 25)
    returns = [-700.0 if 1.2 <= t <= 2.8 else -150.0 for t in thetas]
    lines = starts.format_table(_rows(thetas, returns), "Pendulum-v1").splitlines()
    n = sum(r < -400 for r in returns)
    assert f"the {n} failing of 25 episodes by theta0 (every episode: --per-start-csv FILE)" in lines[0]
    shown = [float(line.split()[1]) for line in lines[2:-1]]
    assert len(shown) == n and shown == sorted(shown) and all(1.2 <= t <= 2.8 for t in shown)


def test_csv_has_every_episode(tmp_path):
    rows = _rows([0.1, 1.3], [-120.0, -650.0])
    starts.write_csv(rows, tmp_path / "s.csv")
    with open(tmp_path / "s.csv") as f:
        read = list(csv.DictReader(f))
    assert [r["seed"] for r in read] == ["10000", "10001"] and [r["failed"] for r in read] == ["False", "True"]
    assert float(read[1]["theta0"]) == 1.3 and not list(tmp_path.glob(".*.tmp"))


def test_start_state_names_that_do_not_fit_the_state_are_refused():
    registry.register("pathwise/Pendulum-v1", state_names=("theta",), overwrite=True)
    try:
        with pytest.raises(ValueError, match=r"names 1 start-state entries \('theta',\), but env.unwrapped.state "
                                             r"holds \(2,\); register the right names"):
            starts.per_start("pathwise/Pendulum-v1", [-1.0], [200], 0)
    finally:
        registry.unregister("pathwise/Pendulum-v1")


def test_a_long_table_without_failures_is_two_lines():
    text = starts.format_table(_rows(np.linspace(-3, 3, 25), [-150.0] * 25), "Pendulum-v1")
    assert text.splitlines() == ["per start state (Pendulum-v1, return below -400 fails): 25 episodes (every "
                                 "episode: --per-start-csv FILE)",
                                 "failing starts: none of 25 episodes below -400"]
