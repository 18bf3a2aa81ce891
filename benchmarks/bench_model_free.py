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
    from pathwise.train import build_config

    cls = get(algo)
    config, _ = build_config(cls, ENV)  # defaults < the shipped preset (pathwise/presets/<algo>.toml)
    learner = cls(ENV, config, seed=seed)
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


def stays_solved_from(curve: dict) -> int | None:
    """First evaluation step after which every evaluation is >= the threshold (None if the last one is not)."""
    below = [s for s, r in zip(curve["steps"], curve["returns"]) if r < THRESHOLD]
    if not below:
        return curve["steps"][0]
    if below[-1] == curve["steps"][-1]:
        return None
    return next(s for s in curve["steps"] if s > below[-1])


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
    lines = ["| algorithm | seed | steps to -200 | stays >= -200 from | train wall-clock to -200 (s) | return @2k | "
             "@5k | @20k | final |", "|---|---|---|---|---|---|---|---|---|"]
    for algo, curves in results.items():
        for seed, curve in enumerate(curves):
            step, t = first_solved(curve)
            cols = [fmt(at(curve, s)) for s in REPORT_AT]
            lines.append(f"| {algo} | {seed} | {fmt(step)} | {fmt(stays_solved_from(curve))} | {fmt(t, '{:.1f}')} | "
                         + " | ".join(cols)
                         + f" | {curve['returns'][-1]:.0f} |")
    return lines


def update_timing(algos: list[str], updates: int = 1000) -> list[str]:
    """Milliseconds per gradient update (one jitted call of ``updates`` updates, after compiling) and per env step."""
    import dataclasses

    import jax
    import jax.numpy as jnp

    from pathwise.algorithms import common, get

    lines = ["| algorithm | critic hidden | ms / update (batch 256) | ms / env step (interaction) |", "|---|---|---|---|"]
    for algo in algos:
        cls = get(algo)
        for hidden in [(64, 64), (256, 256)]:
            learner = cls(ENV, dataclasses.replace(cls.Config(), critic_hidden=hidden, learning_starts=0), seed=0)
            learner.train_iteration()  # compiles and fills the buffer with one episode
            state, key = learner.state, jax.random.key(1)
            episode = jax.tree.map(jnp.zeros_like, common.replay.sample(state.buffer, key, learner.max_steps))
            args = (episode, jnp.int32(0), jnp.int32(updates), key)
            jax.block_until_ready(learner.learn(state, *args))  # warm-up call
            start = time.perf_counter()
            jax.block_until_ready(learner.learn(state, *args))
            per_update = (time.perf_counter() - start) / updates * 1e3
            noise = np.zeros(learner.noise_dim, np.float32)
            start = time.perf_counter()
            _, length, _ = common.collect_episode(
                learner.env, 0, lambda obs, t: learner.behaviour_action(state, obs, noise), learner.max_steps)
            per_step = (time.perf_counter() - start) / length * 1e3
            lines.append(f"| {algo} | {hidden} | {per_update:.2f} | {per_step:.3f} |")
            print(lines[-1], flush=True)
    return lines


def medians(results: dict) -> list[str]:
    lines = ["| algorithm | seeds solved | median steps to -200 | median train wall-clock to -200 (s) | "
             "median return @20k |", "|---|---|---|---|---|"]
    for algo, curves in results.items():
        solved = [first_solved(c) for c in curves]
        steps = [s for s, _ in solved if s is not None]
        times = [t for s, t in solved if s is not None]
        final = [at(c, 20000) for c in curves if at(c, 20000) is not None]
        lines.append(f"| {algo} | {len(steps)}/{len(curves)} | {fmt(np.median(steps) if steps else None)} | "
                     f"{fmt(np.median(times) if times else None, '{:.1f}')} | "
                     f"{fmt(np.median(final) if final else None)} |")
    return lines


def machine_load() -> str:
    import os

    return f"`nproc` = {os.cpu_count()}, load average (1/5/15 min) {' / '.join(f'{x:.1f}' for x in os.getloadavg())}"


def write_section(results: dict, command: str, figure: Path, timing: list[str], load: str = "") -> str:
    solved = {a: sum(first_solved(c)[0] is not None for c in cs) for a, cs in results.items()}
    lines = [
        "## Model-free pathwise learners on Pendulum-v1 (DDPG, SVG(0))", "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).date().isoformat()}  ",
        "Machine: 2-core CPU container, no GPU; shared with other jobs during this run  ",
        *([f"Load when the timing table was measured: {load} (wall-clock and ms numbers are inflated "
           "accordingly; compare rows with each other, not with other machines)  "] if load else []),
        f"Versions: {versions()}", "",
        f"Protocol: evaluation every {EVAL_EVERY} steps, {EVAL_EPISODES} deterministic episodes with "
        f"`reset(seed={EVAL_SEED}+i)`; solved = mean return >= {THRESHOLD:.0f}. Wall-clock is training time "
        "(Gymnasium interaction + jitted update scans + compilation), evaluation excluded. Configs: the shipped "
        "presets `pathwise/presets/{ddpg,svg0}.toml` (what `pathwise train ddpg --env Pendulum-v1` uses). SB3's SAC, TD3 and DDPG (RL Zoo hyperparameters) against these two, side by side in one run on the idle machine: the section 'pathwise vs Stable-Baselines3 on Pendulum-v1'.",
        "", *medians(results), "", "Per seed:", "", *table(results), "",
        "Seeds solved: " + ", ".join(f"{a} {n}/{len(results[a])}" for a, n in solved.items()), "",
        f"![learning curves](../figures/{figure.name})", "",
        "Cost of the pieces (default configs except the critic width; one jitted call of 1,000 updates timed after "
        "compilation; interaction = one 200-step Gymnasium episode with a jitted policy call per step):", "",
        *timing, "",
        "On a loaded shared machine these per-update and per-step times fluctuate by several times between "
        "neighbouring rows (a wider critic can time faster than a narrower one): read them as orders of magnitude, "
        "and the steps-to-threshold columns above as the result.", "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed x 6,000 steps")
    parser.add_argument("--algos", default="ddpg,svg0")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--no-section", action="store_true", help="do not write the BENCHMARKS section")
    parser.add_argument("--replot", action="store_true",
                        help="reuse the curves in benchmarks/out/model_free.json (re-measure timing, rewrite outputs)")
    args = parser.parse_args()
    seeds = args.seeds or (1 if args.quick else 3)
    steps = args.steps or (6000 if args.quick else 20000)
    algos = [a for a in args.algos.split(",") if a]
    out = HERE / "out" / "model_free.json"
    if args.replot:
        results = json.loads(out.read_text())
    else:
        results = {a: [] for a in algos}
        for seed in range(seeds):
            for algo in algos:
                results[algo].append(run(algo, seed, steps))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results))
    timing = update_timing(list(results))
    load = machine_load()
    figure = HERE / "figures" / ("model_free_pendulum_quick.png" if args.quick else "model_free_pendulum.png")
    plot(results, figure)
    command = "python benchmarks/bench_model_free.py" + (" --quick" if args.quick else "")
    if args.algos != "ddpg,svg0" or args.seeds or args.steps:
        command += f" --algos {args.algos} --seeds {seeds} --steps {steps}"
    section = write_section(results, command, figure, timing, load)
    print(section)
    if not args.no_section:
        (HERE / "sections" / "50_model_free_pendulum.md").write_text(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
