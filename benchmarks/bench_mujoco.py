"""MuJoCo end to end: SVG(k) on a learned model of Gymnasium InvertedPendulum-v5.

    python benchmarks/bench_mujoco.py              # 2 seeds x 3,000 real steps (~10 min on 2 busy cores)
    python benchmarks/bench_mujoco.py --quick      # 1 seed x 600 real steps
    python benchmarks/bench_mujoco.py --seeds 1 --steps 2000 --first-seed 1   # one more seed, kept with the others
    python benchmarks/bench_mujoco.py --from-json  # re-render the section only

Writes benchmarks/results/mujoco.json, then benchmarks/sections/65_mujoco.md (from
benchmarks/templates/65_mujoco.md) and benchmarks/figures/mujoco_inverted_pendulum.png; the runs' own
directories (checkpoints, logs) go to benchmarks/out/mujoco/. Runs of other seeds with the same ``--steps``
already in the results file are kept in the table, so seeds can run one process at a time.
Needs the ``mujoco`` extra (``pip install -e '.[mujoco]'``: gymnasium[mujoco] = mujoco + imageio).

Protocol: ``pathwise.train.train("svgk", "InvertedPendulum-v5", steps, overrides=CONFIG)``, i.e. exactly
``pathwise train svgk --env InvertedPendulum-v5 --steps N`` with the options below. The env is a black
box; pathwise knows only its reward and termination on observations (``pathwise.registry``:
``1`` per step while ``|pole angle| ≤ 0.2``; the value is Gymnasium's, the derivative that of the smooth
surrogate ``1 − (angle/0.2)²``). Each iteration collects whole real episodes (at least
``min_steps_per_iteration`` steps), refits the dynamics model on all data, then takes
``updates_per_episode`` SVG(k) actor-critic steps on k-step imagined rollouts that stop at the known
termination. Evaluation: the deterministic policy on Gymnasium's env (max return 1000).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import (finished, machine, merge_runs, options, publish, save_figure, saved_results,  # noqa: I001
                    separated, settings, written_for)  # benchmarks/common.py

HERE = Path(__file__).resolve().parent
ENV = "InvertedPendulum-v5"
EVAL_EPISODES = 5
MAX_RETURN = 1000.0
#: the date of the run the template's hand-written notes describe
NOTES_WRITTEN_FOR = "2026-11-25 15:46"

CONFIG = {
    "horizon": 16, "n_envs": 64, "updates_per_episode": 50, "min_steps_per_iteration": 100,
    "random_episodes": 5, "recent_episodes": 1, "gamma": 0.99, "lam": 0.95, "reward_scale": 0.1,
    "init_log_std": -0.5, "model_max_epochs": 20,
}


def run_seed(seed: int, steps: int, eval_every: int, out: Path | None) -> dict:
    """One ``pathwise.train.train`` run into ``OUT/out/mujoco/seed_N``; its summary and evaluation curve."""
    from pathwise.train import train

    start, run_dir = time.perf_counter(), Path(out or HERE) / "out" / "mujoco" / f"seed_{seed}"
    trainer, s = train("svgk", ENV, steps, seed=seed, overrides=dict(CONFIG), out=run_dir, eval_every=eval_every,
                       eval_episodes=EVAL_EPISODES, quiet=True, overwrite=True)
    wall = time.perf_counter() - start
    print(f"seed {seed}: final {s['final_return_mean']:.1f}, best {s['best_return_mean']:.1f} at "
          f"{s['best_env_steps']} steps; {wall:.0f} s", flush=True)
    return {"seed": seed, "env_steps": s["env_steps"], "final": s["final_return_mean"],
            "final_std": s["final_return_std"], "best": s["best_return_mean"], "best_step": s["best_env_steps"],
            "train_s": s["train_time_s"], "wall_s": wall,
            "evals": [{"step": e["env_steps"], "return": e["eval_return_mean"]} for e in trainer.evals]}


def plot(runs: list[dict], out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        ax.plot([e["step"] for e in r["evals"]], [e["return"] for e in r["evals"]], "o-", label=f"seed {r['seed']}")
    ax.axhline(MAX_RETURN, color="gray", ls="--", lw=1, label="max (1000 steps upright)")
    ax.set(xlabel="real environment steps", ylabel="evaluation return",
           title=f"svgk (learned model) on Gymnasium {ENV}")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, "mujoco_inverted_pendulum.png", out)


def measure(args: argparse.Namespace) -> dict:
    try:
        import mujoco  # noqa: F401
    except ImportError:
        raise SystemExit("bench_mujoco needs the mujoco extra: pip install -e '.[mujoco]'") from None
    facts = machine("mujoco")
    seeds = args.seeds or (1 if args.quick else 2)
    steps = args.steps or (600 if args.quick else 3000)
    eval_every = max(steps // 6, 100)
    ran = [run_seed(seed, steps, eval_every, args.out) for seed in range(args.first_seed, args.first_seed + seeds)]
    saved = saved_results("mujoco", args.results) or {}
    earlier = saved.get("runs", []) if saved.get("steps") == steps else []
    runs = sorted(merge_runs(earlier, ran, key=lambda r: r["seed"]), key=lambda r: r["seed"])
    plot(runs, args.out)
    return {"machine": finished(facts), "quick": args.quick, "env": ENV, "steps": steps, "eval_every": eval_every,
            "eval_episodes": EVAL_EPISODES, "config": CONFIG,
            "earlier_seeds": sorted({r["seed"] for r in runs} - {r["seed"] for r in ran}), "runs": runs}


def view(results: dict) -> dict:
    runs = [{**r, "evals": separated(r["evals"])} for r in results["runs"]]
    return {**results, "runs": runs, "options": settings(results["config"], " "),
            "earlier": separated(results["earlier_seeds"]), "n_runs": len(runs),
            "final_mean": sum(r["final"] for r in runs) / len(runs), "notes": written_for(results, NOTES_WRITTEN_FOR)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed x 600 real steps")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first_seed..first_seed+seeds-1; runs of other seeds with the same --steps already "
                             "in the results file are kept in the table")
    publish(options(parser, "mujoco").parse_args(), "mujoco", "65_mujoco", measure, view)


if __name__ == "__main__":
    main()
