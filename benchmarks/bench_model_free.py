"""Model-free pathwise learners (DDPG, SVG(0)) on Gymnasium Pendulum-v1: steps and wall-clock to -200.

Every 1,000 environment steps the deterministic policy is evaluated on 10
episodes (episode i starts from ``env.reset(seed=1000 + i)``); a run counts as
solved at the first evaluation with mean return >= -200. Wall-clock is training
time (interaction + updates, compilation included) with evaluation excluded.
Seeds run one after another, algorithms interleaved per seed, in one process.

    python benchmarks/bench_model_free.py              # full: 3 seeds x 20,000 steps
    python benchmarks/bench_model_free.py --quick      # 1 seed x 6,000 steps
    python benchmarks/bench_model_free.py --algos ddpg --seeds 1

Writes benchmarks/sections/50_model_free_pendulum.md, benchmarks/figures/model_free_pendulum.png
and the raw curves to benchmarks/out/model_free.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

HERE = Path(__file__).resolve().parent
ENV = "Pendulum-v1"
THRESHOLD = -200.0
EVAL_EVERY = 1000
EVAL_EPISODES = 10
EVAL_SEED = 1000
REPORT_AT = (2000, 5000, 20000)


def evaluate(learner, env: gym.Env) -> float:
    """Mean return of the deterministic policy over ``EVAL_EPISODES`` seeded episodes."""
    from pathwise.envs import evaluate as evaluate_policy

    return evaluate_policy(learner.act, env, episodes=EVAL_EPISODES, seed=EVAL_SEED).mean


def run(algo: str, seed: int, steps: int) -> dict:
    """One training run with evaluations every ``EVAL_EVERY`` steps; returns the curve."""
    from pathwise.algorithms import get
    from pathwise.envs import make_env

    learner = get(algo)(ENV, seed=seed)
    env = make_env(ENV)
    curve = {"steps": [0], "returns": [evaluate(learner, env)], "times": [0.0]}
    train_time, next_eval = 0.0, EVAL_EVERY
    while learner.env_steps < steps:
        start = time.perf_counter()
        learner.train_iteration()
        train_time += time.perf_counter() - start
        if learner.env_steps >= next_eval:
            curve["steps"].append(learner.env_steps)
            curve["returns"].append(evaluate(learner, env))
            curve["times"].append(train_time)
            next_eval += EVAL_EVERY
            print(f"{algo} seed={seed} steps={learner.env_steps} return={curve['returns'][-1]:.1f} "
                  f"train_time={train_time:.1f}s", flush=True)
    return curve


def first_solved(curve: dict) -> tuple[int | None, float | None]:
    for step, ret, t in zip(curve["steps"], curve["returns"], curve["times"]):
        if ret >= THRESHOLD:
            return step, t
    return None, None


def at(curve: dict, step: int) -> float | None:
    return next((r for s, r in zip(curve["steps"], curve["returns"]) if s >= step), None)


def fmt(x, spec="{:.0f}") -> str:
    return "—" if x is None else spec.format(x)


def versions() -> str:
    import equinox
    import jax
    import optax

    return f"jax {jax.__version__}, equinox {equinox.__version__}, optax {optax.__version__}, gymnasium {gym.__version__}"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (algo, curves), color in zip(results.items(), ["C0", "C1", "C2", "C3"]):
        for i, curve in enumerate(curves):
            ax.plot(curve["steps"], curve["returns"], color=color, alpha=0.8, label=algo if i == 0 else None)
    ax.axhline(THRESHOLD, color="k", ls="--", lw=1, label="-200")
    ax.set(xlabel="environment steps", ylabel="mean eval return (10 episodes)", title=f"{ENV}: model-free pathwise")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(results: dict) -> list[str]:
    lines = ["| algorithm | seed | steps to -200 | train wall-clock to -200 (s) | return @2k | @5k | @20k | final |",
             "|---|---|---|---|---|---|---|---|"]
    for algo, curves in results.items():
        for seed, curve in enumerate(curves):
            step, t = first_solved(curve)
            cols = [fmt(at(curve, s)) for s in REPORT_AT]
            lines.append(f"| {algo} | {seed} | {fmt(step)} | {fmt(t, '{:.1f}')} | " + " | ".join(cols)
                         + f" | {curve['returns'][-1]:.0f} |")
    return lines


def write_section(results: dict, command: str, figure: Path) -> str:
    solved = {a: sum(first_solved(c)[0] is not None for c in cs) for a, cs in results.items()}
    lines = [
        "## Model-free pathwise learners on Pendulum-v1 (DDPG, SVG(0))", "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).date().isoformat()}  ",
        "Machine: 2-core CPU container, no GPU; shared with other jobs during this run  ",
        f"Versions: {versions()}", "",
        f"Protocol: evaluation every {EVAL_EVERY} steps, {EVAL_EPISODES} deterministic episodes with "
        f"`reset(seed={EVAL_SEED}+i)`; solved = mean return >= {THRESHOLD:.0f}. Wall-clock is training time "
        "(Gymnasium interaction + jitted update scans + compilation), evaluation excluded. Default configs "
        "(`pathwise/algorithms/{ddpg,svg0}.py`). For reference, RL Zoo's tuned SB3 SAC/TD3/DDPG reach about -150 at 20k.",
        "", *table(results), "",
        "Seeds solved: " + ", ".join(f"{a} {n}/{len(results[a])}" for a, n in solved.items()), "",
        f"![learning curves](../figures/{figure.name})", "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed x 6,000 steps")
    parser.add_argument("--algos", default="ddpg,svg0")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--no-section", action="store_true", help="do not write the BENCHMARKS section")
    args = parser.parse_args()
    seeds = args.seeds or (1 if args.quick else 3)
    steps = args.steps or (6000 if args.quick else 20000)
    algos = [a for a in args.algos.split(",") if a]
    results: dict[str, list[dict]] = {a: [] for a in algos}
    for seed in range(seeds):
        for algo in algos:
            results[algo].append(run(algo, seed, steps))
    out = HERE / "out" / "model_free.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results))
    figure = HERE / "figures" / ("model_free_pendulum_quick.png" if args.quick else "model_free_pendulum.png")
    plot(results, figure)
    command = "python benchmarks/bench_model_free.py" + (" --quick" if args.quick else "")
    if args.algos != "ddpg,svg0" or args.seeds or args.steps:
        command += f" --algos {args.algos} --seeds {seeds} --steps {steps}"
    section = write_section(results, command, figure)
    print(section)
    if not args.no_section:
        (HERE / "sections" / "50_model_free_pendulum.md").write_text(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
