"""BPTT swing-ups from every start: the fraction of 100 Gymnasium Pendulum-v1 episodes below -400, g = 5 and g = 10.

    python benchmarks/bench_bptt_starts.py                          # seeds 0 1 2 7 8 9 10 11, g 5 and 10, both variants
    python benchmarks/bench_bptt_starts.py --seeds 7 8 --g 5 --variants preset   # some runs, kept with the others
    python benchmarks/bench_bptt_starts.py --quick                  # smoke run: g 5, seed 0, 2 iterations, temporary files
    python benchmarks/bench_bptt_starts.py --from-json              # re-render the section only

Protocol: ``pathwise.train.train("bptt", ENV, seed=s, overrides=VARIANTS[v])`` with the shipped ``Pendulum-v1``
preset of bptt (its config and its run settings: budget, evaluation interval and episodes), on ``Pendulum-v1`` for
g = 10 and on the user's system ``pw.systems.Pendulum(g=5.0)`` for g = 5 (a user's instance of a pathwise system
class trains with that class's presets: ``EnvRecord.presets_of``). ``preset`` is the shipped preset (training starts
spread over the pendulum's velocities, ``start_spread``); ``reset-starts`` the same with ``start_spread`` removed,
so training windows start from the system's own reset (what the preset did before). Each trained policy then plays
100 episodes of Gymnasium's own ``gymnasium.make("Pendulum-v1", g=g)``, deterministically, episode ``i`` from
``reset(seed=10000 + i)`` (``pathwise.ceilings.EVALUATION_SEED``); an episode below -400 (the registry's failure
line of Pendulum-v1) failed. Writes benchmarks/results/bptt_starts.json and benchmarks/sections/41_bptt_starts.md
(from benchmarks/templates/41_bptt_starts.md); runs of other seeds, g or variants already in the results file are
kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from common import (finished, machine, merge_runs, options, publish, saved_results,  # noqa: I001
                    separated, settings)  # benchmarks/common.py

ENV, EPISODES, TARGET, SOLVED = "Pendulum-v1", 100, 0.02, -200.0
VARIANTS = {"preset": {}, "reset-starts": {"start_spread": None}}
SEEDS, GS = [0, 1, 2, 7, 8, 9, 10, 11], [5.0, 10.0]


def preset() -> tuple[dict, dict]:
    """bptt's shipped ``Pendulum-v1`` preset: ``(config values, run settings)``."""
    from pathwise import registry

    return registry.record(ENV).preset("bptt")


def env_id(g: float) -> str:
    """The id a user trains on: Gymnasium's Pendulum-v1 for the default g, else their own ``Pendulum(g=g)``."""
    import pathwise as pw
    from pathwise import problems

    return ENV if g == 10.0 else problems.system_id(pw.systems.Pendulum(g=g))


def gymnasium_episodes(act, g: float) -> tuple[np.ndarray, np.ndarray]:
    """Returns and final angles (wrapped to [-pi, pi)) of ``EPISODES`` deterministic Gymnasium episodes."""
    import gymnasium as gym

    from pathwise.ceilings import EVALUATION_SEED
    from pathwise.envs import run_episode

    env = gym.make(ENV, g=g)
    returns, final = [], []
    for i in range(EPISODES):
        episode, total, _ = run_episode(env, act, seed=EVALUATION_SEED + i)
        returns.append(total)
        final.append(float(np.arctan2(episode.next_obs[-1][1], episode.next_obs[-1][0])))
    env.close()
    return np.array(returns), np.array(final)


