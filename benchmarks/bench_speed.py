"""Wall-clock per environment step of each learner (issue 17's speed table): training time over real steps.

    python benchmarks/bench_speed.py                       # Pendulum-v1 rows, 2,000 real steps each
    python benchmarks/bench_speed.py --tasks dmc           # DeepMind Control cartpole-swingup rows (dmc extra)
    python benchmarks/bench_speed.py --tasks dmc-repeat --steps 1000  # pendulum-swingup, acting every 4th step
    python benchmarks/bench_speed.py --quick               # smoke run: two learners, 400 steps, a temporary folder
    python benchmarks/bench_speed.py --from-json           # re-render the section only

Protocol: ``pathwise.train.make_trainer(algo, env, seed=0)`` with the learner's shipped preset for that task (the
library's defaults where it has none) and ``variant``'s ``--set`` values on top, trained for ``--steps`` real
steps with one evaluation at the end. The trainer's own clock (``Counters.train_time``: acting, model fits,
branched rollouts, updates; evaluation excluded) is read after every loop iteration. Reported per row: the
first iteration's seconds (JAX tracing and compilation included), the seconds per 1,000 real steps over the
later iterations (``steady``), the same over the run's last half (``late``: a learner whose cost grows with its
data, e.g. a model fit over a growing buffer, shows it here), and a projection of a 20,000-step run: the
measured time plus the remaining steps at the late rate (a lower bound where the cost keeps growing). Rows run one
after another in one process; the machine's load is recorded at the start and the end. Writes
benchmarks/results/speed.json and benchmarks/sections/67_speed.md (from benchmarks/templates/67_speed.md); rows of
other tasks already in the results file are kept. The second table of the section reads the full-budget runs of
``benchmarks/results/learners.json`` (tag ``untuned``): whole runs, their training time over their steps.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time

from common import (finished, load_results, machine, merge_runs, options, publish, save_results,  # noqa: I001
                    saved_results, separated, settings)  # benchmarks/common.py
from bench_mbpo import VARIANTS

MBPO = VARIANTS["mbpo"]  # svg0 with MBPO-style model data, as benchmarks/bench_mbpo.py runs it
#: (row name, algorithm, --set values) per task; a row's name is the algorithm unless a variant changes it.
ROWS = {
    "pendulum": ("Pendulum-v1", [("ddpg", "ddpg", {}), ("svg0", "svg0", {}), ("svg0 + model rollouts", "svg0", MBPO),
                                 ("svg1", "svg1", {}), ("mbrl", "mbrl", {}), ("svg-inf", "svg-inf", {}),
                                 ("svgk", "svgk", {}), ("pets", "pets", {})]),
    "dmc": ("dm_control/cartpole-swingup-v0", [("svg0", "svg0", {}), ("mbrl", "mbrl", {}), ("svgk", "svgk", {}),
                                               ("pets", "pets", {})]),
    "dmc-repeat": ("dm_control/pendulum-swingup-repeat4-v0", [("svgk", "svgk", {})]),
}
PROJECTED = 20_000  # issue 17: "a 20,000-step run finishes within 30 minutes on the 2-core machine"
# (control steps: an action-repeat id, dm_control/...-repeatN-v0, counts decisions, so its run is 20,000 / N of them)
LIMIT_S = 30 * 60


def per_thousand(points: list[tuple[int, float]]) -> float | None:
    """Seconds per 1,000 steps between the first and the last (steps, seconds) point; None with fewer than two."""
    if len(points) < 2 or points[-1][0] == points[0][0]:
        return None
    return 1000 * (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def run(name: str, algo: str, env: str, overrides: dict, steps: int, out: str | None) -> dict:
    """One row: ``algo`` on ``env`` for ``steps`` real steps, the trainer's clock read after every iteration."""
    from pathwise.envs.dmc import split_repeat
    from pathwise.train import make_trainer

    trainer, _ = make_trainer(algo, env, 0, overrides=dict(overrides), steps=steps, eval_every=10 * steps,
                              eval_episodes=1, quiet=True, overwrite=True,
                              out=None if out is None else f"{out}/speed/{algo}_{len(overrides)}")
    points: list[tuple[int, float]] = []

    def clock(info: dict) -> None:
        points.append((trainer.counters.env_steps, trainer.counters.train_time))

    start = time.perf_counter()
    trainer.train(steps, callback=clock)
    half = [p for p in points if p[0] >= points[-1][0] / 2]
    late = per_thousand(half if len(half) >= 2 else points[-2:])
    measured, projected = points[-1][1], PROJECTED // split_repeat(env)[1]  # decisions of the 20,000 control steps
    row = {"name": name, "algorithm": algo, "env": env, "overrides": overrides, "steps": points[-1][0],
           "iterations": len(points), "first_iteration_s": points[0][1], "first_iteration_steps": points[0][0],
           "steady_s_per_1k": per_thousand(points[1:]), "late_s_per_1k": late, "train_s": measured,
           "wall_s": round(time.perf_counter() - start, 1),
           "projected_steps": projected,
           "projected_20k_s": None if late is None else measured + max(projected - points[-1][0], 0) * late / 1000}
    print(f"{env} {name}: {row['train_s']:.0f} s for {row['steps']} steps; late {late} s per 1,000", flush=True)
    return row


