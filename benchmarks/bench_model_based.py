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
    "- All three meet the issue's targets on 3/3 seeds: `mbrl` and `svg-inf` reach -200 within 2,000 steps "
    "(at 600-800), `svg1` within 5,000 (at 1,600-2,200), and all end between -166 and -179, "
    "10-18% below the MPC ceiling (final / ceiling 1.09-1.18). Training time to -200 on the idle machine: "
    "9-14 s for `mbrl`, 17-24 s for `svg-inf`, 23-58 s for `svg1` (its rows ran next to a test suite, load "
    "about 4, so those times are inflated about twofold), all under the 3-minute target.",
    "- `mbrl` (preset: a 128x128 dynamics model instead of 200x200, and a model fit and policy update that "
    "compile once per process instead of once per data-set size and learner) reaches -200 at 600-800 steps "
    "in 9-14 s of training; the previous 200x200 preset reached it at 600 steps in 20-31 s.",
    "- `svg-inf` learns since the inferred policy noises are clipped to [-3, 3], each Adam step replays 64 "
    "windows of 50 recorded steps, the exploration std is fixed and 0.01|mu|^2 is taken off each replayed "
    "reward (module docstring of `pathwise/algorithms/svg_inf.py`). The cause of the earlier failure (0/3, "
    "best -205..-288) was tanh saturation, not the model: the uniform warm-up episode's actions infer "
    "|xi| up to 36 and saturated actions are pinned at the squash's edge, so their replays sat in the flat "
    "part of tanh and pushed the pre-squash mean into saturation (seed 0 after 600 steps: exact xi -1191, "
    "xi clipped -201, xi set to zero -199; zeroing zeta made no difference).",
    "- `svg1` is reliable since its critic's TD target is taken through the model with the current policy's "
    "action and the replayed transition's inferred zeta (no importance weights in the critic; they stay on "
    "the actor) and it takes 4 updates per environment step. With the old replay target and 1 update per "
    "step the policy std sat at its floor, the truncated weights left an effective sample size of 2-8% of "
    "the batch, the critic loss rose to 10-45 and the evaluation return swung between -190 and -900 (2/3 "
    "seeds). Seeds beyond 0-2 still show occasional dips (seed 3: -356 once after first reaching -200, "
    "ending at -167; seed 4 holds about -172 from 1,200 to 4,800 steps and then drops to -631 at its last "
    "evaluation), so `svg1` is the least settled of the three.",
    "- After first reaching -200 every evaluation stays at or above -200 except one: `svg1` seed 1 at 2,400 "
    "steps (-315).",
    "- The runs are deterministic given the seed: the same curves came out under load and idle, only the "
    "times change.",
]


def write_section(results: dict, command: str) -> str:
    ceil = ceiling()
    overrides = {f"{a}/{s}": r["overrides"] for a, rs in results.items() for s, r in rs.items() if r["overrides"]}
    lines = [
        "## Model-based pathwise learners on Pendulum-v1 (MBRL, SVG(∞), SVG(1))", "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).date().isoformat()}  ",
        f"Machine: 2-core CPU container, no GPU (`nproc` = {os.cpu_count()}); the load average when each run "
        "finished is in the table (a load above 2 means other jobs shared the cores and inflated the wall-clock "
        "by roughly load/2)  ",
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
