"""The verdicts of benchmarks/bench_model_based_tasks.py: issue 17 asks some targets of every model-based learner
(InvertedPendulum-v5) and the others of the best method, on every one of 3 seeds."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench = pytest.importorskip("bench_model_based_tasks")
from common import load_results, render  # noqa: E402  (benchmarks/common.py)


def _row(env, algo, seed, reached):
    return {"task": env, "algo": algo, "seed": seed, "reached_at": 1000 if reached else None, "best": 1.0,
            "final": 1.0, "train_s": 1.0, "evals": [{"step": 1000, "return": 1.0}]}


def _verdicts(task, rows):
    results = {"machine": {"date": "2000-01-01 00:00 UTC"}, "runs": rows, "tasks": [task]}
    return {t["env"]: t for t in bench.view(results)["measured"]}[task["env"]]


def test_a_target_of_every_learner_is_missed_by_one_missed_row_or_one_learner_short_of_seeds():
    task = dict(bench.dataclasses.asdict(bench.TASKS["InvertedPendulum-v5"]))
    assert task["every_learner"] and {"svgk", "svg1", "pets"} <= set(task["algos"])
    rows = [_row(task["env"], a, s, not (a == "svg1" and s == 2)) for a in task["algos"] for s in range(3)]
    assert not _verdicts(task, rows)["met"]
    reached = [_row(task["env"], a, s, True) for a in task["algos"] for s in range(3)]
    verdict = _verdicts(task, reached)
    assert verdict["met"] and not verdict["any_short"]
    verdict = _verdicts(task, [r for r in reached if not (r["algo"] == "pets" and r["seed"] > 0)])
    assert not verdict["met"] and [s["item"] for s in verdict["short"]] == ["pets (1 run)"]
    machine = {"command": "c", "date": "2000-01-01 00:00 UTC", "cores": 2, "description": "d", "shared": False,
               "load_start": [0.0], "versions": {}}
    rows = [r for r in reached if not (r["algo"] == "pets" and r["seed"] > 0)]
    text = render(bench.SECTION, bench.view({"machine": machine, "runs": rows, "tasks": [task], "full_budget": False}))
    assert "**NOT met**: 13 of 13 runs (learners mbrl, pets, svg-inf, svg1, svgk) reached it; not yet run on 3 " \
           "seeds: pets (1 run)." in text


def test_an_evaluation_past_the_budget_does_not_reach_the_target():
    """A run stops after the episode that crosses its budget; the evaluation there (10,046 of a 10,000-step budget)
    is past it, so the row misses, and the learner with it."""
    task = bench.TASKS["MountainCarContinuous-v0:svg0-pink"].saved()
    rows = [{**_row(task["key"], "svg0", s, True), "budget": 10_000} for s in range(3)]
    assert _verdicts(task, rows)["met"]
    rows[1]["reached_at"] = 10_046
    verdict = _verdicts(task, rows)
    assert not verdict["met"] and verdict["n_reached"] == 2
    assert [m["item"] for m in verdict["missed"]] == [
        "svg0 seed 1 (best 1.0, reached at 10,046 steps, past the budget)"]


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


def test_rows_evaluated_on_another_number_of_episodes_than_their_task_are_refused():
    """reacher-easy's settings are judged on 30 episodes: a row of 5 among them would be judged on other terms."""
    task = bench.TASKS["dm_control/reacher-easy-v0"].saved()
    assert task["eval_episodes"] == 30
    rows = [{**_row(task["key"], "svgk", s, True), "eval_episodes": 30} for s in range(3)]
    assert _verdicts(task, rows)["met"]
    assert _verdicts(task, rows[:2] + [_row(task["key"], "svgk", 2, True)])["met"]  # written before the field
    with pytest.raises(ValueError, match=r"svgk seed 2.*task's 30"):
        _verdicts(task, rows[:2] + [{**rows[2], "eval_episodes": 5}])


