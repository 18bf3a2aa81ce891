"""Progress is plain text when not on a terminal (no carriage returns in a log), a tqdm bar on one, with one rate;
a simulated-loop budget that is not a whole number of iterations is stated before the run, and a run of whole
episodes that ends past its budget says so after it, its progress counting the steps it took."""

from __future__ import annotations

import io
import json

from cli_tiny import train_argv
from pathwise.cli import main
from pathwise.progress import Progress

TINY_BPTT = ["--set", "updates_per_iteration=2", "batch_size=4", "horizon=10", "hidden=8"]


def test_training_output_is_plain_lines_when_not_a_terminal_and_the_overshoot_is_stated(tmp_path, capsys,
                                                                                       monkeypatch):
    monkeypatch.setenv("PATHWISE_QUIET", "0")  # conftest quiets progress; this test is about it
    out = tmp_path / "run"
    assert main(["train", "bptt", "--env", "Pendulum-v1", "--steps", "10", "--out", str(out), "--eval-every", "40",
                 "--eval-episodes", "1", *TINY_BPTT]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.out and "\r" not in captured.err
    progress = [ln for ln in captured.err.splitlines() if ln.startswith("bptt Pendulum-v1: ")]
    assert progress and all("simulated steps/s" in ln for ln in progress), captured.err
    assert progress[-1].startswith("bptt Pendulum-v1: 80/80 simulated steps (100%)"), progress
    # one update = 4 rollouts x 10 steps, one iteration = 2 updates: --steps 10 is 80 simulated steps, said first
    note = "the budget of 10 becomes 80 simulated steps"
    assert captured.out.splitlines()[0].startswith("note: bptt trains in whole iterations of 80 simulated steps")
    assert note in captured.out.splitlines()[0]
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 80


def test_a_whole_number_of_iterations_gets_no_note(tmp_path, capsys):
    assert main(["train", "bptt", "--env", "Pendulum-v1", "--steps", "160", "--out", str(tmp_path / "r"), "--quiet",
                 "--eval-episodes", "1", *TINY_BPTT]) == 0
    assert "note:" not in capsys.readouterr().out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_with_one_rate_and_a_log_one_line_per_tenth():
    tty = _Terminal()
    with Progress(1000, desc="run", unit="env steps", stream=tty) as bar:
        for n in range(100, 1001, 100):
            bar.update(n, **{"return": -100.0})
    text = tty.getvalue()
    assert "\r" in text and "env steps/s" in text and "sps" not in text
    log = io.StringIO()
    with Progress(1000, desc="run", unit="env steps", stream=log) as bar:
        for n in range(50, 1001, 50):
            bar.update(n)
        bar.event(1000, **{"return": -3.25})
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 11, lines  # 10 tenths + the evaluation
    assert lines[-1].startswith("run: 1,000/1,000 env steps (100%)") and lines[-1].endswith("return -3.2"), lines


def test_a_run_of_whole_episodes_past_its_budget_counts_and_states_the_steps_it_took(tmp_path, capsys,
                                                                                     monkeypatch):
    monkeypatch.setenv("PATHWISE_QUIET", "0")
    out = tmp_path / "ddpg"  # Pendulum-v1's episodes are 200 steps (its time limit): a budget of 40 ends at 200
    assert main([a for a in train_argv("ddpg", out, steps=40) if a != "--quiet"]) == 0
    captured = capsys.readouterr()
    progress = [ln for ln in captured.err.splitlines() if ln.startswith("ddpg Pendulum-v1: ")]
    assert progress[-1].startswith("ddpg Pendulum-v1: 200/200 env steps (100%)"), progress
    assert ("note: ddpg took 200 env steps for a budget of 40: an iteration is one whole episode, and a run stops "
            "after the iteration that reaches its budget.") in captured.out.splitlines()
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 200


def test_progress_past_its_total_raises_the_total_to_the_steps_taken():
    log = io.StringIO()
    with Progress(10, desc="run", unit="env steps", stream=log) as bar:
        bar.update(200)
        assert bar.n == 200  # the rate is the steps taken (n) over the time, not the budget's
    assert log.getvalue().startswith("run: 200/200 env steps (100%)"), log.getvalue()
    tty = _Terminal()
    with Progress(10, desc="run", unit="env steps", stream=tty) as bar:
        bar.update(200)
        assert bar.total == 200 and bar.n == 200
    assert "200/200" in tty.getvalue(), tty.getvalue()
