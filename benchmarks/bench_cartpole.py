"""Discrete-action learners (REINFORCE, QAC, Gumbel-softmax SVG(0)) on Gymnasium CartPole-v1: steps to 475.

Every ``EVAL_EVERY`` environment steps (checked at iteration boundaries, so the
recorded step is the first boundary past each multiple) the deterministic
(argmax) policy is evaluated on 10 episodes, episode i starting from
``env.reset(seed=1000 + i)``; a run counts as solved at the first evaluation
with mean return >= 475 and stops there (``--full-budget`` keeps training to the
budget). Wall-clock is training time (interaction + jitted updates +
compilation), evaluation excluded. Runs go one after another in one process.

    python benchmarks/bench_cartpole.py                 # 3 seeds, default budgets
    python benchmarks/bench_cartpole.py --quick         # 1 seed, smaller budgets
    python benchmarks/bench_cartpole.py --algos qac --seeds 1

Writes benchmarks/sections/51_cartpole.md, benchmarks/figures/cartpole_curves.png
and the raw curves to benchmarks/out/cartpole.json.
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
ENV = "CartPole-v1"
THRESHOLD = 475.0
EVAL_EVERY = 2500
EVAL_EPISODES = 10
EVAL_SEED = 1000
BUDGETS = {"reinforce": 300_000, "qac": 300_000, "svg0-discrete": 100_000}
QUICK_BUDGETS = {"reinforce": 100_000, "qac": 100_000, "svg0-discrete": 40_000}
#: Variants of the defaults run by ``--ablation`` (seed 0, full budget of their algorithm, stop when solved).
ABLATIONS = [
    ("reinforce", {"baseline": "none"}), ("reinforce", {"baseline": "mean"}),
    ("qac", {"advantage": "q"}), ("qac", {"advantage": "q_minus_v"}),
    ("svg0-discrete", {"hard": False}), ("svg0-discrete", {"auto_entropy": False}),
]


def evaluate(learner, env: gym.Env) -> float:
    """Mean return of the deterministic policy over ``EVAL_EPISODES`` seeded episodes."""
    returns = []
    for i in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(learner.act(obs))
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def run(algo: str, seed: int, budget: int, full_budget: bool, overrides: dict | None = None) -> dict:
    """One training run with periodic evaluations; returns its curve and when it first reached 475."""
    from pathwise.algorithms import get
    from pathwise.train import build_config

    cls = get(algo)
    config, _ = build_config(cls, ENV, overrides=overrides)  # defaults < shipped preset < overrides
    learner = cls(ENV, config, seed=seed)
    env = gym.make(ENV)
    curve = {"steps": [0], "returns": [evaluate(learner, env)], "times": [0.0], "solved_step": None,
             "solved_time": None}
    train_time, next_eval = 0.0, EVAL_EVERY
    while learner.env_steps < budget:
        start = time.perf_counter()
        learner.train_iteration()
        train_time += time.perf_counter() - start
        if learner.env_steps < next_eval:
            continue
        ret = evaluate(learner, env)
        curve["steps"].append(learner.env_steps)
        curve["returns"].append(ret)
        curve["times"].append(train_time)
        next_eval = (learner.env_steps // EVAL_EVERY + 1) * EVAL_EVERY
        print(f"{algo} seed={seed} steps={learner.env_steps} return={ret:.1f} train_time={train_time:.1f}s",
              flush=True)
        if ret >= THRESHOLD and curve["solved_step"] is None:
            curve["solved_step"], curve["solved_time"] = learner.env_steps, train_time
            if not full_budget:
                break
    return curve


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

    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.5), squeeze=False)
    for ax, (algo, curves) in zip(axes[0], results.items()):
        for seed, curve in enumerate(curves):
            ax.plot(curve["steps"], curve["returns"], marker=".", label=f"seed {seed}")
        ax.axhline(THRESHOLD, color="k", ls="--", lw=1)
        ax.set(xlabel="environment steps", title=algo, ylim=(0, 520))
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("mean eval return (10 episodes)")
    fig.suptitle(f"{ENV}: deterministic evaluation every {EVAL_EVERY} steps")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: dict, budgets: dict) -> list[str]:
    lines = ["| algorithm | seed | steps to 475 | train wall-clock to 475 (s) | best eval | last eval | budget |",
             "|---|---|---|---|---|---|---|"]
    for algo, curves in results.items():
        for seed, c in enumerate(curves):
            lines.append(f"| {algo} | {seed} | {fmt(c['solved_step'])} | {fmt(c['solved_time'], '{:.1f}')} | "
                         f"{max(c['returns']):.0f} | {c['returns'][-1]:.0f} | {budgets[algo]:,} |")
    return lines


def summary(results: dict) -> list[str]:
    lines = []
    for algo, curves in results.items():
        steps = [c["solved_step"] for c in curves if c["solved_step"] is not None]
        med = f", median steps to 475: {int(np.median(steps)):,}" if steps else ""
        lines.append(f"- {algo}: solved {len(steps)}/{len(curves)} seeds{med}")
    return lines


def write_section(results: dict, budgets: dict, command: str, figure: Path) -> str:
    lines = [
        "## Discrete actions on CartPole-v1 (REINFORCE, Q actor-critic, Gumbel-softmax SVG(0))", "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).date().isoformat()}  ",
        "Machine: 2-core CPU container, no GPU; shared with other jobs during this run  ",
        f"Versions: {versions()}", "",
        f"Protocol: evaluation about every {EVAL_EVERY:,} steps (at the first iteration boundary past each "
        f"multiple), {EVAL_EPISODES} deterministic (argmax) episodes with `reset(seed={EVAL_SEED}+i)`; solved = "
        f"mean return >= {THRESHOLD:.0f}; a run stops when solved. Wall-clock is training time (Gymnasium "
        "interaction + jitted updates + compilation), evaluation excluded. Configs: the shipped "
        "presets `pathwise/presets/{reinforce,qac,svg0-discrete}.toml` (equal to the defaults in "
        "`pathwise/algorithms/{reinforce,qac,gumbel}.py`; REINFORCE: 8 episodes per step, reward-to-go with a "
        "learned value baseline; QAC: 8 lockstep envs, 8-step SARSA critic, actor weighted by G - V; "
        "svg0-discrete: straight-through Gumbel-softmax through twin one-hot critics, expected SARSA target, "
        "auto-tuned entropy weight). The first seed's wall-clock includes JIT compilation (later seeds reuse "
        "the compiled functions in the same process).",
        "", *table(results, budgets), "", *summary(results), "",
        f"![learning curves](../figures/{figure.name})", "",
    ]
    return "\n".join(lines)


def ablation_section(rows: list[tuple[str, dict, dict]], command: str) -> list[str]:
    lines = ["### Variants (seed 0, one run each)", "",
             f"Command: `{command}`", "",
             "| algorithm | change from the default | steps to 475 | best eval | last eval | steps run |",
             "|---|---|---|---|---|---|"]
    for algo, change, c in rows:
        what = ", ".join(f"{k}={v}" for k, v in change.items())
        lines.append(f"| {algo} | {what} | {fmt(c['solved_step'])} | {max(c['returns']):.0f} | "
                     f"{c['returns'][-1]:.0f} | {c['steps'][-1]:,} |")
    return lines + [""]


def run_ablation(budgets: dict) -> None:
    rows = [(algo, change, run(algo, 0, budgets[algo], False, change)) for algo, change in ABLATIONS]
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "cartpole_ablation.json").write_text(json.dumps(rows))
    text = "\n".join(ablation_section(rows, "python benchmarks/bench_cartpole.py --ablation"))
    print(text)
    section = HERE / "sections" / "51_cartpole.md"
    base = section.read_text().split("### Variants")[0] if section.exists() else ""
    section.write_text(base.rstrip() + "\n\n" + text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, smaller budgets")
    parser.add_argument("--algos", default="reinforce,qac,svg0-discrete")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--full-budget", action="store_true", help="keep training after solving")
    parser.add_argument("--no-section", action="store_true", help="do not write the BENCHMARKS section")
    parser.add_argument("--ablation", action="store_true",
                        help="run the variants in ABLATIONS and append their table to the section")
    args = parser.parse_args()
    if args.ablation:
        run_ablation(QUICK_BUDGETS if args.quick else BUDGETS)
        return 0
    seeds = args.seeds or (1 if args.quick else 3)
    budgets = QUICK_BUDGETS if args.quick else BUDGETS
    algos = [a for a in args.algos.split(",") if a]
    results: dict[str, list[dict]] = {a: [] for a in algos}
    for seed in range(seeds):
        for algo in algos:
            results[algo].append(run(algo, seed, budgets[algo], args.full_budget))
    out = HERE / "out" / "cartpole.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results))
    figure = HERE / "figures" / ("cartpole_curves_quick.png" if args.quick else "cartpole_curves.png")
    plot(results, figure)
    command = "python benchmarks/bench_cartpole.py" + (" --quick" if args.quick else "")
    if args.algos != "reinforce,qac,svg0-discrete" or args.seeds or args.full_budget:
        command += f" --algos {args.algos} --seeds {seeds}" + (" --full-budget" if args.full_budget else "")
    section = write_section(results, budgets, command, figure)
    print(section)
    if not args.no_section:
        (HERE / "sections" / "51_cartpole.md").write_text(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
