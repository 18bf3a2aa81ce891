"""MuJoCo end to end: SVG(k) on a learned model of Gymnasium InvertedPendulum-v5.

    python benchmarks/bench_mujoco.py            # 2 seeds x 3,000 real steps (~10 min on 2 busy cores)
    python benchmarks/bench_mujoco.py --quick    # 1 seed x 600 real steps

Writes benchmarks/sections/65_mujoco.md and benchmarks/figures/mujoco_inverted_pendulum.png.
Needs the ``mujoco`` extra (``pip install -e '.[mujoco]'``: gymnasium[mujoco] = mujoco + imageio).

Protocol: ``pathwise.train("svgk", "InvertedPendulum-v5", steps, config=CONFIG)``, i.e. exactly
``pathwise train svgk --env InvertedPendulum-v5 --steps N`` with the options below. The env is a black
box; pathwise knows only its reward and termination on observations (``pathwise.rewards``:
``1`` per step while ``|pole angle| ≤ 0.2``; the value is Gymnasium's, the derivative that of the smooth
surrogate ``1 − (angle/0.2)²``). Each iteration collects whole real episodes (at least
``min_steps_per_iteration`` steps), refits the dynamics model on all data, then takes
``updates_per_episode`` SVG(k) actor-critic steps on k-step imagined rollouts that stop at the known
termination. Evaluation: the deterministic policy on Gymnasium's env (max return 1000).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SECTION = HERE / "sections" / "65_mujoco.md"
FIGURES = HERE / "figures"
OUT = HERE / "out" / "mujoco"
ENV = "InvertedPendulum-v5"

CONFIG = {
    "horizon": 16, "n_envs": 64, "updates_per_episode": 50, "min_steps_per_iteration": 100,
    "random_episodes": 5, "recent_episodes": 1, "gamma": 0.99, "lam": 0.95, "reward_scale": 0.1,
    "init_log_std": -0.5, "model_max_epochs": 20,
}


def plot(runs: list[dict]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        ax.plot([e["env_steps"] for e in r["evals"]], [e["eval_return_mean"] for e in r["evals"]], "o-",
                label=f"seed {r['seed']}")
    ax.axhline(1000, color="gray", ls="--", lw=1, label="max (1000 steps upright)")
    ax.set_xlabel("real environment steps")
    ax.set_ylabel("evaluation return")
    ax.set_title(f"svgk (learned model) on Gymnasium {ENV}")
    ax.legend()
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / "mujoco_inverted_pendulum.png"
    tmp = path.with_name("mujoco_inverted_pendulum.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)
    return "figures/mujoco_inverted_pendulum.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first_seed..first_seed+seeds-1; runs of other seeds with the same --steps "
                             "already in benchmarks/out/mujoco/results.json are kept in the table")
    args = parser.parse_args()
    try:
        import mujoco
    except ImportError:
        raise SystemExit("bench_mujoco needs the mujoco extra: pip install -e '.[mujoco]'") from None
    import gymnasium as gym
    import jax

    from pathwise.checkpoint import atomic_write_text
    from pathwise.train import train

    seeds = args.seeds or (1 if args.quick else 2)
    steps = args.steps or (600 if args.quick else 3000)
    eval_every = max(steps // 6, 100)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "n/a"
    runs = []
    for seed in range(args.first_seed, args.first_seed + seeds):
        t0 = time.perf_counter()
        trainer, summary = train("svgk", ENV, steps, seed=seed, overrides=dict(CONFIG), out=OUT / f"seed_{seed}",
                                 eval_every=eval_every, eval_episodes=5, quiet=True)
        wall = time.perf_counter() - t0
        runs.append({"seed": seed, "summary": summary, "evals": list(trainer.evals), "wall_s": wall})
        print(f"seed {seed}: final {summary['final_return_mean']:.1f}, best {summary['best_return_mean']:.1f} "
              f"at {summary['best_env_steps']} steps; {wall:.0f} s", flush=True)
    if (OUT / "results.json").exists():
        ran = {r["seed"] for r in runs}
        old = [r for r in json.loads((OUT / "results.json").read_text())
               if r["seed"] not in ran and r.get("steps") == steps]
        runs = sorted(old + runs, key=lambda r: r["seed"])
    for r in runs:
        r["steps"] = steps
    atomic_write_text(OUT / "results.json", json.dumps(runs, indent=1, default=float))
    figure = plot(runs)
    rows = []
    for r in runs:
        s = r["summary"]
        curve = ", ".join(f"{e['env_steps']}: {e['eval_return_mean']:.0f}" for e in r["evals"])
        rows.append(f"| {r['seed']} | {s['env_steps']} | {s['final_return_mean']:.1f} ± {s['final_return_std']:.1f} "
                    f"| {s['best_return_mean']:.1f} (at {s['best_env_steps']}) | {s['train_time_s']:.0f} | {curve} |")
    date = subprocess.run(["date", "-u", "+%F %H:%M UTC"], capture_output=True, text=True).stdout.strip()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    command = "python benchmarks/bench_mujoco.py" + (" --quick" if args.quick else "")
    command += (f" --seeds {args.seeds}" if args.seeds else "") + (f" --steps {args.steps}" if args.steps else "")
    command += f" --first-seed {args.first_seed}" if args.first_seed else ""
    if len(runs) > seeds:
        earlier = sorted({r["seed"] for r in runs} - set(range(args.first_seed, args.first_seed + seeds)))
        command += f" (plus earlier runs of seeds {earlier} with the same steps)"
    options = " ".join(f"{k}={v}" for k, v in CONFIG.items())
    finals = [r["summary"]["final_return_mean"] for r in runs]
    lines = [
        f"## MuJoCo: `svgk` on a learned model of `{ENV}`",
        "",
        f"Command: `{command}` · date {date} · 2-core CPU container, no GPU (`nproc` = {nproc}); shared with "
        f"other jobs during this run (load average at the start: {load}) · python {platform.python_version()}, "
        f"jax {jax.__version__}, gymnasium {gym.__version__}, mujoco {mujoco.__version__}.",
        "",
        f"Equivalent CLI: `pathwise train svgk --env {ENV} --steps {steps} --set {options}`. "
        "The MuJoCo simulator is a black box: pathwise learns an MLP model of its observations and knows only "
        "the reward and termination on observations (`pathwise.rewards.inverted_pendulum_reward`: Gymnasium's "
        "value, +1 per step while |pole angle| ≤ 0.2, exactly; because that value is piecewise constant, "
        "its derivative is replaced by that of the surrogate 1 − (angle/0.2)² — straight-through; the "
        "termination is used as a mask in the imagined k-step rollouts, no gradient flows through it). "
        "Each iteration collects whole real episodes (≥ min_steps_per_iteration steps; a falling pole "
        "ends an episode after a few steps), refits the model, then takes updates_per_episode SVG(k) "
        "actor-critic steps from real start states. Evaluation: deterministic policy, "
        "5 Gymnasium episodes (max return 1000).",
        "",
        "| seed | real steps | final return | best return | train wall-clock (s) | eval curve (steps: return) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Result: final mean return {np.mean(finals):.1f} over {len(runs)} seed(s) after {steps} real steps "
        "(1000 = balanced for the whole episode).",
        "",
    ]
    if figure:
        lines += [f"![svgk on {ENV}]({figure})", "", f"Figure: `{figure}`", ""]
    atomic_write_text(SECTION, "\n".join(lines))
    print(f"wrote {SECTION.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