def measure(args: argparse.Namespace) -> dict:
    facts = machine()
    out = tempfile.mkdtemp() if args.quick else None
    earlier = (saved_results("speed", args.results) or {}).get("rows", [])
    ran: list[dict] = []

    def results() -> dict:
        rows = merge_runs(earlier, ran, key=lambda r: (r["env"], r["name"]))
        return {"machine": finished(facts), "projected_steps": PROJECTED, "limit_s": LIMIT_S, "rows": rows}

    for task in args.tasks:
        env, rows = ROWS[task]
        if env.startswith("dm_control/") and importlib.util.find_spec("shimmy") is None:
            raise SystemExit("the dmc rows need the DeepMind Control Suite: pip install -e '.[dmc]'")
        for name, algo, overrides in (rows[:2] if args.quick else rows):
            if args.only and name not in args.only:
                continue
            ran.append(run(name, algo, env, overrides, 400 if args.quick else args.steps, out))
            save_results("speed", results(), args.results)  # a row at a time: an interrupted run keeps its rows
    return results()


def full_budget_rows() -> list[dict]:
    """Whole full-budget runs from results/learners.json (tag ``untuned``): training seconds per 1,000 steps."""
    try:
        learners = load_results("learners")
    except FileNotFoundError:
        return []
    out = []
    for r in learners.get("untuned", []):
        if r.get("train_time_s") and r.get("env_steps"):
            out.append({"algorithm": r["algorithm"], "env": r.get("env_id", "Pendulum-v1"), "seed": r["seed"],
                        "steps": r["env_steps"],
                        "train_s": r["train_time_s"], "s_per_1k": 1000 * r["train_time_s"] / r["env_steps"]})
    return sorted(out, key=lambda r: (r["env"], r["algorithm"], r["seed"]))


def view(results: dict) -> dict:
    rows = [{**r, "set": settings(r["overrides"], " "), "has_set": bool(r["overrides"]),
             "steady": "–" if r["steady_s_per_1k"] is None else f"{r['steady_s_per_1k']:.1f}",
             "late": "–" if r["late_s_per_1k"] is None else f"{r['late_s_per_1k']:.1f}",
             "projected": "–" if r["projected_20k_s"] is None else f"{r['projected_20k_s'] / 60:.1f}",
             "repeated": r.get("projected_steps", results["projected_steps"]) != results["projected_steps"],
             "within": "–" if r["projected_20k_s"] is None else
             ("yes" if r["projected_20k_s"] <= results["limit_s"] else "no")} for r in results["rows"]]
    over = [r for r in rows if r["within"] == "no"]
    measured = {(r["env"], r["name"]) for r in rows}
    missing = [f"{name} on {env}" for env, names in ROWS.values() for name, _, _ in names
               if (env, name) not in measured]
    return {**results, "rows": rows, "full": full_budget_rows(),
            "over": separated([f"{r['name']} on {r['env']}" for r in over]), "all_within": not over,
            "missing": separated(missing), "any_missing": bool(missing),
            "any_repeated": any(r["repeated"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two learners, 400 steps, into a temporary folder")
    parser.add_argument("--tasks", nargs="+", choices=list(ROWS), default=["pendulum"])
    parser.add_argument("--only", nargs="+", default=None, help="row names to run (default: every row of the task)")
    parser.add_argument("--steps", type=int, default=2000, help="real steps per row")
    publish(options(parser, "speed").parse_args(), "speed", "67_speed", measure, view)


if __name__ == "__main__":
    main()
