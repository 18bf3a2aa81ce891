"""pathwise vs Stable-Baselines3 on Gymnasium Pendulum-v1: steps and wall-clock to -200, side by side.

Runs pathwise's model-based (mbrl, svg-inf, svg1, svgk) and model-free (svg0,
ddpg) learners and SB3's SAC, TD3 and DDPG (RL Zoo hyperparameters for
Pendulum-v1) interleaved in one process — seed-major, so machine drift hits
all of them alike — with the same evaluation protocol: every 1,000
environment steps, 10 deterministic episodes on the same seeded resets.
Wall-clock is training time with evaluation excluded, on both sides.

    python benchmarks/bench_sb3.py                 # full: 3 seeds
    python benchmarks/bench_sb3.py --quick         # 1 seed, short budgets
    python benchmarks/bench_sb3.py --algos svg-inf,sac --seeds 3
    python benchmarks/bench_sb3.py --from-json     # re-render the section only

Writes benchmarks/results/sb3.json and benchmarks/sections/70_sb3.md (from benchmarks/templates/70_sb3.md)
after every run, so an interrupted run still leaves its table (marked with the runs done), and
benchmarks/figures/sb3_pendulum.png; every evaluation curve goes to benchmarks/out/sb3_curves.json (not in git).
``--out DIR`` / ``--results PATH`` write elsewhere (a partial comparison, a smoke run). Needs the `bench` extra
for the SB3 learners (a run of pathwise learners only does not).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

from common import (finished, machine, median_or_none, options, publish, render, save_figure,  # noqa: I001
                    save_results, separated, write_section)  # benchmarks/common.py
from pathwise.checkpoint import atomic_write_text

HERE = Path(__file__).resolve().parent
ENV = "Pendulum-v1"
THRESHOLD = -200.0
EVAL_EVERY = 1000
EVAL_EPISODES = 10
REPORT_AT = (2000, 5000, 20000)

PATHWISE = ["mbrl", "svg-inf", "svg1", "svgk", "svg0", "ddpg"]
SB3 = ["sac", "td3", "ddpg-sb3"]
#: the model-based learners compared with SAC, in the order the section lists them
MODEL_BASED = ("svg-inf", "mbrl", "svg1", "svgk")
#: budgets (environment steps): full, quick
BUDGET = {"mbrl": (5000, 2000), "svg-inf": (5000, 2000), "svg1": (10000, 2000), "svgk": (10000, 2000),
          "svg0": (20000, 2000), "ddpg": (20000, 2000), "sac": (20000, 2000), "td3": (20000, 2000),
          "ddpg-sb3": (20000, 2000)}


def limit_threads(threads: int, torch_too: bool = True) -> None:
    """One compute thread (or ``threads``) for torch, XLA and BLAS alike; must run before jax/torch compute."""
    n = str(threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n
    if threads == 1 and "--xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    if not torch_too:
        return
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)


def eval_seed(seed: int) -> int:
    # per-seed evaluation episodes, as pathwise.train.Trainer chose them before 0.2 (it now uses the same episodes,
    # pathwise.ceilings.EVALUATION_SEED, for every seed); kept so that reruns compare with the saved results
    return 10_000 + 1_000 * seed


def resolve_configs(algos: list[str]) -> tuple[dict, dict]:
    """Each pathwise algorithm's config (defaults < shipped preset), fixed once so every seed uses the same."""
    from pathwise import algorithms, registry
    from pathwise import config as cfg_mod

    cfgs, preset = {}, {}
    for algo in algos:
        if algo in SB3:
            continue
        algorithm = algorithms.get(algo)
        values = registry.record(ENV).preset(algorithm.name)[0]
        cfgs[algo] = cfg_mod.build(algorithm.Config, algorithm.name, values)
        preset[algo] = bool(values)
    return cfgs, preset


def run_pathwise(algo: str, seed: int, steps: int, cfg, stop_at_solve: bool = False) -> dict:
    from pathwise import algorithms
    from pathwise.train import Run, Trainer

    run = Run(algorithms.get(algo), ENV, cfg, seed)
    trainer = Trainer(run, eval_every=EVAL_EVERY, eval_episodes=EVAL_EPISODES, eval_seed=eval_seed(seed), quiet=True)
    stop = (lambda info: not (stop_at_solve and info.get("eval_return_mean", -np.inf) >= THRESHOLD))  # noqa: E731
    trainer.train(steps, callback=stop)
    return {"steps": [e["env_steps"] for e in trainer.evals], "returns": [e["eval_return_mean"] for e in trainer.evals],
            "times": [e["time"] for e in trainer.evals]}




