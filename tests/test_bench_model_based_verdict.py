"""The verdicts of benchmarks/bench_model_based_tasks.py: issue 17 asks some targets of every model-based learner
(InvertedPendulum-v5) and the others of the best method, on every one of 3 seeds."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench = pytest.importorskip("bench_model_based_tasks")


def _row(env, algo, seed, reached):
    return {"task": env, "algo": algo, "seed": seed, "reached_at": 1000 if reached else None, "best": 1.0,
            "final": 1.0, "train_s": 1.0, "evals": [{"step": 1000, "return": 1.0}]}


def _verdicts(task, rows):
    results = {"machine": {"date": "2000-01-01 00:00 UTC"}, "runs": rows, "tasks": [task]}
    return {t["env"]: t for t in bench.view(results)["measured"]}[task["env"]]


def test_a_target_of_every_learner_is_missed_by_one_missing_row():
    task = dict(bench.dataclasses.asdict(bench.TASKS["InvertedPendulum-v5"]))
    assert task["every_learner"]
    rows = [_row(task["env"], a, s, not (a == "svg1" and s == 2)) for a in ("svgk", "svg1") for s in range(3)]
    assert not _verdicts(task, rows)["met"]
    assert _verdicts(task, [r for r in rows if r["algo"] == "svgk"])["met"]


def test_a_target_of_the_best_method_needs_one_learner_on_three_seeds():
    env = "dm_control/cartpole-swingup-v0"
    task = dict(bench.dataclasses.asdict(bench.TASKS[env]))
    assert not task["every_learner"]
    svgk = [_row(env, "svgk", s, True) for s in range(3)]
    met = _verdicts(task, svgk + [_row(env, "mbrl", 0, False)])
    assert met["met"] and met["met_by"] == [{"item": "svgk", "sep": ""}]
    assert not _verdicts(task, svgk[:2])["met"]  # two seeds are not enough
    assert not _verdicts(task, svgk[:2] + [_row(env, "svgk", 2, False)])["met"]


def test_a_variant_of_a_task_keeps_its_own_rows_and_verdict():
    """reacher-easy with the reward known and with it learned: one env id, two tasks, each judged on its rows."""
    known = bench.TASKS["dm_control/reacher-easy-v0"]
    learned = bench.TASKS["dm_control/reacher-easy-v0:reward-learned"]
    assert known.env == learned.env and dict(learned.overrides)["reward_source"] == "learned" and not known.overrides
    tasks = [known.saved(), learned.saved()]
    rows = [_row(known.key, "svgk", s, True) for s in range(3)]
    rows += [_row(learned.key, "svgk", s, False) for s in range(3)]
    results = {"machine": {"date": "2000-01-01 00:00 UTC"}, "runs": rows, "tasks": tasks}
    verdicts = {t["key"]: t for t in bench.view(results)["measured"]}
    assert verdicts[known.key]["met"] and verdicts[known.key]["n_rows"] == 3
    assert not verdicts[learned.key]["met"] and verdicts[learned.key]["n_rows"] == 3
