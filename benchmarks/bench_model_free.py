"""Model-free pathwise learners (DDPG, SVG(0)) on Gymnasium Pendulum-v1: steps and wall-clock to -200.

Every 1,000 environment steps the deterministic policy is evaluated on 10
episodes (episode i starts from ``env.reset(seed=1000 + i)``); a run counts as
solved at the first evaluation with mean return >= -200. Wall-clock is training
time (interaction + updates, compilation included) with evaluation excluded.
Seeds run one after another, algorithms interleaved per seed, in one process;
each run is ``pathwise.train.make_trainer(algo, "Pendulum-v1", seed)`` with the
shipped preset, as ``pathwise train ALGO --env Pendulum-v1`` builds it.

    python benchmarks/bench_model_free.py              # full: 3 seeds x 20,000 steps
    python benchmarks/bench_model_free.py --quick      # 1 seed x 6,000 steps
    python benchmarks/bench_model_free.py --algos ddpg --seeds 1
    python benchmarks/bench_model_free.py --from-json  # re-render the section only

Writes benchmarks/results/model_free.json, then benchmarks/sections/50_model_free_pendulum.md (from
benchmarks/templates/50_model_free_pendulum.md) and benchmarks/figures/model_free_pendulum.png.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import (evaluation_curve, finished, load_results, machine, median_or_none, options, publish,  # noqa: I001
                    save_figure, separated, stability_columns, update_block)  # benchmarks/common.py

ENV = "Pendulum-v1"
THRESHOLD = -200.0
EVAL_EVERY = 1000
EVAL_EPISODES = 10
EVAL_SEED = 1000
REPORT_AT = (2000, 5000, 20000)
TIMED_UPDATES = 1000
CRITIC_WIDTHS = ((64, 64), (256, 256))


def stays_solved_from(curve: dict) -> int | None:
    """First evaluation step after which every evaluation is >= the threshold (None if the last one is not)."""
    below = [s for s, r in zip(curve["steps"], curve["returns"]) if r < THRESHOLD]
    if not below:
        return curve["steps"][0]
    if below[-1] == curve["steps"][-1]:
        return None
    return next(s for s in curve["steps"] if s > below[-1])


def at(curve: dict, step: int) -> float | None:
    """The first evaluation at or after ``step`` (None if the run stopped before it)."""
    return next((r for s, r in zip(curve["steps"], curve["returns"]) if s >= step), None)


def seed_row(seed: int, curve: dict) -> dict:
    return {"seed": seed, "solved_step": curve["solved_step"], "solved_time": curve["solved_time"],
            "stays_from": stays_solved_from(curve), "at": [at(curve, s) for s in REPORT_AT],
            "final": curve["returns"][-1], **stability_columns(curve.get("stability"))}


def update_timing(algos: list[str]) -> list[dict]:
    """ms per gradient update (one jitted call of ``TIMED_UPDATES`` updates, after compiling) and per env step
    of interaction (one Gymnasium episode with a jitted policy call per step)."""
    import jax

    from pathwise.envs import make_env, run_episode
    from pathwise.train import make_run

    rows = []
    for algo in algos:
        for hidden in CRITIC_WIDTHS:
            run, _ = make_run(algo, ENV, 0, overrides={"critic_hidden": hidden, "learning_starts": 0},
                              use_preset=False)
            run.iteration()  # compiles, and fills the buffer with one episode
            call, key = update_block(run.algorithm, run.spec, run.config), jax.random.key(1)
            jax.block_until_ready(call(run.carry.algo, run.carry.buffer, TIMED_UPDATES, key))  # compiles
            start = time.perf_counter()
            jax.block_until_ready(call(run.carry.algo, run.carry.buffer, TIMED_UPDATES, key))
            per_update = (time.perf_counter() - start) / TIMED_UPDATES * 1e3
            env = make_env(ENV)
            run.act(env.observation_space.sample(), deterministic=False)  # compiles the behaviour policy
            start = time.perf_counter()
            _, _, length = run_episode(env, lambda obs: run.act(obs, deterministic=False), seed=0)
            rows.append({"algo": algo, "critic_hidden": list(hidden), "ms_per_update": per_update,
                         "ms_per_step": (time.perf_counter() - start) / length * 1e3})
            env.close()
            run.loop.close()
            print(rows[-1], flush=True)
    return rows


def measure(args: argparse.Namespace) -> dict:
    """The learning runs (or, with --replot, those of the saved results) and the timing table."""
    facts = machine("equinox", "optax")
    if args.replot:
        saved = load_results("model_free", args.results)
        timing = update_timing([a["algo"] for a in saved["algos"]])
        return {**saved, "timing": {"load": list(os.getloadavg()), "updates": TIMED_UPDATES, "rows": timing}}
    seeds = args.seeds or (1 if args.quick else 3)
    steps = args.steps or (6000 if args.quick else 20000)
    algos = [a for a in args.algos.split(",") if a]
    curves = {a: [] for a in algos}
    for seed in range(seeds):
        for algo in algos:
            curves[algo].append(evaluation_curve(algo, ENV, seed, steps, EVAL_EVERY, EVAL_EPISODES, EVAL_SEED,
                                                 THRESHOLD, stop=False))
    timing = update_timing(algos)
    plot(curves, args.out)
    return {"machine": finished(facts), "quick": args.quick, "steps": steps, "threshold": THRESHOLD,
            "eval_every": EVAL_EVERY, "eval_episodes": EVAL_EPISODES, "eval_seed": EVAL_SEED, "report_at": REPORT_AT,
            "algos": [{"algo": a, "seeds": [seed_row(i, c) for i, c in enumerate(cs)]} for a, cs in curves.items()],
            "timing": {"load": list(os.getloadavg()), "updates": TIMED_UPDATES, "rows": timing}}


def plot(curves: dict, out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (algo, runs), color in zip(curves.items(), ["C0", "C1", "C2", "C3"]):
        for i, curve in enumerate(runs):
            ax.plot(curve["steps"], curve["returns"], color=color, alpha=0.8, label=algo if i == 0 else None)
    ax.axhline(THRESHOLD, color="k", ls="--", lw=1, label=f"{THRESHOLD:.0f}")
    ax.set(xlabel="environment steps", ylabel=f"mean eval return ({EVAL_EPISODES} episodes)",
           title=f"{ENV}: model-free pathwise")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, "model_free_pendulum.png", out, dpi=120)


def algo_view(entry: dict) -> dict:
    """An algorithm's seeds solved and its medians (steps and wall-clock to the threshold, return at the last
    reporting step)."""
    seeds = entry["seeds"]
    solved = [s for s in seeds if s["solved_step"] is not None]
    return {**entry, "solved": len(solved), "runs": len(seeds),
            "median_steps": median_or_none([s["solved_step"] for s in solved]),
            "median_time": median_or_none([s["solved_time"] for s in solved]),
            "median_last": median_or_none([s["at"][-1] for s in seeds])}


def view(results: dict) -> dict:
    algos = separated([algo_view(a) for a in results["algos"]])
    rows = results["timing"]["rows"]
    ms = {(r["algo"], tuple(r["critic_hidden"])): r["ms_per_update"] for r in rows}
    return {**results, "algos": algos, "per_seed": [{"algo": a["algo"], **s} for a in algos for s in a["seeds"]],
            "report_k": [f"{s // 1000}k" for s in results["report_at"]],
            "wider_faster": any(ms.get((r["algo"], tuple(w)), 0) > r["ms_per_update"] for r in rows
                                for w in CRITIC_WIDTHS if tuple(w) < tuple(r["critic_hidden"]))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed x 6,000 steps")
    parser.add_argument("--algos", default="ddpg,svg0")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--no-section", action="store_true",
                        help="write the section and figure to a temporary folder, not benchmarks/ (unless --out)")
    parser.add_argument("--replot", action="store_true",
                        help="keep the learning runs of the saved results, re-measure the timing table only")
    args = options(parser, "model_free").parse_args()
    if args.no_section and args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="pathwise_model_free_"))
    publish(args, "model_free", "50_model_free_pendulum", measure, view)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