def run(variant: str, g: float, seed: int, iterations: int | None, out: str | None) -> dict:
    """Train one run with the preset (and the variant's change), then play the Gymnasium episodes."""
    from pathwise.ceilings import EVALUATION_SEED
    from pathwise.envs import reset_states
    from pathwise.train import train

    from pathwise import registry

    values, _ = preset()
    if registry.record(env_id(g)).preset("bptt")[0] != values:
        raise SystemExit(f"bptt's {ENV} preset does not serve Pendulum(g={g}) in this version of pathwise.")
    steps = None if iterations is None else iterations * 50 * values["batch_size"] * values["horizon"]
    start = time.perf_counter()
    trainer, s = train("bptt", env_id(g), steps, seed=seed, overrides=dict(VARIANTS[variant]), quiet=True,
                       overwrite=True, out=None if out is None else f"{out}/{variant}_g{g:g}_s{seed}")
    train_s = time.perf_counter() - start
    returns, final = gymnasium_episodes(trainer.run.act, g)
    starts = reset_states(ENV, EPISODES, EVALUATION_SEED)
    failed = np.flatnonzero(returns < -400.0)
    row = {"variant": variant, "g": g, "seed": seed, "env_steps": s["env_steps"], "train_s": round(train_s, 1),
           "steps_to_200": next((e["env_steps"] for e in trainer.evals if e["eval_return_mean"] >= SOLVED), None),
           "mean": float(returns.mean()), "worst": float(returns.min()),
           "failed": len(failed), "failed_fraction": len(failed) / EPISODES,
           "failed_starts": [{"episode": int(i), "theta0": float(starts[i, 0]), "theta_dot0": float(starts[i, 1]),
                              "return": float(returns[i]), "final_theta": float(final[i])} for i in failed]}
    print(f"{variant} g={g:g} seed {seed}: mean {row['mean']:.1f}, worst {row['worst']:.0f}, {len(failed)}/{EPISODES} "
          f"below -400 ({train_s:.0f} s)", flush=True)
    return row


def measure(args: argparse.Namespace) -> dict:
    facts = machine("gymnasium")
    runs = [("preset", 5.0, 0)] if args.quick else [(v, g, s) for v in args.variants for g in args.g for s in args.seeds]
    out = tempfile.mkdtemp() if args.quick else None
    ran = [run(v, g, s, 2 if args.quick else None, out) for v, g, s in runs]
    earlier = (saved_results("bptt_starts", args.results) or {}).get("runs", [])
    rows = sorted(merge_runs(earlier, ran, key=lambda r: (r["variant"], r["g"], r["seed"])),
                  key=lambda r: (list(VARIANTS).index(r["variant"]), r["g"], r["seed"]))
    values, run_settings = preset()
    return {"machine": finished(facts), "env": ENV, "episodes": EPISODES, "target": TARGET, "preset": values,
            "run_settings": run_settings, "variants": {k: {kk: str(vv) for kk, vv in v.items()}
                                                       for k, v in VARIANTS.items()}, "runs": rows}


def view(results: dict) -> dict:
    runs = results["runs"]
    groups = []
    for variant in VARIANTS:
        for g in sorted({r["g"] for r in runs if r["variant"] == variant}):
            rows = [r for r in runs if r["variant"] == variant and r["g"] == g]
            met = [r for r in rows if r["failed_fraction"] < results["target"]]
            groups.append({"variant": variant, "g": g, "seeds": len(rows), "met": len(met),
                           "failed": sum(r["failed"] for r in rows), "episodes": results["episodes"] * len(rows),
                           "worst": min(r["worst"] for r in rows), "all_met": len(met) == len(rows)})
    # runs saved before steps_to_200 was kept: summary.json's steps_to_solve, the same on Pendulum-v1 (solved at -200)
    table = [{**r, "steps_to_200": r["steps_to_200"] if "steps_to_200" in r else r["steps_to_solve"]} for r in runs]
    table = [{**r, "solved": r["steps_to_200"] is not None,
              "starts": separated([{"theta0": f["theta0"], "final": f["final_theta"]} for f in r["failed_starts"][:4]]),
              "more": max(0, len(r["failed_starts"]) - 4)} for r in table]
    return {**results, "rows": table, "groups": groups, "target_pct": 100 * results["target"],
            "options": settings(results["preset"], " ")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="preset, g 5, seed 0, 2 iterations")
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    parser.add_argument("--g", type=float, nargs="+", default=GS)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = options(parser, "bptt_starts").parse_args()
    if args.quick:  # a smoke run never overwrites the committed results or section
        scratch = tempfile.mkdtemp()
        args.results = args.results or Path(scratch) / "bptt_starts.json"
        args.out = args.out or Path(scratch)
    publish(args, "bptt_starts", "41_bptt_starts", measure, view)


if __name__ == "__main__":
    main()
