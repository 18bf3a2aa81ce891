"""Steps to solve for every Pendulum-v1 learner (and the CartPole-v1 learners) with its shipped preset, on seeds.

Only the stable entry point ``pathwise.train.train`` is used (and the solved line, read where each version keeps
it: ``solved_line``), so the same script measures any version of pathwise: run it once on this checkout and once
on another (e.g. the commit before a redesign) to compare their behaviour on the same seeds and evaluation
schedule::

    python benchmarks/bench_learners.py --tag new
    git worktree add /tmp/pathwise-old COMMIT && \\
        PYTHONPATH=/tmp/pathwise-old python benchmarks/bench_learners.py --tag old --no-section
    python benchmarks/bench_learners.py --from-json          # renders the section comparing the tags
    python benchmarks/bench_learners.py --quick              # smoke run: imitation, seed 0, into a temporary folder
    python benchmarks/bench_learners.py --tag untuned --full-budget --seeds 7 8 9 10 11   # does the solve hold?
    python benchmarks/bench_learners.py --tag untuned --full-budget --seeds 7 8 9 10 11 \\
        --algos reinforce qac svg0-discrete                  # the same for the discrete-action CartPole-v1 learners

Each run trains with the preset's evaluation interval and stops at the first evaluation that reaches the
environment's solved line (``registry``: -200 on Pendulum-v1, 475 on CartPole-v1) or at the budget; with
``--full-budget`` it runs the whole budget and its row also holds ``summary.json``'s stability columns
(``common.STABILITY_COLUMNS``: the step from which every evaluation stayed solved, the fraction solved after the
first solve, the worst return after it, whether it ends solved, the fraction of final episodes below the failure
line, -400 on Pendulum-v1 and 195 on CartPole-v1; None for a run stopped at its first solve or an older pathwise).
Without ``--algos`` the Pendulum-v1 learners run. Give full-budget runs their own tag: a row replaces the tag's row
of the same learner and seed. Every finished run is added to benchmarks/results/learners.json under its tag
(``{tag: [row, ...]}``, the tag's machine facts under ``_machine``); the section
(benchmarks/sections/72_learners.md, from benchmarks/templates/72_learners.md) sets two tags side by side
(``--compare old new``): per learner and seed the steps to -200 and their difference in evaluation intervals, and
per learner whether every seed is within one interval. Rendering reads the presets of this checkout
(``--no-section`` for a run on an older pathwise).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import (finished, machine, median_or_none, options, render, results_path, saved_results,  # noqa: I001
                    separated, stability_columns, stability_over_seeds, update_saved,
                    write_section)  # benchmarks/common.py

HERE = Path(__file__).resolve().parent
#: algorithm -> (env id, budget in its own steps); the evaluation interval is the preset's, and so is the budget of the
#: CartPole-v1 learners (their presets' ``steps``).
LEARNERS = {"bptt": ("Pendulum-v1", 9_600_000), "imitation": ("Pendulum-v1", 25_600), "ddpg": ("Pendulum-v1", 20_000),
            "svg0": ("Pendulum-v1", 20_000), "svg1": ("Pendulum-v1", 10_000), "mbrl": ("Pendulum-v1", 5_000),
            "svg-inf": ("Pendulum-v1", 5_000), "svgk": ("Pendulum-v1", 10_000),
            "svgk-system": ("pathwise/Pendulum-v1", 9_600_000),
            "reinforce": ("CartPole-v1", 100_000), "qac": ("CartPole-v1", 100_000),
            "svg0-discrete": ("CartPole-v1", 50_000)}


def solved_line(env: str) -> float:
    """The environment's solved line as the pathwise on the path knows it: its registry record, or in a pathwise from
    before the registry (0.2, e.g. the commit before the redesign) ``pathwise.train.SOLVED_AT``."""
    from pathwise import train
    if hasattr(train, "SOLVED_AT"):  # before the registry; looked up first, since an editable install of a newer
        return train.SOLVED_AT[env]  # pathwise would lend the older one its registry module
    from pathwise import registry
    return registry.record(env).solved_at


def measure(name: str, seed: int, full_budget: bool = False) -> dict:
    """One run: steps, training seconds and return at the first evaluation that reaches the environment's solved
    line (``full_budget``: at the end of the budget, with the stability columns)."""
    from pathwise.train import train

    algo = name.split("-system")[0]
    env, budget = LEARNERS[name]
    solved = solved_line(env)
    start = time.perf_counter()

    def stop_when_solved(info: dict) -> bool:
        return not ("eval_return_mean" in info and info["eval_return_mean"] >= solved)

    _, summary = train(algo, env, budget, seed=seed, quiet=True, callback=None if full_budget else stop_when_solved)
    return {"algorithm": name, "env_id": env, "seed": seed, "steps_to_solve": summary["steps_to_solve"],
            "env_steps": summary["env_steps"], "final_return": summary["final_return_mean"],
            "train_time_s": summary["train_time_s"], "wall_s": round(time.perf_counter() - start, 1),
            "full_budget": full_budget, **stability_columns(summary if full_budget else None)}


def add(tag: str, row: dict, facts: dict):
    """How a finished run changes the results file: its row replaces the tag's row of the same run."""
    def change(data: dict | None) -> dict:
        data = dict(data or {})
        rows = [r for r in data.get(tag, []) if (r["algorithm"], r["seed"]) != (row["algorithm"], row["seed"])]
        data[tag] = rows + [row]
        data["_machine"] = {**data.get("_machine", {}), tag: finished(facts)}
        return data

    return change


