"""MBPO-style model rollouts: svg0 on Pendulum-v1 with and without branched model data, steps to -200.

    python benchmarks/bench_mbpo.py                 # seeds 0 1 2, both variants
    python benchmarks/bench_mbpo.py --seeds 7 8 --variants mbpo   # more seeds of one variant, kept with the others
    python benchmarks/bench_mbpo.py --quick         # smoke run: mbpo, seed 0, 1,000 steps, into a temporary folder
    python benchmarks/bench_mbpo.py --from-json     # re-render the section only

Protocol: ``pathwise.train.train("svg0", "Pendulum-v1", budget, seed=s, overrides=VARIANTS[v])`` on top of the
shipped svg0 preset, evaluated every 500 real steps on 10 deterministic episodes, stopping at the first evaluation
that reaches -200 (or at the budget). ``mbpo`` adds the replay loop's model rollouts
(``pathwise.loops.branched``): each episode refits a 128x128 dynamics model on the replay buffer, branches
5 three-step rollouts per real step from replayed states into a model buffer, and draws 30% of every minibatch from
the real data, with 2 updates per real step. Writes benchmarks/results/mbpo.json and
benchmarks/sections/53_mbpo.md (from benchmarks/templates/53_mbpo.md); runs of other seeds already in the results
file are kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import (finished, machine, median_or_none, merge_runs, options, publish, saved_results,  # noqa: I001
                    separated, settings)  # benchmarks/common.py

ENV, SOLVED, EVAL_EVERY, EVAL_EPISODES = "Pendulum-v1", -200.0, 500, 10
VARIANTS = {
    "svg0": {},
    "mbpo": {"model_rollouts_per_step": 5, "model_horizon": 3, "real_ratio": 0.3, "updates_per_step": 2,
             "model_hidden": [128, 128]},
}
BUDGETS = {"svg0": 20_000, "mbpo": 8_000}


def run(variant: str, seed: int, budget: int, out: str | None) -> dict:
    """One run, stopped at its first solved evaluation."""
    from pathwise.train import train

    start = time.perf_counter()

    def keep_going(info: dict) -> bool:
        return not ("eval_return_mean" in info and info["eval_return_mean"] >= SOLVED)

    trainer, s = train("svg0", ENV, budget, seed=seed, overrides=dict(VARIANTS[variant]), eval_every=EVAL_EVERY,
                       eval_episodes=EVAL_EPISODES, quiet=True, overwrite=True, callback=keep_going,
                       out=None if out is None else f"{out}/mbpo/{variant}_s{seed}")
    row = {"variant": variant, "seed": seed, "budget": budget, "steps_to_solve": s["steps_to_solve"],
           "env_steps": s["env_steps"], "final_return": s["final_return_mean"], "train_s": s["train_time_s"],
           "wall_s": round(time.perf_counter() - start, 1),
           "evals": [{"step": e["env_steps"], "return": e["eval_return_mean"]} for e in trainer.evals]}
    print(f"{variant} seed {seed}: solved at {row['steps_to_solve']} steps ({row['train_s']:.0f} s training)",
          flush=True)
    return row


def measure(args: argparse.Namespace) -> dict:
    facts = machine()
    variants = ["mbpo"] if args.quick else args.variants
    seeds = [0] if args.quick else args.seeds
    out = tempfile.mkdtemp() if args.quick else None
    ran = [run(v, s, 1000 if args.quick else BUDGETS[v], out) for s in seeds for v in variants]
    earlier = (saved_results("mbpo", args.results) or {}).get("runs", [])
    runs = sorted(merge_runs(earlier, ran, key=lambda r: (r["variant"], r["seed"])),
                  key=lambda r: (r["variant"] != "svg0", r["seed"]))
    return {"machine": finished(facts), "env": ENV, "eval_every": EVAL_EVERY, "eval_episodes": EVAL_EPISODES,
            "budgets": BUDGETS, "mbpo_options": VARIANTS["mbpo"], "runs": runs}


def view(results: dict) -> dict:
    runs = results["runs"]
    per = {v: {r["seed"]: r for r in runs if r["variant"] == v} for v in VARIANTS}
    common = sorted(set(per["svg0"]) & set(per["mbpo"]))
    pairs = [{"seed": s, "svg0": per["svg0"][s]["steps_to_solve"], "mbpo": per["mbpo"][s]["steps_to_solve"],
              "ratio": (per["mbpo"][s]["steps_to_solve"] / per["svg0"][s]["steps_to_solve"]
                        if per["svg0"][s]["steps_to_solve"] and per["mbpo"][s]["steps_to_solve"] else None),
              "svg0_s": per["svg0"][s]["train_s"], "mbpo_s": per["mbpo"][s]["train_s"]} for s in common]
    rows = [{**r, "solved": r["steps_to_solve"] is not None, "evals": separated(r["evals"])} for r in runs]
    return {**results, "rows": rows, "pairs": separated(pairs), "options": settings(results["mbpo_options"], " "),
            "median_ratio": median_or_none([p["ratio"] for p in pairs if p["ratio"] is not None])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="mbpo, seed 0, 1,000 steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    publish(options(parser, "mbpo").parse_args(), "mbpo", "53_mbpo", measure, view)


if __name__ == "__main__":
    main()