def test_a_target_relative_to_a_baseline_compares_means_on_the_baselines_seeds():
    """Hopper-v5: the return at 50,000 steps ≥ 1.5 × SB3 SAC's, side by side on the same seeds."""
    task = bench.TASKS["Hopper-v5"].saved()
    assert task["baseline"] == "sb3-sac" and task["ratio"] == 1.5

    def row(algo, seed, final):
        return {**_row(task["env"], algo, seed, False), "final": final}

    sac = [row("sb3-sac", s, f) for s, f in enumerate((1000.0, 2000.0, 3000.0))]  # mean 2000: target 3000
    view = _verdicts(task, sac + [row("svgk", s, f) for s, f in enumerate((2500.0, 3000.0, 3600.0))])
    assert view["relative"] and view["target"] == pytest.approx(3000.0) and view["met"]
    assert view["met_by"] == [{"item": "svgk", "sep": ""}]
    svgk = {r["seed"]: r["vs_baseline"] for r in view["rows"] if r["algo"] == "svgk"}
    assert svgk == {0: pytest.approx(2.5), 1: pytest.approx(1.5), 2: pytest.approx(1.2)}
    below = _verdicts(task, sac + [row("svgk", s, f) for s, f in enumerate((2500.0, 3000.0, 3400.0))])
    assert not below["met"] and below["learner_means"][0]["vs"] == pytest.approx(2966.7 / 2000.0, rel=1e-4)
    # two seeds are not enough, and seeds the baseline did not run do not count
    assert not _verdicts(task, sac + [row("svgk", s, 9000.0) for s in (0, 1, 5)])["met"]
    assert _verdicts(task, [row("svgk", 0, 9000.0)])["target"] is None  # no baseline yet: no target
    machine = {"command": "c", "date": "2000-01-01 00:00 UTC", "cores": 2, "description": "d", "shared": False,
               "load_start": [0.0], "versions": {}}
    text = render(bench.SECTION, bench.view({"machine": machine, "runs": sac, "tasks": [task], "full_budget": False}))
    assert "no pathwise learner has run yet" in text and "1.5 × 2000.0 = 3000.0" in text
    svgk = [row("svgk", s, f) for s, f in enumerate((2500.0, 3000.0, 3600.0))]
    text = render(bench.SECTION, bench.view({"machine": machine, "runs": sac + svgk, "tasks": [task],
                                             "full_budget": False}))
    assert "**Met**: svgk's mean 3033.3 on 3 of the 3 seeds, 1.52 × sb3-sac's. Met by svgk." in text
    assert "| svgk | 2 | 3600.0 | 1.20 |" in text


def test_processes_side_by_side_keep_each_others_rows(tmp_path, monkeypatch):
    """Each run's row is saved under a lock as it finishes, and publish does not write the results again: a row
    that another process saved meanwhile (here: while seed 0 ran) stays in the file and in the section."""
    path, env = tmp_path / "results.json", "MountainCarContinuous-v0"  # a task without an extra
    other = bench.stored(bench.machine(), bench.argparse.Namespace(quick=False, full_budget=True),
                         [_row(env, "svgk", 1, False)])

    def run_one(task, algo, seed, budget, full, out):
        bench.update_saved(path, other)  # the other process finishes first
        return _row(task.key, algo, seed, False)

    monkeypatch.setattr(bench, "run_one", run_one)
    monkeypatch.setattr(bench, "plot", lambda results, out: None)
    args = bench.argparse.Namespace(tasks=[env], algos=["svgk"], seeds=[0], quick=False, full_budget=True,
                                    from_json=False, results=path, out=tmp_path)
    results = bench.publish(args, bench.NAME, bench.SECTION, bench.measure, bench.view, written=True)
    saved = load_results(bench.NAME, path)
    assert [(r["algo"], r["seed"]) for r in saved["runs"]] == [("svgk", 0), ("svgk", 1)] == \
        [(r["algo"], r["seed"]) for r in results["runs"]]
    assert (tmp_path / "sections" / f"{bench.SECTION}.md").is_file()


def test_each_row_shows_when_it_ran():
    """The results file keeps rows of many runs of the script (its machine block is the latest run's): a row
    shows its own start, and rows saved before rows recorded it show –."""
    env = "MountainCarContinuous-v0"
    task = bench.TASKS[env].saved()
    machine = {"command": "c", "date": "2000-01-01 00:00 UTC", "cores": 2, "description": "d", "shared": False,
               "load_start": [0.0], "versions": {}}
    rows = [{**_row(env, "svgk", 0, True), "started": "2026-01-02 03:04 UTC"}, _row(env, "svgk", 1, True)]
    text = render(bench.SECTION, bench.view({"machine": machine, "runs": rows, "tasks": [task],
                                             "full_budget": False}))
    assert "| 1.0 | 1.0 | 1 | 2026-01-02 03:04 UTC | 1000: 1 |" in text
    assert "| 1.0 | 1.0 | 1 | – | 1000: 1 |" in text


def test_rows_run_with_xla_flags_are_named_under_their_table():
    """A row repeats its numbers only under the same XLA threading, so the rows that set ``XLA_FLAGS`` are listed
    with the flags; rows without (or saved before the field) are not."""
    flags = "--xla_cpu_multi_thread_eigen=false"
    rows = [{**_row("InvertedPendulum-v5", "svg1", s, True), "xla_flags": flags} for s in (0, 2)]
    rows += [_row("InvertedPendulum-v5", "svgk", 1, True), {**_row("InvertedPendulum-v5", "mbrl", 0, True),
                                                            "xla_flags": flags}]
    task = dict(bench.dataclasses.asdict(bench.TASKS["InvertedPendulum-v5"]))
    groups = _verdicts(task, rows)["xla"]
    assert [(g["flags"], [r["item"] for r in g["runs"]]) for g in groups] == [(flags, ["mbrl seed 0",
                                                                                       "svg1 seeds 0, 2"])]
    assert _verdicts(task, [_row("InvertedPendulum-v5", "svgk", 1, True)])["xla"] == []