def sb3_model(algo: str, seed: int):
    import gymnasium as gym
    from stable_baselines3 import DDPG, SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    env = gym.make(ENV)
    if algo == "sac":  # rl-zoo3 hyperparams/sac.yml, Pendulum-v1
        return SAC("MlpPolicy", env, learning_rate=1e-3, seed=seed, verbose=0, device="cpu")
    # rl-zoo3 hyperparams/{td3,ddpg}.yml, Pendulum-v1
    noise = NormalActionNoise(mean=np.zeros(1), sigma=0.1 * np.ones(1))
    kwargs = dict(gamma=0.98, buffer_size=200_000, learning_starts=10_000, action_noise=noise, gradient_steps=1,
                  train_freq=1, learning_rate=1e-3, policy_kwargs=dict(net_arch=[400, 300]), seed=seed, verbose=0,
                  device="cpu")
    return (TD3 if algo == "td3" else DDPG)("MlpPolicy", env, **kwargs)


def run_sb3(algo: str, seed: int, steps: int, stop_at_solve: bool = False) -> dict:
    from stable_baselines3.common.callbacks import BaseCallback

    from pathwise.envs import evaluate

    model = sb3_model(algo, seed)
    rec = {"steps": [], "returns": [], "times": []}

    class EvalCallback(BaseCallback):
        def _on_training_start(self):
            self.train_time, self.t0 = 0.0, time.perf_counter()

        def _on_step(self):
            if self.num_timesteps % EVAL_EVERY == 0:
                self.train_time += time.perf_counter() - self.t0
                res = evaluate(lambda o: model.predict(o, deterministic=True)[0], ENV, episodes=EVAL_EPISODES,
                               seed=eval_seed(seed))
                rec["steps"].append(self.num_timesteps)
                rec["returns"].append(float(res.mean))
                rec["times"].append(round(self.train_time, 3))
                self.t0 = time.perf_counter()
                if stop_at_solve and res.mean >= THRESHOLD:
                    return False
            return True

    model.learn(total_timesteps=steps, callback=EvalCallback())
    return rec


def first_solved(rec: dict) -> tuple[int | None, float | None]:
    for s, r, t in zip(rec["steps"], rec["returns"], rec["times"]):
        if r >= THRESHOLD:
            return s, t
    return None, None


def at(rec: dict, step: int) -> float | None:
    """The return at the first evaluation made once ``step`` environment steps were taken."""
    for s, r in zip(rec["steps"], rec["returns"]):
        if step <= s < step + EVAL_EVERY:
            return r
    return None


def compile_cache() -> dict:
    """Whether JAX's persistent compilation cache was on, and how many entries it held when the run started."""
    import jax

    path = jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR")
    return {"on": bool(path), "entries": len(list(Path(path).glob("*"))) if path and Path(path).is_dir() else 0}


def ratios_to_sac(recs: list[dict], sac: list[dict]) -> dict | None:
    """Medians over seeds of this learner's steps and wall-clock to -200 divided by SAC's on the same seed (each
    seed's pair ran back to back), and each seed's two wall-clocks; None unless both solved on every seed."""
    pairs = [(first_solved(b), first_solved(a)) for b, a in zip(recs, sac)]
    if not pairs or any(x[0] is None for pair in pairs for x in pair):
        return None
    return {"steps": float(np.median([b[0] / a[0] for b, a in pairs])),
            "seconds": float(np.median([b[1] / a[1] for b, a in pairs])),
            "seed_seconds": [[b[1], a[1]] for b, a in pairs]}


def summarize(algo: str, recs: list[dict], sac: list[dict], preset: bool | None) -> dict:
    """One learner's seeds as the table shows them: medians over seeds (steps and time to -200 only when every seed
    got there), seed 0's time, the returns at the reporting steps, the final return and the per-seed ratios to SAC."""
    solved = [first_solved(r) for r in recs]
    every = all(s is not None for s, _ in solved)
    return {"algo": algo, "library": "sb3" if algo in SB3 else "pathwise", "preset": preset,
            "budget": max(r["steps"][-1] for r in recs), "runs": len(recs),
            "solved": sum(s is not None for s, _ in solved),
            "steps": median_or_none([s for s, _ in solved]) if every else None,
            "seconds": median_or_none([t for _, t in solved]) if every else None, "seconds_seed0": solved[0][1],
            "at": [median_or_none([at(r, step) for r in recs]) for step in REPORT_AT],
            "final": float(np.mean([r["returns"][-1] for r in recs])), "final_step": recs[0]["steps"][-1],
            "vs_sac": ratios_to_sac(recs, sac) if algo in MODEL_BASED and sac else None}


