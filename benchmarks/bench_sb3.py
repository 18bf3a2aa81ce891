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

Writes benchmarks/sections/70_sb3.md (or ``--section``), benchmarks/figures/sb3_pendulum.png (for another
section: sb3_<its name>.png) and the raw curves to benchmarks/out/sb3_results.json. Needs the `bench` extra.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ENV = "Pendulum-v1"
THRESHOLD = -200.0
EVAL_EVERY = 1000
EVAL_EPISODES = 10
DEFAULT_SECTION = HERE / "sections" / "70_sb3.md"

PATHWISE = ["mbrl", "svg-inf", "svg1", "svgk", "svg0", "ddpg"]
SB3 = ["sac", "td3", "ddpg-sb3"]
#: budgets (environment steps): full, quick
BUDGET = {"mbrl": (5000, 2000), "svg-inf": (5000, 2000), "svg1": (10000, 2000), "svgk": (10000, 2000),
          "svg0": (20000, 2000), "ddpg": (20000, 2000), "sac": (20000, 2000), "td3": (20000, 2000),
          "ddpg-sb3": (20000, 2000)}


def limit_threads(threads: int) -> None:
    """One compute thread (or ``threads``) for torch, XLA and BLAS alike; must run before jax/torch are imported."""
    n = str(threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n
    if threads == 1 and "--xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)


def eval_seed(seed: int) -> int:
    # the same episodes pathwise.train.Trainer evaluates on
    return 10_000 + 1_000 * seed


def resolve_configs(algos: list[str]) -> tuple[dict, dict]:
    """Each pathwise algorithm's config (defaults < shipped preset), fixed once so every seed uses the same."""
    from pathwise import presets
    from pathwise.algorithms import get
    from pathwise.train import build_config

    cfgs, preset = {}, {}
    for algo in algos:
        if algo in SB3:
            continue
        cls = get(algo)
        cfgs[algo] = build_config(cls, ENV)[0]
        preset[algo] = bool(presets.load(cls.name, ENV)[0])
    return cfgs, preset


def run_pathwise(algo: str, seed: int, steps: int, cfg, stop_at_solve: bool = False) -> dict:
    from pathwise.algorithms import get
    from pathwise.train import Trainer, make_learner

    cls = get(algo)
    learner = make_learner(cls.name, ENV, cfg, seed)
    trainer = Trainer(learner, eval_every=EVAL_EVERY, eval_episodes=EVAL_EPISODES, eval_seed=eval_seed(seed),
                      quiet=True)
    stop = (lambda info: not (stop_at_solve and info.get("eval_return_mean", -np.inf) >= THRESHOLD))  # noqa: E731
    trainer.run(steps, callback=stop)
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


def fmt(x, spec="{:.0f}"):
    return "—" if x is None else spec.format(x)


def median_or_none(xs):
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


def versions() -> str:
    import gymnasium
    import jax

    parts = [f"python {platform.python_version()}", f"jax {jax.__version__}", f"gymnasium {gymnasium.__version__}"]
    try:
        import stable_baselines3
        import torch

        parts += [f"stable-baselines3 {stable_baselines3.__version__}", f"torch {torch.__version__}"]
    except ImportError:
        pass
    return ", ".join(parts)


LOAD_AT_START = os.getloadavg()[0]
TODAY = datetime.date.today().isoformat()


def compile_cache_note() -> str:
    """Whether JAX's persistent compilation cache was on, and warm (had entries) when the run started."""
    import jax

    path = jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if not path:
        return ("JAX persistent compilation cache: off (every pathwise program was compiled in this process; "
                "nothing carried over from earlier runs)")
    n = len(list(Path(path).glob("*"))) if Path(path).is_dir() else 0
    return (f"JAX persistent compilation cache: on ({'warm' if n else 'cold'} at the start: {n} entries); "
            "seed 0's compile time is therefore " + ("mostly skipped" if n else "paid in full"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--algos", default="")
    parser.add_argument("--section", default=str(DEFAULT_SECTION))
    parser.add_argument("--threads", type=int, default=1, help="compute threads for torch and XLA (default 1)")
    parser.add_argument("--from-json", action="store_true",
                        help="only rewrite the section from benchmarks/out/sb3_results.json (pass the run's options)")
    parser.add_argument("--stop-at-solve", action="store_true",
                        help="end each run at its first evaluation >= -200 (saves time; later columns then blank)")
    parser.add_argument("--budget", default="", help="override budgets, e.g. sac=10000,svg-inf=3000")
    args = parser.parse_args()
    limit_threads(args.threads)
    for item in filter(None, args.budget.split(",")):
        name, value = item.split("=")
        BUDGET[name] = (int(value), int(value))
    from pathwise import algorithms

    wanted = [a for a in args.algos.split(",") if a] or PATHWISE + SB3
    algos = [a for a in wanted if a in SB3 or a in algorithms.available()]
    n_seeds = args.seeds or (1 if args.quick else 3)
    idx = 1 if args.quick else 0
    out_dir = HERE / "out"
    if args.from_json:  # rewrite the section and figure from a finished (or interrupted) run's saved curves
        saved = json.loads((out_dir / "sb3_results.json").read_text())
        write_section(saved["results"], args, n_seeds, saved["preset"], saved.get("load"), saved.get("date"))
        return 0
    from pathwise.checkpoint import atomic_write_text

    cfgs, preset = resolve_configs(algos)
    results: dict[str, list[dict]] = {a: [] for a in algos}
    out_dir.mkdir(exist_ok=True)
    for seed in range(n_seeds):
        for algo in algos:
            steps = BUDGET[algo][idx]
            t0 = time.perf_counter()
            rec = (run_sb3(algo, seed, steps, args.stop_at_solve) if algo in SB3 else
                   run_pathwise(algo, seed, steps, cfgs[algo], args.stop_at_solve))
            rec["total_s"] = time.perf_counter() - t0
            results[algo].append(rec)
            s, t = first_solved(rec)
            print(f"seed {seed} {algo:9s}: final {rec['returns'][-1]:8.1f} after {rec['steps'][-1]} steps; "
                  f"-200 at {s} steps / {t} s", flush=True)
            # after every run, so an interrupted run still leaves its table (marked with the seeds done)
            load = [LOAD_AT_START, os.getloadavg()[0]]  # the run's own, kept for --from-json rewrites
            atomic_write_text(out_dir / "sb3_results.json",
                              json.dumps({"results": results, "preset": preset, "load": load, "date": TODAY}))
            write_section(results, args, n_seeds, preset, load, TODAY)
    return 0


def shown_path(path: str) -> str:
    """``path`` relative to the repository when it is inside it (no machine's absolute paths in the section)."""
    p = Path(path).resolve()
    return str(p.relative_to(HERE.parent)) if p.is_relative_to(HERE.parent) else path


def algos_of(args) -> list[str]:
    return [a.strip() for a in args.algos.split(",") if a.strip()]


def write_section(results: dict, args, n_seeds: int, preset: dict, load: list | None, date: str | None) -> None:
    from pathwise.train import _ceiling

    ceil = _ceiling(ENV)
    rows = []
    for algo, recs in results.items():
        if not recs:
            continue
        solved = [first_solved(r) for r in recs]
        n_ok = sum(s is not None for s, _ in solved)
        rows.append({
            "algo": algo, "lib": "SB3" if algo in SB3 else "pathwise", "solved": f"{n_ok}/{len(recs)}",
            "steps": median_or_none([s for s, _ in solved]) if n_ok == len(recs) else None,
            "time": median_or_none([t for _, t in solved]) if n_ok == len(recs) else None,
            "time0": solved[0][1],
            "r2k": median_or_none([at(r, 2000) for r in recs]), "r5k": median_or_none([at(r, 5000) for r in recs]),
            "r20k": median_or_none([at(r, 20000) for r in recs]),
            "final": float(np.mean([r["returns"][-1] for r in recs])),
            "budget": recs[0]["steps"][-1],
        })
    cmd = "python benchmarks/bench_sb3.py" + (" --quick" if args.quick else "") + (
        f" --algos {args.algos}" if args.algos else "") + (f" --seeds {args.seeds}" if args.seeds else "") + (
        f" --budget {args.budget}" if args.budget else "") + (" --stop-at-solve" if args.stop_at_solve else "") + (f" --threads {args.threads}" if args.threads != 1 else "") + (
        f" --section {shown_path(args.section)}" if Path(args.section).resolve() != DEFAULT_SECTION.resolve() else "")
    busy = load is not None and max(load) > 2.0  # one busy core of two is this benchmark itself
    lines = [
        "## pathwise vs Stable-Baselines3 on Pendulum-v1 (sample efficiency and time to solve"
        + (f": {', '.join(algos_of(args))})" if args.algos else ")"), "",
        f"Command: `{cmd}`  ",
        f"Date: {date or 'not recorded'}  ",
        f"Machine: 2-core CPU container, no GPU ({os.cpu_count()} cores visible); "
        + (f"{'shared with other jobs during the run, ' if busy else 'no other jobs, '}load average {load[0]:.1f} "
           f"at its start and {load[1]:.1f} at its end; " if load is not None else "load average not recorded; ")
        + f"{args.threads} compute thread(s) for torch and "
        "for XLA alike (`torch.set_num_threads`, `--xla_cpu_multi_thread_eigen=false`)  ",
        f"{compile_cache_note()}  ",
        f"Versions: {versions()}", "",
        f"{n_seeds} seed(s) per algorithm" + ("" if all(len(r) == n_seeds for r in results.values()) else
                                              f" planned, {sum(len(r) for r in results.values())} runs done so far "
                                              "(the 'solved' column counts the seeds done)") +
        ", run interleaved (seed-major) in one process. Evaluation every "
        f"{EVAL_EVERY} steps on {EVAL_EPISODES} deterministic, identically seeded episodes. Steps/time to -200 are "
        "medians over seeds and shown only when every seed got there; time is training time with evaluation "
        "excluded. pathwise compiles its programs (XLA) on first use; the seeds run in one process, so seed 0's "
        "time includes that compilation and later seeds reuse the compiled programs where the learner's jitted "
        "functions are shared; the seed-0 column shows the cost a single fresh run pays. " + ("Each run stopped at its first evaluation ≥ -200 (`--stop-at-solve`), so 'final' is the "
                        "return there and later columns are blank for runs that stopped earlier. "
                        if args.stop_at_solve else "") + "SB3 uses RL Zoo's Pendulum-v1 hyperparameters (TD3/DDPG start learning after 10,000 steps). "
        "pathwise configs: " + ", ".join(f"{a} {'shipped preset' if p else 'library defaults (no preset yet)'}"
                                         for a, p in preset.items()) + ". Budgets (environment steps): "
        + ", ".join(f"{a} {max(r['steps'][-1] for r in recs):,}" for a, recs in results.items() if recs)
        + "; a '—' at 20k means the learner's budget ended earlier (the model-based learners', which reach -200 "
        "within a few thousand steps and are costlier per step).", "",
        "| library | algorithm | solved | steps to -200 | time to -200 (s) | seed 0's time, incl. compile (s) "
        "| return @2k | @5k | @20k | final (last step) | final / ceiling |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['final'] / ceil:.2f}" if ceil else "—"
        lines.append(f"| {r['lib']} | {r['algo']} | {r['solved']} | {fmt(r['steps'])} | {fmt(r['time'], '{:.1f}')} | "
                     f"{fmt(r['time0'], '{:.1f}')} | {fmt(r['r2k'])} | {fmt(r['r5k'])} | {fmt(r['r20k'])} | {r['final']:.0f} ({r['budget']}) | "
                     f"{ratio} |")
    by = {r["algo"]: r for r in rows}
    mb = [by[a] for a in ("svg-inf", "mbrl", "svg1", "svgk") if a in by and by[a]["steps"] is not None]
    if mb and "sac" in by and by["sac"]["steps"] is not None:  # the best by the per-seed ratios to SAC
        best = min(mb, key=lambda r: per_seed_ratios(results, r["algo"]) + (r["steps"], r["time"]))
    elif mb:
        best = min(mb, key=lambda r: (r["steps"], r["time"]))
    if mb and "sac" in by:
        sac = by["sac"]
        lines += ["", f"Ceiling (MPC on the true model): {fmt(ceil, '{:.1f}')}.", ""]
        if sac["steps"] is not None:
            rs, rt = best["steps"] / sac["steps"], best["time"] / sac["time"]
            # per seed: the two runs of one seed ran minutes apart, so their ratio is less exposed to load drift
            pairs = [(first_solved(b), first_solved(a)) for b, a in zip(results[best["algo"]], results["sac"])]
            ps = float(np.median([b[0] / a[0] for b, a in pairs]))
            pt = float(np.median([b[1] / a[1] for b, a in pairs]))
            per_seed = ", ".join(f"{b[1]:.0f}/{a[1]:.0f} s" for b, a in pairs)
            lines.append(f"Best model-based method ({best['algo']}, by the per-seed ratios to SAC) vs SAC, ratios "
                         f"of the medians: {rs:.2f}× the environment steps, {rt:.2f}× the wall-clock. Median of the "
                         f"per-seed ratios (each seed's pair ran back to back; per seed {per_seed}): {ps:.2f}× the "
                         f"steps (target ≤ 1/3: {'met' if ps <= 1 / 3 + 1e-9 else 'NOT met'}), {pt:.2f}× the "
                         f"wall-clock (target ≤ 0.5: {'met' if pt <= 0.5 else 'NOT met'}). The per-seed ratios are "
                         "the verdict" + (": the machine's load changed during this run, which the ratio of medians "
                         "does not cancel" if busy else "") + ". Steps are resolved to the 1,000-step evaluation interval.")
            if len(mb) > 1:
                lines += ["", "Every model-based method that reached -200 on all seeds, against SAC (medians of the "
                          "per-seed ratios, steps / wall-clock): " + "; ".join(
                              f"{r['algo']} {per_seed_ratios(results, r['algo'])[0]:.2f}× / "
                              f"{per_seed_ratios(results, r['algo'])[1]:.2f}×" for r in mb) + "."]
            if not pt <= 0.5:
                lines += ["", f"Why the wall-clock target is missed: {best['algo']} reaches -200 in far fewer "
                          "environment steps, but each of its iterations refits the dynamics model and trains the "
                          "policy through imagined rollouts, and its first run compiles those programs (seed 0's "
                          "time includes compilation); SAC's per-step cost on one thread is small and constant."]
            if best["time0"] is not None and sac["time0"] is not None:
                rt0 = best["time0"] / sac["time0"]
                lines += ["", f"Seed 0 alone, compilation included: {rt0:.2f}× SAC's wall-clock "
                              f"({'met' if rt0 <= 0.5 else 'NOT met'})."]
        else:
            lines.append(f"SAC did not reach -200 on every seed within its budget; {best['algo']} did at "
                         f"{best['steps']:.0f} steps.")
    lines += model_free_lines(by, results)
    missing = [a for a in PATHWISE + SB3 if a not in results]
    if missing:
        lines += ["", f"Not in this run: {', '.join(missing)} (the full comparison, `python benchmarks/bench_sb3.py` "
                  "with no `--algos`, runs all of them; on this shared 2-core machine a 3-seed run of everything "
                  "takes hours, and TD3/DDPG with RL Zoo's settings only start learning after 10,000 steps)."]
    figure = figure_name(args.section)
    plot_curves(results, ceil, n_seeds, figure)
    lines += ["", f"![learning curves](benchmarks/figures/{figure})", ""]
    from pathwise.checkpoint import atomic_write_text

    atomic_write_text(args.section, "\n".join(lines) + "\n")
    print(f"wrote {args.section}")


def per_seed_ratios(results: dict, algo: str) -> tuple[float, float]:
    """Medians over seeds of (steps to -200, wall-clock to -200) of ``algo`` divided by SAC's on the same seed."""
    pairs = [(first_solved(b), first_solved(a)) for b, a in zip(results[algo], results["sac"])]
    return (float(np.median([b[0] / a[0] for b, a in pairs])), float(np.median([b[1] / a[1] for b, a in pairs])))


def model_free_lines(by: dict, results: dict) -> list[str]:
    """pathwise's model-free learners (svg0, ddpg) against SB3's, by steps to -200 (per-seed medians)."""
    ours = [by[a] for a in ("svg0", "ddpg") if a in by]
    theirs = [by[a] for a in SB3 if a in by]
    if not ours or not theirs:
        return []

    def text(r: dict) -> str:
        got = (f"-200 at {fmt(r['steps'])} steps / {fmt(r['time'], '{:.0f}')} s" if r["steps"] is not None else
               f"{r['solved']} seeds at -200")
        return f"{r['lib']} {r['algo'].replace('-sb3', '')} {got}, {fmt(r['r20k'])} at 20k"

    line = "Model-free, side by side: " + "; ".join(text(r) for r in ours + theirs) + " (medians over seeds)."
    solved_ours = [r for r in ours if r["steps"] is not None]
    solved_theirs = [r for r in theirs if r["steps"] is not None]
    if solved_ours and solved_theirs:
        a = min(solved_ours, key=lambda r: (r["steps"], r["time"]))
        b = min(solved_theirs, key=lambda r: (r["steps"], r["time"]))
        line += (f" Fastest of each: pathwise {a['algo']} needs {a['steps'] / b['steps']:.2f}× the environment "
                 f"steps and {a['time'] / b['time']:.2f}× the wall-clock of SB3 {b['algo'].replace('-sb3', '')}.")
    return ["", line]


def figure_name(section: str) -> str:
    """The default section's figure is sb3_pendulum.png; a run written elsewhere gets its own, named after it."""
    default = Path(section).resolve() == DEFAULT_SECTION.resolve()
    return "sb3_pendulum.png" if default else f"sb3_{Path(section).stem}.png"


def plot_curves(results: dict, ceil, n_seeds: int, figure: str) -> None:
    """Every seed's evaluation curve; model-based learners (with SAC) left, model-free ones right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pathwise.checkpoint import atomic_save_figure

    groups = [("model-based pathwise vs SAC", ["mbrl", "svg-inf", "svg1", "svgk", "sac"]),
              ("model-free: pathwise vs SB3", ["svg0", "ddpg", "sac", "td3", "ddpg-sb3"])]
    groups = [(t, [a for a in g if results.get(a)]) for t, g in groups]
    groups = [(t, g) for t, g in groups if any(a not in SB3 for a in g)] or [("", list(results))]
    colors = {a: f"C{i}" for i, a in enumerate(PATHWISE + SB3)}
    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 4.5), squeeze=False)
    for ax, (title, algos) in zip(axes[0], groups):
        for algo in algos:
            label = ("SB3 " if algo in SB3 else "pathwise ") + algo.replace("-sb3", "")
            for j, r in enumerate(results[algo]):  # every seed (runs may stop at different steps)
                ax.plot(r["steps"], r["returns"], ls="--" if algo in SB3 else "-", marker="o", ms=3, lw=1.2,
                        color=colors[algo], alpha=0.8, label=label if j == 0 else None)
        ax.axhline(THRESHOLD, color="g", ls=":", lw=1, label="-200")
        if ceil:
            ax.axhline(ceil, color="k", ls="--", lw=1, label="MPC ceiling")
        ax.set(xlabel="environment steps", ylabel="mean evaluation return (10 episodes)",
               title=f"Pendulum-v1 {title}, every seed ({n_seeds} per algorithm)")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_save_figure(fig, HERE / "figures" / figure)


if __name__ == "__main__":
    sys.exit(main())
