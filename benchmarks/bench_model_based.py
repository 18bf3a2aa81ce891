"""Model-based pathwise learners (MBRL, SVG(∞), SVG(1)) on Gymnasium Pendulum-v1: steps and wall-clock to -200.

Each learner sees the real ``Pendulum-v1`` as a black box through ``pathwise.envs`` and only knows its
reward function (``pathwise.rewards``). Every ``EVAL_EVERY`` environment steps the deterministic policy is
evaluated on 10 episodes (episode i starts from ``env.reset(seed=1000 + i)``); a run counts as solved at the
first evaluation with mean return >= -200. Wall-clock is training time (interaction + model fits + policy
updates, compilation included) with evaluation excluded. Configs are the shipped presets
``pathwise/presets/{mbrl,svg-inf,svg1}.toml`` (what ``pathwise train ALGO --env Pendulum-v1`` uses).

    python benchmarks/bench_model_based.py              # full: 3 seeds, 2,000 steps (mbrl, svg-inf), 5,000 (svg1)
    python benchmarks/bench_model_based.py --quick      # 1 seed, 600 / 1,000 steps, no section
    python benchmarks/bench_model_based.py --algos svg-inf --seeds 0,1 --set svg-inf.grad_steps=50
    python benchmarks/bench_model_based.py --replot     # rewrite figure + section from benchmarks/out/

Each finished run is merged into ``benchmarks/out/model_based.json`` (so runs can be done one at a time, in
separate processes); the section and figure are written from all runs stored there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ENV = "Pendulum-v1"
THRESHOLD = -200.0
EVAL_EVERY = 200
EVAL_EPISODES = 10
EVAL_SEED = 1000
ALGOS = ("mbrl", "svg-inf", "svg1")
BUDGET = {"mbrl": 2000, "svg-inf": 2000, "svg1": 5000}
QUICK_BUDGET = {"mbrl": 600, "svg-inf": 600, "svg1": 1000}
OUT = HERE / "out" / "model_based.json"
FIGURE = HERE / "figures" / "model_based_pendulum.png"
SECTION = HERE / "sections" / "60_model_based.md"


def parse_value(text: str):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def run(algo: str, seed: int, steps: int, overrides: dict | None = None) -> dict:
    """One training run with evaluations every ``EVAL_EVERY`` steps; returns the curve and the summary."""
    from pathwise.algorithms import get
    from pathwise.envs import evaluate, make_env
    from pathwise.train import build_config

    cls = get(algo)
    config, _ = build_config(cls, ENV, overrides=overrides or None)  # defaults < preset < overrides
    learner = cls(ENV, config, seed=seed)
    env = make_env(ENV)
    act = lambda obs: learner.act(obs)
    curve = {"steps": [], "returns": [], "stds": [], "times": []}
    train_time, next_eval = 0.0, EVAL_EVERY
    while learner.env_steps < steps:
        start = time.perf_counter()
        learner.train_iteration()
        train_time += time.perf_counter() - start
        if learner.env_steps >= next_eval or learner.env_steps >= steps:
            while next_eval <= learner.env_steps:
                next_eval += EVAL_EVERY
            res = evaluate(act, env, episodes=EVAL_EPISODES, seed=EVAL_SEED)
            curve["steps"].append(int(learner.env_steps))
            curve["returns"].append(float(res.mean))
            curve["stds"].append(float(res.std))
            curve["times"].append(round(train_time, 2))
            print(f"{algo} seed={seed} steps={learner.env_steps} return={res.mean:.1f} "
                  f"train_time={train_time:.1f}s", flush=True)
    return {"algo": algo, "seed": seed, "budget": steps, "overrides": {k: list(v) if isinstance(v, tuple) else v
                                                                        for k, v in (overrides or {}).items()},
            "curve": curve, "load": os.getloadavg()[0]}


def first_solved(curve: dict) -> tuple[int | None, float | None]:
    for step, ret, t in zip(curve["steps"], curve["returns"], curve["times"]):
        if ret >= THRESHOLD:
            return step, t
    return None, None


def fmt(x, spec="{:.0f}") -> str:
    return "—" if x is None else spec.format(x)


def ceiling() -> float | None:
    try:
        from pathwise.ceilings import ceiling as lookup
    except ImportError:
        return None
    return lookup(ENV)


def load() -> dict:
    return json.loads(OUT.read_text()) if OUT.exists() else {}


def store(result: dict) -> None:
    """Merge one run into ``OUT`` (keyed by algorithm and seed), written atomically under a lock
    (several processes may run different seeds at once)."""
    import fcntl

    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = load()
        results.setdefault(result["algo"], {})[str(result["seed"])] = result
        tmp = OUT.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(OUT)


def plot(results: dict, path: Path, ceil: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (algo, runs), color in zip(sorted(results.items()), ["C0", "C1", "C2", "C3"]):
        for i, (_, r) in enumerate(sorted(runs.items())):
            c = r["curve"]
            ax.plot(c["steps"], c["returns"], color=color, alpha=0.8, marker=".", label=algo if i == 0 else None)
    ax.axhline(THRESHOLD, color="g", ls=":", lw=1, label="-200 (solved)")
    if ceil is not None:
        ax.axhline(ceil, color="k", ls="--", lw=1, label=f"MPC ceiling ({ceil:.0f})")
    ax.set(xlabel="environment steps", ylabel=f"mean eval return ({EVAL_EPISODES} episodes)",
           title=f"{ENV}: model-based pathwise learners (each line one seed)")
    ax.set_ylim(bottom=-1600)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def table(results: dict, ceil: float | None) -> list[str]:
    lines = ["| algorithm | seed | budget | steps to -200 | train wall-clock to -200 (s) | final return (± std) | "
             "final / ceiling (1 = ceiling, higher is worse) | total train time (s) | load avg |", "|---|---|---|---|---|---|---|---|---|"]
    for algo, runs in sorted(results.items()):
        for seed, r in sorted(runs.items()):
            c = r["curve"]
            step, t = first_solved(c)
            ratio = fmt(c["returns"][-1] / ceil, "{:.2f}") if ceil else "n/a"
            lines.append(f"| {algo} | {seed} | {r['budget']} | {fmt(step)} | {fmt(t, '{:.1f}')} | "
                         f"{c['returns'][-1]:.0f} ± {c['stds'][-1]:.0f} | {ratio} | {c['times'][-1]:.0f} | "
                         f"{r.get('load', float('nan')):.1f} |")
    return lines


def summary(results: dict) -> list[str]:
    lines = ["| algorithm | budget | seeds reaching -200 within budget | max steps to -200 | "
             "max train wall-clock to -200 (s) | median final return |", "|---|---|---|---|---|---|"]
    for algo, runs in sorted(results.items()):
        solved = [first_solved(r["curve"]) for r in runs.values()]
        budget = max(r["budget"] for r in runs.values())
        ok = [(s, t) for s, t in solved if s is not None and s <= budget]
        finals = [r["curve"]["returns"][-1] for r in runs.values()]
        all_ok = len(ok) == len(solved)
        lines.append(f"| {algo} | {budget} | {len(ok)}/{len(solved)} | "
                     f"{fmt(max(s for s, _ in ok) if all_ok else None)} | "
                     f"{fmt(max(t for _, t in ok) if all_ok else None, '{:.0f}')} | {np.median(finals):.0f} |")
    return lines


def versions() -> str:
    import equinox
    import gymnasium
    import jax

    return f"jax {jax.__version__}, equinox {equinox.__version__}, gymnasium {gymnasium.__version__}"


def presets_text() -> list[str]:
    from pathwise import presets

    lines = []
    for algo in ALGOS:
        values, run_settings = presets.load(algo, ENV)
        shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "(algorithm defaults)"
        lines.append(f"- `{algo}` (`pathwise/presets/{algo}.toml`): {shown}; run {run_settings}")
    return lines


#: What the stored runs showed (hand-written with the runs of 2026-11-25; rerun and re-read before trusting it).
OBSERVATIONS = [
    "- `mbrl` is the reliable one: every seed passes -200 after 3 real episodes (600 steps) and ends near "
    "-170, about 10% below the MPC ceiling (its policy is a 64x64 tanh MLP trained on a 200x200 model from "
    "2,000 transitions).",
    "- `svg1` learns but is unstable at 5,000 steps: the evaluation return oscillates between about -190 and "
    "-900 from one evaluation to the next once it first passes -300 (critic loss rising as the policy starts "
    "balancing), so whether a seed 'reaches -200' depends on when it is evaluated.",
    "- `svg-inf` is not reliable at 2,000 steps (table). Found on the way: with ξ re-inferred at every Adam "
    "step the replay always reproduces the recorded actions, so the 100 steps per episode follow the same "
    "action gradient and the policy saturated within two episodes (pre-squash means beyond ±10, constant "
    "torque, return about -1450 on 3 of 3 tries); the noises are now inferred once per episode "
    "(`reinfer_noise=False`) and the in-update objective rises (e.g. -160 to -127). Seed-0 runs of 2,000 "
    "steps with that fix: whole episodes with 50-step truncation, no uniform warm-up (the preset) best -288 "
    "at 1,600; the same with a uniform warm-up episode best -409; with init_log_std -1.5 flat at -1105; "
    "64 random 50-step windows per Adam step flat at -1102; with the warm-up, init_log_std -1.5 and 200 "
    "Adam steps best -804. `make demo` should use `mbrl` until svg-inf is tuned further.",
    "- Wall-clock: the first full runs shared the 2 cores with up to ~25 other processes (load average "
    "12-30; mbrl then needed 880-960 s to reach -200, mostly XLA compilation). Every row in the table was "
    "rerun, one of my processes at a time except that svg-inf seed 0 overlapped svg1 seed 0, once the machine was nearly idle (load average when each run ended: last "
    "column); the curves came out identical (the runs are deterministic given the seed) and only the times "
    "changed. mbrl reaches -200 in 20-31 s of training and finishes 2,000 steps in about a minute, inside the "
    "3-minute target; svg1's 5,000 steps take 21-31 s.",
]


def write_section(results: dict, command: str) -> str:
    ceil = ceiling()
    overrides = {f"{a}/{s}": r["overrides"] for a, rs in results.items() for s, r in rs.items() if r["overrides"]}
    lines = [
        "## Model-based pathwise learners on Pendulum-v1 (MBRL, SVG(∞), SVG(1))", "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).date().isoformat()}  ",
        f"Machine: 2-core CPU container, no GPU (`nproc` = {os.cpu_count()}), **shared with several other jobs "
        "during these runs** (the load average when each run finished is in the table: wall-clock numbers are "
        "inflated by roughly load/2 against an idle machine)  ",
        f"Versions: {versions()}", "",
        "Task: Gymnasium's real `Pendulum-v1` (through `pathwise.envs`, black-box dynamics; only the reward "
        "`pathwise.rewards.get('Pendulum-v1')` is known). Each learner fits a dynamics model on the data it "
        "collected and trains its policy by backpropagating through that model:", "",
        "- `mbrl`: the lecture's loop (collect, refit f, BPTT through the frozen f from start states drawn from "
        "the data, run the policy);",
        "- `svg-inf`: SVG(∞), the recent real episodes replayed through f with inferred noises "
        "ζ = s' − f(s, a), ξ = π⁻¹(s, a), so the model only carries gradients;",
        "- `svg1`: SVG(1)-ER, a value function after one model step, importance-weighted experience replay.", "",
        f"Protocol: evaluation every {EVAL_EVERY} steps, {EVAL_EPISODES} deterministic episodes with "
        f"`reset(seed={EVAL_SEED}+i)`; solved = mean return >= {THRESHOLD:.0f}. Wall-clock is training time "
        "(interaction, model fits, jitted policy updates and their compilation), evaluation excluded. "
        "Ceiling: `pathwise.ceilings.ceiling('Pendulum-v1')`, MPC on the true model over 100 Gymnasium "
        f"episodes = {fmt(ceil, '{:.1f}') if ceil is not None else 'n/a (not measured yet)'}.", "",
        "Presets used:", "", *presets_text(), "",
        *(["Per-run overrides: " + json.dumps(overrides), ""] if overrides else []),
        *summary(results), "", "Per seed:", "", *table(results, ceil), "",
        f"![learning curves](figures/{FIGURE.name})", "", "Observations:", "", *OBSERVATIONS, "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, short budgets, no section")
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=None, help="budget for every algorithm (default: per algorithm)")
    parser.add_argument("--set", action="append", default=[], metavar="ALGO.KEY=VALUE",
                        help="config override for one algorithm (tuning; recorded with the run)")
    parser.add_argument("--replot", action="store_true", help="only rewrite figure and section from the stored runs")
    parser.add_argument("--no-section", action="store_true")
    args = parser.parse_args()
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    unknown = sorted(set(algos) - set(ALGOS))
    if unknown:
        parser.error(f"unknown algorithms {unknown}; choose from {list(ALGOS)}")
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    overrides: dict[str, dict] = {a: {} for a in algos}
    for item in args.set:
        target, _, value = item.partition("=")
        algo, _, key = target.partition(".")
        if algo not in overrides or not key or not value:
            parser.error(f"--set {item!r}: expected ALGO.KEY=VALUE with ALGO in {algos}")
        overrides[algo][key] = parse_value(value)
    if not args.replot:
        for seed in seeds:
            for algo in algos:
                steps = args.steps or (QUICK_BUDGET if args.quick else BUDGET)[algo]
                result = run(algo, seed, steps, overrides[algo])
                if not args.quick:
                    store(result)
                else:
                    step, t = first_solved(result["curve"])
                    print(f"quick: {algo} final {result['curve']['returns'][-1]:.1f}, solved at {step} ({t} s)")
    if args.quick or args.no_section:
        return 0
    results = load()
    if not results:
        print(f"no stored runs in {OUT}")
        return 1
    plot(results, FIGURE, ceiling())
    SECTION.parent.mkdir(parents=True, exist_ok=True)
    text = write_section(results, "python benchmarks/bench_model_based.py")
    tmp = SECTION.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(SECTION)
    print(text)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