def chosen(args: argparse.Namespace) -> list[str]:
    """The learners asked for (``--algos``, default all), with the budgets ``--budget`` overrides."""
    from pathwise import algorithms

    for item in filter(None, args.budget.split(",")):
        name, value = item.split("=")
        BUDGET[name] = (int(value), int(value))
    wanted = [a for a in args.algos.split(",") if a] or PATHWISE + SB3
    return [a for a in wanted if a in SB3 or a in algorithms.available()]


def measure(args: argparse.Namespace) -> dict:
    """Every learner on every seed, seed-major; results, section, figure and curves rewritten after every run."""
    from pathwise import registry

    facts, algos = machine("stable-baselines3", "torch"), chosen(args)
    cfgs, preset = resolve_configs(algos)
    seeds = args.seeds or (1 if args.quick else 3)
    head = {"quick": args.quick, "threads": args.threads, "compile_cache": compile_cache(),
            "algos_option": [a for a in args.algos.split(",") if a] or None, "requested": algos,
            "stop_at_solve": args.stop_at_solve, "seeds": seeds, "eval_every": EVAL_EVERY,
            "eval_episodes": EVAL_EPISODES, "threshold": THRESHOLD, "report_at": REPORT_AT,
            "ceiling": registry.record(ENV).ceiling}
    curves: dict[str, list[dict]] = {a: [] for a in algos}
    for seed in range(seeds):
        for algo in algos:
            steps, start = BUDGET[algo][1 if args.quick else 0], time.perf_counter()
            rec = (run_sb3(algo, seed, steps, args.stop_at_solve) if algo in SB3 else
                   run_pathwise(algo, seed, steps, cfgs[algo], args.stop_at_solve))
            rec["total_s"] = time.perf_counter() - start
            curves[algo].append(rec)
            print(f"seed {seed} {algo:9s}: final {rec['returns'][-1]:8.1f} after {rec['steps'][-1]} steps; -200 at "
                  "{} steps / {} s".format(*first_solved(rec)), flush=True)
            results = {"machine": finished(facts), **head, "algorithms": [
                summarize(a, recs, curves.get("sac", []), preset.get(a)) for a, recs in curves.items() if recs]}
            keep(args, results, curves)
    return results


def keep(args: argparse.Namespace, results: dict, curves: dict) -> None:
    """After every run: the results, the section, the figure, and every curve (``OUT/out/sb3_curves.json``)."""
    import json

    write_section("70_sb3", render("70_sb3", view(save_results("sb3", results, args.results))), args.out)
    plot_curves(curves, results["ceiling"], results["seeds"], args.out)
    atomic_write_text(Path(args.out or HERE) / "out" / "sb3_curves.json", json.dumps(curves) + "\n")


