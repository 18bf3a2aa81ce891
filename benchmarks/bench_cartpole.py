"""Discrete-action learners (REINFORCE, QAC, Gumbel-softmax SVG(0)) on Gymnasium CartPole-v1: steps to 475.

Every ``EVAL_EVERY`` environment steps (checked at iteration boundaries, so the
recorded step is the first boundary past each multiple) the deterministic
(argmax) policy is evaluated on 10 episodes, episode i starting from
``env.reset(seed=1000 + i)``; a run counts as solved at the first evaluation
with mean return >= 475 and stops there (``--full-budget`` keeps training to the
budget). Wall-clock is training time (interaction + jitted updates +
compilation), evaluation excluded. Runs go one after another in one process;
each is ``pathwise.train.make_trainer(algo, "CartPole-v1", seed)`` with the
shipped preset.

    python benchmarks/bench_cartpole.py                 # 3 seeds, default budgets
    python benchmarks/bench_cartpole.py --quick         # 1 seed, smaller budgets
    python benchmarks/bench_cartpole.py --algos qac --seeds 1
    python benchmarks/bench_cartpole.py --ablation      # the variants table, added to the saved results (and kept
                                                        # by later runs of the seeds)
    python benchmarks/bench_cartpole.py --from-json     # re-render the section only

Writes benchmarks/results/cartpole.json, then benchmarks/sections/51_cartpole.md (from
benchmarks/templates/51_cartpole.md) and benchmarks/figures/cartpole_curves.png.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import (evaluation_curve, finished, load_results, machine, median_or_none, options,  # noqa: I001
                    publish, save_figure, saved_results, stability_columns)  # benchmarks/common.py

ENV = "CartPole-v1"
THRESHOLD = 475.0
EVAL_EVERY = 2500
EVAL_EPISODES = 10
EVAL_SEED = 1000
ALGOS = "reinforce,qac,svg0-discrete"
BUDGETS = {"reinforce": 300_000, "qac": 300_000, "svg0-discrete": 100_000}
QUICK_BUDGETS = {"reinforce": 100_000, "qac": 100_000, "svg0-discrete": 40_000}
#: Variants of the defaults run by ``--ablation`` (seed 0, full budget of their algorithm, stop when solved).
ABLATIONS = [
    ("reinforce", {"baseline": "none"}), ("reinforce", {"baseline": "mean"}),
    ("qac", {"advantage": "q"}), ("qac", {"advantage": "q_minus_v"}),
    ("svg0-discrete", {"actor_gradient": "gumbel"}), ("svg0-discrete", {"actor_gradient": "gumbel", "hard": False}),
    ("svg0-discrete", {"auto_entropy": False}),
]


def curve(algo: str, seed: int, budget: int, stop: bool, overrides: dict | None = None) -> dict:
    return evaluation_curve(algo, ENV, seed, budget, EVAL_EVERY, EVAL_EPISODES, EVAL_SEED, THRESHOLD, stop=stop,
                            overrides=overrides)


def summary(c: dict) -> dict:
    """A run's numbers: when it first reached the threshold, its best and last evaluation, steps run."""
    return {"solved_step": c["solved_step"], "solved_time": c["solved_time"], "best": max(c["returns"]),
            "last": c["returns"][-1], "steps_run": c["steps"][-1], **stability_columns(c.get("stability"))}


def measure(args: argparse.Namespace) -> dict:
    """The seeds of every algorithm (or, with --ablation, the variants, added to the saved results)."""
    facts = machine("equinox", "optax")
    budgets = QUICK_BUDGETS if args.quick else BUDGETS
    if args.ablation:
        rows = [{"algo": algo, "change": ", ".join(f"{k}={v}" for k, v in change.items()), "budget": budgets[algo],
                 **summary(curve(algo, 0, budgets[algo], True, change))} for algo, change in ABLATIONS]
        return {**load_results("cartpole", args.results), "variants": {"machine": finished(facts), "rows": rows}}
    seeds = args.seeds or (1 if args.quick else 3)
    curves = {a: [] for a in args.algos.split(",") if a}
    for seed in range(seeds):
        for algo in curves:
            curves[algo].append(curve(algo, seed, budgets[algo], not args.full_budget))
    plot(curves, args.out)
    saved = saved_results("cartpole", args.results) or {}
    return {"machine": finished(facts), "quick": args.quick, "full_budget": args.full_budget, "threshold": THRESHOLD,
            "eval_every": EVAL_EVERY, "eval_episodes": EVAL_EPISODES, "eval_seed": EVAL_SEED,
            "algos": [{"algo": a, "budget": budgets[a], "seeds": [{"seed": i, **summary(c)} for i, c in enumerate(cs)]}
                      for a, cs in curves.items()],
            "variants": None if args.quick else saved.get("variants")}  # the variants table of an --ablation run stays


def plot(curves: dict, out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.5), squeeze=False)
    for ax, (algo, runs) in zip(axes[0], curves.items()):
        for seed, c in enumerate(runs):
            ax.plot(c["steps"], c["returns"], marker=".", label=f"seed {seed}")
        ax.axhline(THRESHOLD, color="k", ls="--", lw=1)
        ax.set(xlabel="environment steps", title=algo, ylim=(0, 520))
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel(f"mean eval return ({EVAL_EPISODES} episodes)")
    fig.suptitle(f"{ENV}: deterministic evaluation every {EVAL_EVERY} steps")
    fig.tight_layout()
    save_figure(fig, "cartpole_curves.png", out)


def variants_view(variants: dict | None) -> dict | None:
    """The variants' rows, and whether each finding of the section holds for them."""
    if not variants:
        return None
    rows = variants["rows"]
    solved = {(r["algo"], r["change"]): r["solved_step"] is not None for r in rows}
    qac = [r for r in rows if r["algo"] == "qac"]
    return {**variants, "reinforce_solved": solved.get(("reinforce", "baseline=none"), False)
            and solved.get(("reinforce", "baseline=mean"), False),
            "qac_collapsed": bool(qac) and not any(solved[("qac", r["change"])] for r in qac),
            "qac_last": max((r["last"] for r in qac), default=None),
            "qac_budget_k": max((r["budget"] for r in qac), default=0) // 1000,
            "soft_solved": any(ok for (algo, change), ok in solved.items()
                               if algo == "svg0-discrete" and "hard=False" in change),
            "fixed_alpha_ran": ("svg0-discrete", "auto_entropy=False") in solved,
            "fixed_alpha_collapsed": not solved.get(("svg0-discrete", "auto_entropy=False"), True)}


def view(results: dict) -> dict:
    algos = [{**a, "solved": sum(s["solved_step"] is not None for s in a["seeds"]), "runs": len(a["seeds"]),
              "median_steps": median_or_none([s["solved_step"] for s in a["seeds"]])} for a in results["algos"]]
    return {**results, "per_seed": [{"algo": a["algo"], "budget": a["budget"], **s} for a in algos for s in a["seeds"]],
            "algos": algos, "variants": variants_view(results.get("variants"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, smaller budgets")
    parser.add_argument("--algos", default=ALGOS)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--full-budget", action="store_true", help="keep training after solving")
    parser.add_argument("--no-section", action="store_true",
                        help="write the section and figure to a temporary folder, not benchmarks/ (unless --out)")
    parser.add_argument("--ablation", action="store_true",
                        help="run the variants in ABLATIONS and add their table to the saved results and the section")
    args = options(parser, "cartpole").parse_args()
    if args.no_section and args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="pathwise_cartpole_"))
    publish(args, "cartpole", "51_cartpole", measure, view)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