# ----------------------------------------------------------------------------- the section


def interval(name: str) -> dict:
    """The learner's evaluation interval: the preset's ``eval_every``, or where one iteration of its loop takes
    more steps (the simulated loop runs ``updates_per_iteration`` updates at once) the whole iterations that
    span it, since evaluations fall only between iterations."""
    from pathwise import algorithms, loops, registry
    from pathwise import config as cfg_mod
    from pathwise import spec as spec_mod

    env = LEARNERS[name][0]
    algorithm = algorithms.get(name.split("-system")[0])
    values, run = registry.record(env).preset(algorithm.name)
    config, spec = cfg_mod.build(algorithm.Config, algorithm.name, values), spec_mod.from_env(env)
    every = int(run["eval_every"])
    if loops.select(algorithm, spec, config) != "simulated":
        return {"eval_every": every, "interval": every}
    iteration = algorithm.hook("steps_per_update")(spec, config) * config.updates_per_iteration
    return {"eval_every": every, "interval": -(-every // iteration) * iteration}


def seed_view(seed: int, runs: tuple[dict | None, dict | None], every: int, tags: tuple[str, str]) -> dict:
    """One seed under both tags: steps to -200 (None: not solved within the budget) and how far apart they are,
    in evaluation intervals."""
    a, b = (r["steps_to_solve"] if r else None for r in runs)
    both, only = a is not None and b is not None, (a is None) != (b is None)
    return {"seed": seed, "old": a, "new": b, "old_ran": runs[0] is not None, "new_ran": runs[1] is not None,
            "measured": None not in runs, "intervals": (b - a) / every if both else None, "only": only,
            "solver": tags[0] if a is not None else tags[1], "at": a if a is not None else b,
            "missed": b - a > every if both else (a is not None and b is None)}  # the second tag slower


def learner_view(name: str, tags: tuple[str, str], data: dict) -> dict:
    rows = [{r["seed"]: r for r in data.get(tag, []) if r["algorithm"] == name} for tag in tags]
    every = interval(name)
    seeds = [seed_view(s, (rows[0].get(s), rows[1].get(s)), every["interval"], tags)
             for s in sorted(set(rows[0]) | set(rows[1]))]
    misses = [s for s in seeds if s["measured"] and s["missed"]]
    measured = bool(seeds) and all(s["measured"] for s in seeds)
    both = [s for s in seeds if s["measured"]]
    return {"name": name, "env": LEARNERS[name][0], **every, "widened": every["interval"] != every["eval_every"],
            "seeds": seeds, "measured": measured, "same": measured and not misses, "misses": separated(misses, "; "),
            "n_seeds": len(both), "solved_old": sum(s["old"] is not None for s in both),
            "solved_new": sum(s["new"] is not None for s in both),
            "median_old": median_or_none([s["old"] for s in both]),
            "median_new": median_or_none([s["new"] for s in both]),
            "stability_old": stability_over_seeds(list(rows[0].values())),
            "stability_new": stability_over_seeds(list(rows[1].values()))}


def view(data: dict, tags: tuple[str, str]) -> dict:
    learners = [learner_view(name, tags, data) for name in LEARNERS
                if any(r["algorithm"] == name for tag in tags for r in data.get(tag, []))]
    facts = data.get("_machine", {})
    return {"a": tags[0], "b": tags[1], "learners": learners,
            "rows": [{**s, "name": v["name"], "env": v["env"], "interval": v["interval"]} for v in learners
                     for s in v["seeds"]],
            "tags": [{"tag": t, "facts": facts.get(t), "runs": len(data.get(t, []))} for t in tags],
            "extra": [{"name": k, **v} for k, v in data.get("_extra", {}).items()],
            "widened": separated([v for v in learners if v["widened"]]),
            "any_widened": any(v["widened"] for v in learners),
            "n_same": sum(v["same"] for v in learners), "n_learners": len(learners)}


def stability_view(data: dict, tag: str) -> dict:
    """The full-budget rows of ``tag``, and per learner whether every seed stays solved on >= 90% of the
    evaluations after its first solve and ends solved (issue 16's criterion)."""
    rows = sorted((r for r in data.get(tag, []) if r.get("full_budget")),
                  key=lambda r: (list(LEARNERS).index(r["algorithm"]), r["seed"]))
    learners = []
    for name in dict.fromkeys(r["algorithm"] for r in rows):
        mine = [r for r in rows if r["algorithm"] == name]
        misses = [r for r in mine if not r["ends_solved"] or (r["solved_fraction_after_first"] or 0) < 0.9]
        verdict = (f"met on {len(mine)}/{len(mine)} seeds" if not misses else "missed on seed " + "; seed ".join(
            f"{r['seed']} ({(r['solved_fraction_after_first'] or 0):.0%} solved after the first solve, "
            f"{'ends solved' if r['ends_solved'] else 'ends unsolved'})" for r in misses)
            + f"; met on {len(mine) - len(misses)}/{len(mine)}")
        learners.append({"name": name, "verdict": verdict, "met": not misses})
    facts = data.get("_machine", {}).get(tag) or {}
    return {"tag": tag, "rows": [{**r, "has_failed": r.get("failed_episode_fraction") is not None} for r in rows],
            "seed_list": " ".join(str(s) for s in sorted({r["seed"] for r in rows})),
            "facts": f"{facts.get('date', 'date not recorded')}, {facts.get('description', '')}",
            "learners": learners, "n_met": sum(v["met"] for v in learners), "n_learners": len(learners)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="new", help="label of this version's results (e.g. old, new)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=[n for n, (env, _) in LEARNERS.items() if env != "CartPole-v1"],
                        choices=list(LEARNERS), help="default: the Pendulum-v1 learners (section 72 compares those)")
    parser.add_argument("--compare", nargs=2, default=["old", "new"], metavar=("A", "B"),
                        help="the two tags the section sets side by side")
    parser.add_argument("--quick", action="store_true", help="imitation, seed 0, into a temporary folder")
    parser.add_argument("--no-section", action="store_true", help="measure only (e.g. on an older pathwise)")
    parser.add_argument("--full-budget", action="store_true",
                        help="run the whole budget (no stop at the first solve) and record the stability columns")
    parser.add_argument("--stability-tag", default="untuned",
                        help="the tag of full-budget runs whose stability section is rendered (if it has runs)")
    args = options(parser, "learners").parse_args(argv)
    if args.quick and not args.from_json:
        args.seeds, args.algos = [0], ["imitation"]
        args.out = args.out or Path(tempfile.mkdtemp(prefix="pathwise_learners_"))
        args.results = args.results or args.out / "learners.json"
    if not args.from_json:
        facts = machine()
        for name in args.algos:
            for seed in args.seeds:
                row = measure(name, seed, args.full_budget)
                update_saved(results_path("learners", args.results), add(args.tag, row, facts))
                print(json.dumps(row), flush=True)
    if not args.no_section:
        data = saved_results("learners", args.results) or {}
        write_section("72_learners", render("72_learners", view(data, tuple(args.compare))), args.out)
        if data.get(args.stability_tag):
            write_section("73_stability", render("73_stability", stability_view(data, args.stability_tag)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