def plot_curves(curves: dict, ceiling: float | None, n_seeds: int, out: Path | None) -> None:
    """Every seed's evaluation curve; model-based learners (with SAC) left, model-free ones right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [("model-based pathwise vs SAC", ["mbrl", "svg-inf", "svg1", "svgk", "sac"]),
              ("model-free: pathwise vs SB3", ["svg0", "ddpg", "sac", "td3", "ddpg-sb3"])]
    groups = [(t, [a for a in g if curves.get(a)]) for t, g in groups]
    groups = [(t, g) for t, g in groups if any(a not in SB3 for a in g)] or [("", [a for a in curves if curves[a]])]
    colors = {a: f"C{i}" for i, a in enumerate(PATHWISE + SB3)}
    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 4.5), squeeze=False)
    for ax, (title, algos) in zip(axes[0], groups):
        for algo in algos:
            label = ("SB3 " if algo in SB3 else "pathwise ") + algo.replace("-sb3", "")
            for j, r in enumerate(curves[algo]):  # every seed (runs may stop at different steps)
                ax.plot(r["steps"], r["returns"], ls="--" if algo in SB3 else "-", marker="o", ms=3, lw=1.2,
                        color=colors[algo], alpha=0.8, label=label if j == 0 else None)
        ax.axhline(THRESHOLD, color="g", ls=":", lw=1, label="-200")
        if ceiling:
            ax.axhline(ceiling, color="k", ls="--", lw=1, label="MPC ceiling")
        ax.set(xlabel="environment steps", ylabel="mean evaluation return (10 episodes)",
               title=f"Pendulum-v1 {title}, every seed ({n_seeds} per algorithm)")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, "sb3_pendulum.png", out)


# ----------------------------------------------------------------------------- the section's values


def row_view(a: dict, ceiling: float | None) -> dict:
    return {**a, "lib": "SB3" if a["library"] == "sb3" else "pathwise", "name": a["algo"].replace("-sb3", ""),
            "over_ceiling": a["final"] / ceiling if ceiling else None}


def versus_sac(by: dict) -> dict:
    """The best model-based learner against SAC: ratios of the medians, medians of the per-seed ratios (the
    verdict: steps ≤ 1/3, wall-clock ≤ 1/2), every model-based learner's ratios, and seed 0 alone."""
    mb, sac = [by[a] for a in MODEL_BASED if a in by and by[a]["steps"] is not None], by.get("sac")
    if not mb or sac is None:
        return {"compared": False}
    rated = [r for r in mb if r["vs_sac"]]
    sac_solved = sac["steps"] is not None and bool(rated)
    best = (min(rated, key=lambda r: (r["vs_sac"]["steps"], r["vs_sac"]["seconds"], r["steps"], r["seconds"]))
            if sac_solved else min(mb, key=lambda r: (r["steps"], r["seconds"])))
    out = {"compared": True, "sac_solved": sac_solved, "best": best}
    if not sac_solved:
        return out
    vs = best["vs_sac"]
    seed0 = best["seconds_seed0"] / sac["seconds_seed0"] if best["seconds_seed0"] and sac["seconds_seed0"] else None
    return {**out, "steps_ratio": best["steps"] / sac["steps"], "seconds_ratio": best["seconds"] / sac["seconds"],
            "per_seed": vs, "seed_seconds": separated([{"own": b, "theirs": a} for b, a in vs["seed_seconds"] or []]),
            "has_seed_seconds": bool(vs["seed_seconds"]), "steps_met": vs["steps"] <= 1 / 3 + 1e-9,
            "seconds_met": vs["seconds"] <= 0.5, "several": len(rated) > 1,
            "all_rated": separated([{"algo": r["algo"], **r["vs_sac"]} for r in rated], "; "),
            "seed0": seed0, "seed0_met": seed0 is not None and seed0 <= 0.5}


def model_free(by: dict) -> dict:
    """pathwise's model-free learners (svg0, ddpg) beside SB3's, and the fastest of each side by steps to -200."""
    ours, theirs = [by[a] for a in ("svg0", "ddpg") if a in by], [by[a] for a in SB3 if a in by]
    if not ours or not theirs:
        return {"shown": False}
    solved_ours = [r for r in ours if r["steps"] is not None]
    solved_theirs = [r for r in theirs if r["steps"] is not None]
    fastest = None
    if solved_ours and solved_theirs:
        a = min(solved_ours, key=lambda r: (r["steps"], r["seconds"]))
        b = min(solved_theirs, key=lambda r: (r["steps"], r["seconds"]))
        fastest = {"ours": a["name"], "theirs": b["name"], "steps": a["steps"] / b["steps"],
                   "seconds": a["seconds"] / b["seconds"]}
    return {"shown": True, "rows": separated(ours + theirs, "; "), "fastest": fastest}


def view(results: dict) -> dict:
    rows = [row_view(a, results["ceiling"]) for a in results["algorithms"]]
    by = {r["algo"]: r for r in rows}
    done = sum(r["runs"] for r in rows)
    missing = [a for a in PATHWISE + SB3 if a not in results["requested"]]
    return {**results, "rows": rows, "sac": versus_sac(by), "model_free": model_free(by),
            "algos_listed": separated(results["algos_option"] or []),
            "partial": done < results["seeds"] * len(results["requested"]),
            "runs_done": done, "configs": separated([r for r in rows if r["library"] == "pathwise"]),
            "budgets": separated(rows), "has_missing": bool(missing), "missing": separated(missing)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--algos", default="", help="comma-separated learners (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="compute threads for torch and XLA (default 1)")
    parser.add_argument("--stop-at-solve", action="store_true",
                        help="end each run at its first evaluation >= -200 (saves time; later columns then blank)")
    parser.add_argument("--budget", default="", help="override budgets, e.g. sac=10000,svg-inf=3000")
    args = options(parser, "sb3").parse_args()
    if not args.from_json:
        limit_threads(args.threads, torch_too=importlib.util.find_spec("torch") is not None)
    publish(args, "sb3", "70_sb3", measure, view)
    return 0


if __name__ == "__main__":
    sys.exit(main())
