"""Model-based pathwise learners (MBRL, SVG(∞), SVG(1)) on Gymnasium Pendulum-v1: steps and wall-clock to -200.

Each learner sees the real ``Pendulum-v1`` as a black box through ``pathwise.envs`` and only knows its
reward function (``pathwise.registry``). Every ``EVAL_EVERY`` environment steps the deterministic policy is
evaluated on 10 episodes (episode i starts from ``env.reset(seed=1000 + i)``); a run counts as solved at the
first evaluation with mean return >= -200. Wall-clock is training time (interaction + model fits + policy
updates, compilation included) with evaluation excluded. Configs are the shipped presets
``pathwise/presets/{mbrl,svg-inf,svg1}.toml`` (what ``pathwise train ALGO --env Pendulum-v1`` uses); each run
is ``common.evaluation_curve`` (``pathwise.train.make_trainer``).

    python benchmarks/bench_model_based.py              # full: 3 seeds, 2,000 steps (mbrl, svg-inf), 5,000 (svg1)
    python benchmarks/bench_model_based.py --quick      # 1 seed, 600 / 1,000 steps, into a temporary folder
    python benchmarks/bench_model_based.py --algos svg-inf --seeds 0,1 --set svg-inf.grad_steps=50
    python benchmarks/bench_model_based.py --from-json  # re-render the section only

Each finished run is merged into benchmarks/results/model_based.json (keyed by algorithm and seed, under a
lock: runs can be done one at a time, in separate processes) and its evaluation curve into
benchmarks/out/model_based_curves.json; the section (benchmarks/sections/60_model_based.md, from
benchmarks/templates/60_model_based.md) and the figure (benchmarks/figures/model_based_pendulum.png) show
every run stored there. A quick run writes to a temporary folder unless ``--out``/``--results`` say where.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from common import (evaluation_curve, finished, machine, merge_runs, options, publish, results_path,  # noqa: I001
                    save_figure, separated, settings, stability_columns, update_saved)  # benchmarks/common.py

HERE = Path(__file__).resolve().parent
ENV = "Pendulum-v1"
THRESHOLD = -200.0
EVAL_EVERY = 200
EVAL_EPISODES = 10
EVAL_SEED = 1000
TARGET_S = 180.0  # the training-time target to -200
ALGOS = ("mbrl", "svg-inf", "svg1")
BUDGET = {"mbrl": 2000, "svg-inf": 2000, "svg1": 5000}
QUICK_BUDGET = {"mbrl": 600, "svg-inf": 600, "svg1": 1000}


def run(algo: str, seed: int, budget: int, overrides: dict) -> tuple[dict, dict]:
    """One preset run evaluated every ``EVAL_EVERY`` steps: its row of the table and its curve."""
    curve = evaluation_curve(algo, ENV, seed, budget, EVAL_EVERY, EVAL_EPISODES, EVAL_SEED, THRESHOLD, stop=False,
                             overrides=overrides or None)
    solved = curve["solved_step"]
    dips = [{"step": s, "return": r} for s, r in zip(curve["steps"], curve["returns"])
            if solved is not None and s > solved and r < THRESHOLD]
    row = {"algo": algo, "seed": seed, "budget": budget, "overrides": overrides, "solved_step": solved,
           "solved_s": curve["solved_time"], "final": curve["returns"][-1], "final_std": curve["stds"][-1],
           "train_s": curve["times"][-1], "load": os.getloadavg()[0], "dips": dips,
           **stability_columns(curve.get("stability"))}
    return row, curve


def presets() -> list[dict]:
    from pathwise import registry

    out = []
    for algo in ALGOS:
        values, run_settings = registry.record(ENV).preset(algo)
        out.append({"algo": algo, "values": values, "run": run_settings})
    return out


def stored(facts: dict, quick: bool, new: list[dict]) -> Callable[[dict | None], dict]:
    """How a finished run changes the saved results: its row merged in, the facts of this process on top."""
    from pathwise import registry

    def change(saved: dict | None) -> dict:
        runs = merge_runs((saved or {}).get("runs", []), new, key=lambda r: (r["algo"], r["seed"]))
        return {"machine": finished(facts), "quick": quick, "env": ENV, "threshold": THRESHOLD,
                "eval_every": EVAL_EVERY, "eval_episodes": EVAL_EPISODES, "eval_seed": EVAL_SEED,
                "target_s": TARGET_S, "ceiling": registry.record(ENV).ceiling, "presets": presets(),
                "runs": sorted(runs, key=lambda r: (r["algo"], r["seed"]))}

    return change


def measure(args: argparse.Namespace) -> dict:
    facts, (algos, seeds, overrides) = machine("equinox"), plan(args)
    curves_file = Path(args.out or HERE) / "out" / "model_based_curves.json"
    results, curves = None, {}
    for seed in seeds:
        for algo in algos:
            row, curve = run(algo, seed, args.steps or (QUICK_BUDGET if args.quick else BUDGET)[algo], overrides[algo])
            results = update_saved(results_path("model_based", args.results), stored(facts, args.quick, [row]))
            curves = update_saved(curves_file, lambda saved: {**(saved or {}), f"{algo}/{seed}": curve})
            print(f"{algo} seed {seed}: final {row['final']:.1f}, -200 at {row['solved_step']} steps "
                  f"({row['solved_s']} s)", flush=True)
    plot(curves, results["ceiling"], args.out)
    return results


def plan(args: argparse.Namespace) -> tuple[list[str], list[int], dict[str, dict]]:
    """The algorithms, seeds and per-algorithm overrides (``--set ALGO.KEY=VALUE``) the options ask for."""
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    unknown = sorted(set(algos) - set(ALGOS))
    if unknown:
        raise SystemExit(f"unknown algorithms {unknown}; choose from {list(ALGOS)}")
    overrides: dict[str, dict] = {a: {} for a in algos}
    for item in args.set:
        target, _, value = item.partition("=")
        algo, _, key = target.partition(".")
        if algo not in overrides or not key or not value:
            raise SystemExit(f"--set {item!r}: expected ALGO.KEY=VALUE with ALGO in {algos}")
        overrides[algo][key] = value  # coerced to the field's type by pathwise.config
    return algos, [0] if args.quick else [int(s) for s in args.seeds.split(",")], overrides


def plot(curves: dict, ceiling: float | None, out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colors = {algo: f"C{i}" for i, algo in enumerate(ALGOS)}
    for name, c in sorted(curves.items()):
        algo = name.split("/")[0]
        first = not any(line.get_label() == algo for line in ax.get_lines())
        ax.plot(c["steps"], c["returns"], color=colors.get(algo, "C3"), alpha=0.8, marker=".",
                label=algo if first else None)
    ax.axhline(THRESHOLD, color="g", ls=":", lw=1, label="-200 (solved)")
    if ceiling is not None:
        ax.axhline(ceiling, color="k", ls="--", lw=1, label=f"MPC ceiling ({ceiling:.0f})")
    ax.set(xlabel="environment steps", ylabel=f"mean eval return ({EVAL_EPISODES} episodes)",
           title=f"{ENV}: model-based pathwise learners (each line one seed)")
    ax.set_ylim(bottom=-1600)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, "model_based_pendulum.png", out)


def algo_view(algo: str, runs: list[dict], results: dict) -> dict:
    """One algorithm's seeds: how many reached -200 within the budget, their ranges, the target's verdict."""
    budget = max(r["budget"] for r in runs)
    ok = [r for r in runs if r["solved_step"] is not None and r["solved_step"] <= budget]
    all_ok = len(ok) == len(runs)
    load = statistics.mean(r["load"] for r in runs)
    span = lambda key: (min(r[key] for r in ok), max(r[key] for r in ok)) if all_ok else (None, None)  # noqa: E731
    (steps_min, steps_max), (time_min, time_max) = span("solved_step"), span("solved_s")
    return {"algo": algo, "budget": budget, "solved": len(ok), "n": len(runs), "all_ok": all_ok,
            "steps_min": steps_min, "steps_max": steps_max, "time_min": time_min, "time_max": time_max,
            "median_final": statistics.median(r["final"] for r in runs), "load": load,
            "busy": load > results["machine"]["cores"], "inflation": load / results["machine"]["cores"],
            "met": all_ok and time_max <= results["target_s"]}


def view(results: dict) -> dict:
    c, runs = results["ceiling"], results["runs"]
    algos = [algo_view(a, [r for r in runs if r["algo"] == a], results) for a in sorted({r["algo"] for r in runs})]
    by = {a["algo"]: a for a in algos}
    ratios = [r["final"] / c for r in runs] if c else [None]  # final / ceiling; None where no ceiling is measured
    finals = [r["final"] for r in runs]
    dips = [{"algo": r["algo"], "seed": r["seed"], **d} for r in runs for d in r["dips"]]
    overridden = [{"algo": r["algo"], "seed": r["seed"], "settings": settings(r["overrides"])}
                  for r in runs if r["overrides"]]
    return {**results, "algos": separated(algos, "; "), "mbrl": by.get("mbrl"), "svg_inf": by.get("svg-inf"),
            "svg1": by.get("svg1"), "target_minutes": results["target_s"] / 60,
            "runs": [{**r, "over_ceiling": r["final"] / c if c else None} for r in runs],
            "presets": [{**p, "has_values": bool(p["values"]), "values": settings(p["values"])}
                        for p in results["presets"] if p["algo"] in by],
            "has_overrides": bool(overridden), "overridden": separated(overridden, "; "),
            "final_best": max(finals), "final_worst": min(finals), "ratio_min": min(ratios) if c else None,
            "ratio_max": max(ratios) if c else None, "below_min": 100 * (min(ratios) - 1) if c else None,
            "below_max": 100 * (max(ratios) - 1) if c else None,
            "any_dips": bool(dips), "dips": separated(dips)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, short budgets, into a temporary folder")
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=None, help="budget for every algorithm (default: per algorithm)")
    parser.add_argument("--set", action="append", default=[], metavar="ALGO.KEY=VALUE",
                        help="config override for one algorithm (tuning; recorded with the run)")
    args = options(parser, "model_based").parse_args()
    if args.quick and not args.from_json:  # a quick run leaves the stored runs alone
        args.out = args.out or Path(tempfile.mkdtemp(prefix="pathwise_model_based_"))
        args.results = args.results or args.out / "model_based.json"
    publish(args, "model_based", "60_model_based", measure, view)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
