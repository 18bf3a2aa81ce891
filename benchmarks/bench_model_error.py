"""Model-error study (lecture: why SVG(∞)): BPTT through the model vs replayed real trajectories vs SVG(k).

    python benchmarks/bench_model_error.py            # 4 model levels x 3 methods x 2 seeds x 4 episodes
    python benchmarks/bench_model_error.py --quick    # 2 model levels x 3 methods x 1 seed x 2 episodes
    python benchmarks/bench_model_error.py --replot   # table + figure again from benchmarks/out/model_error.json

Writes benchmarks/sections/62_model_error.md and benchmarks/figures/model_error.png.

Protocol. For each seed and data size N, collect N transitions of Gymnasium ``Pendulum-v1`` with uniformly
random actions (π₀; whole 200-step episodes, the last one cut at N), fit ONE dynamics model on them
(``pathwise.models.fit``: held-out blocks, early stopping) and FREEZE it: the model's quality is then set
by N alone. Each method starts from that same model and data and gets the same budget of real on-policy
episodes; those episodes are appended to D (start states, replayed episodes) but the model is never refit:

* ``mbrl``   — plain BPTT through the frozen model: imagined H-step rollouts from real start states
  (model error accumulates along the rollout);
* ``svg-inf`` — SVG(∞): the real episodes replayed with inferred noise ζ_t = s_{t+1} − f(s_t, a_t), so the
  trajectory is the real one and the model only supplies Jacobians;
* ``svgk``   — SVG(k): k imagined model steps from real states, then a learned V (TD(λ)).

Score: the final deterministic policy on Gymnasium ``Pendulum-v1`` itself, 10 episodes ``reset(seed=10_000+i)``.
The model's own error is reported as the held-out one-step and 10-step open-loop MSE from the fit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import time
from pathlib import Path

import gymnasium as gym
import jax
import numpy as np

from pathwise import envs
from pathwise.algorithms import model_based as mb
from pathwise.algorithms.mbrl import MBRL, MBRLConfig
from pathwise.algorithms.svg_inf import SVGInf, SVGInfConfig
from pathwise.algorithms.svgk import ModelSVGK, SVGKConfig
from pathwise.checkpoint import atomic_write_text
from pathwise.types import Transition

HERE = Path(__file__).resolve().parent
SECTION = HERE / "sections" / "62_model_error.md"
FIGURES = HERE / "figures"
RESULTS = HERE / "out" / "model_error.json"
ENV = "Pendulum-v1"
EVAL_EPISODES = 10
EPISODE = 200

# The methods' own defaults for Pendulum-v1; random_episodes=1 so that the stored random data counts as π₀.
METHODS = {
    "mbrl": (MBRL, MBRLConfig(random_episodes=1)),
    "svg-inf": (SVGInf, SVGInfConfig(random_episodes=1)),
    "svgk": (ModelSVGK, SVGKConfig(random_episodes=1)),
    # SVG(∞) with 10 instead of 100 Adam steps per real episode (an ablation, not in the default run).
    "svg-inf-g10": (SVGInf, SVGInfConfig(random_episodes=1, grad_steps=10)),
}
DEFAULT_METHODS = ["mbrl", "svg-inf", "svgk"]


def random_episodes(n: int, seed: int) -> list[Transition]:
    """Whole random-action episodes of Gymnasium Pendulum-v1, ``n`` transitions in all (the last one cut)."""
    env = envs.make_env(ENV)
    rng = np.random.default_rng(seed)
    out, left, i = [], n, 0
    while left > 0:
        act = lambda obs: rng.uniform(-2.0, 2.0, size=(1,)).astype(np.float32)
        ep, _, _ = envs.run_episode(env, act, seed=seed * 1000 + i, max_steps=EPISODE)
        f32 = lambda x: np.asarray(x, np.float32)
        m = min(left, len(ep.reward))
        truncated = np.asarray(ep.truncated, bool)[:m].copy()
        truncated[-1] = True  # an episode cut at N ends there
        out.append(Transition(f32(ep.obs)[:m], f32(ep.action).reshape(-1, 1)[:m], f32(ep.reward)[:m],
                              f32(ep.next_obs)[:m], np.asarray(ep.terminated, bool)[:m], truncated))
        left -= m
        i += 1
    env.close()
    return out


@dataclasses.dataclass(frozen=True)
class Level:
    """How good the frozen model is: N random transitions, fitted with at most ``epochs * steps`` Adam steps."""

    n: int
    epochs: int = 30  # the learners' default fit (30 epochs x 100 steps, early stopping)
    steps: int = 100

    @property
    def label(self) -> str:
        fit = "full fit" if (self.epochs, self.steps) == (30, 100) else f"{self.epochs * self.steps} Adam steps"
        return f"N={self.n}, {fit}"


# From good to bad. Less data alone barely hurts on Pendulum (see the section); an under-fitted model does.
LEVELS = [Level(2000), Level(200), Level(2000, 2, 50), Level(2000, 1, 10)]
QUICK_LEVELS = [Level(2000), Level(2000, 1, 10)]


def fit_frozen_model(learner: mb.ModelBasedLearner, level: Level, seed: int):
    """Fit a fresh model on the learner's buffer (the random data only); returns (model, FitReport)."""
    model = mb.make_dynamics_model(learner.obs_dim, learner.action_dim, learner.config, jax.random.key(seed + 17))
    config = dataclasses.replace(learner.config.fit_config(), max_epochs=level.epochs, steps_per_epoch=level.steps)
    return mb.refit_model(model, learner.state.buffer, config, jax.random.key(seed + 29))


def test_set(n: int = 4096, seed: int = 123):
    """Model error where the policy may go: uniform Pendulum states (|θ| ≤ π, |θ̇| ≤ 8) and actions (|u| ≤ 2),
    next observations from ``pw.systems.Pendulum`` (step-for-step equal to Gymnasium, tests/test_parity.py)."""
    import jax.numpy as jnp

    from pathwise.systems import Pendulum

    system, rng = Pendulum(), np.random.default_rng(seed)
    states = jnp.asarray(np.stack([rng.uniform(-np.pi, np.pi, n), rng.uniform(-8, 8, n)], 1), jnp.float32)
    actions = jnp.asarray(rng.uniform(-2, 2, (n, 1)), jnp.float32)
    obs = jax.vmap(system.observe)(states)
    nxt = jax.vmap(lambda x, u: system.observe(system.dynamics(x, u)))(states, actions)
    return obs, actions, nxt


def test_error(model, data) -> float:
    obs, actions, nxt = data
    return float(((jax.vmap(model)(obs, actions) - nxt) ** 2).mean())


def train_frozen(learner: mb.ModelBasedLearner, episodes: int) -> list[float]:
    """The learner's own loop (collect -> store -> improve) with the refit step left out."""
    returns = []
    for _ in range(episodes):
        key, k_collect, k_improve = jax.random.split(learner.state.key, 3)
        learner.state = learner.state._replace(key=key)
        episode, ret = learner.collect_episode(k_collect)
        learner.store(episode)
        learner.state, _ = learner.improve(learner.state, k_improve)
        returns.append(float(ret))
    return returns


def run_cell(level: Level, seed: int, episodes: int, methods: list[str], tests) -> dict:
    data = random_episodes(level.n, seed)
    fitted, report = None, None
    cell = {"level": level.label, "n": level.n, "seed": seed, "methods": {}}
    for name in methods:
        cls, config = METHODS[name]
        learner = cls(ENV, config, seed)
        on_policy = learner.state.recent  # empty: SVG(∞) replays only its own episodes, not π₀'s
        for ep in data:
            learner.store(ep)
        learner.state = learner.state._replace(recent=on_policy)
        if fitted is None:  # one model per (level, seed), shared by the three methods
            fitted, report = fit_frozen_model(learner, level, seed)
            cell.update(one_step_mse=report.one_step_mse, multi_step_mse=report.multi_step_mse,
                        model_epochs=report.epochs, test_mse=test_error(fitted, tests))
        learner.state = learner.state._replace(model=fitted)
        t0 = time.perf_counter()
        curve = train_frozen(learner, episodes)
        wall = time.perf_counter() - t0
        result = envs.evaluate(lambda obs: learner.act(obs, deterministic=True), ENV, EVAL_EPISODES, seed=10_000)
        cell["methods"][name] = {"final_return": result.mean, "final_std": result.std, "episode_returns": curve,
                                 "train_s": wall, "skipped": int(learner.state.skipped_updates)}
        print(f"{level.label:28s} seed={seed} {name:8s} return {result.mean:8.1f} ± {result.std:6.1f}  "
              f"(model test {cell['test_mse']:.2e}, held-out 1-step {report.one_step_mse:.2e}; {wall:.0f} s; "
              f"episodes {[round(r) for r in curve]})", flush=True)
    return cell


def summarize(cells: list[dict], methods: list[str]) -> tuple[list[str], dict]:
    levels = list(dict.fromkeys(c["level"] for c in cells))
    table = {}
    for lv in levels:
        row = [c for c in cells if c["level"] == lv]
        table[lv] = {
            "test": float(np.mean([c["test_mse"] for c in row])),
            "one_step": float(np.mean([c["one_step_mse"] for c in row])),
            "multi_step": float(np.nanmean([c["multi_step_mse"] for c in row])),
            **{m: [c["methods"][m]["final_return"] for c in row if m in c["methods"]] for m in methods},
        }
    return levels, table


def plot(levels: list[str], table: dict, methods: list[str]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    order = sorted(levels, key=lambda lv: table[lv]["test"])
    x = [table[lv]["test"] for lv in order]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for m in methods:
        have = [lv for lv in order if table[lv][m]]
        xs = [table[lv]["test"] for lv in have]
        means = [np.mean(table[lv][m]) for lv in have]
        lo = [np.min(table[lv][m]) for lv in have]
        hi = [np.max(table[lv][m]) for lv in have]
        ax.plot(xs, means, "o-", label=m)
        ax.fill_between(xs, lo, hi, alpha=0.15)
    for lv, xi in zip(order, x):
        ax.annotate(lv, (xi, ax.get_ylim()[0]), rotation=90, fontsize=7, va="bottom", ha="right", alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("frozen model's one-step MSE on uniform Pendulum states (worse →)")
    ax.set_ylabel(f"Gymnasium Pendulum-v1 return ({EVAL_EPISODES} ep.)")
    ax.set_title("Final return vs model error (mean; band: min-max over seeds)")
    ax.legend()
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / "model_error.png"
    tmp = path.with_name("model_error.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)
    return "figures/model_error.png"


def versions() -> str:
    import equinox
    import optax

    return (f"python {platform.python_version()}, jax {jax.__version__}, equinox {equinox.__version__}, "
            f"optax {optax.__version__}, gymnasium {gym.__version__}, numpy {np.__version__}")


def write_section(payload: dict) -> None:
    cells, methods, meta = payload["cells"], payload["methods"], payload["meta"]
    levels, table = summarize(cells, methods)
    figure = plot(levels, table, methods)
    fmt = lambda xs: f"{np.mean(xs):.0f} ({', '.join(f'{x:.0f}' for x in xs)})" if xs else "—"
    rows = [f"| {lv} | {table[lv]['test']:.2e} | {table[lv]['one_step']:.2e} | {table[lv]['multi_step']:.2e} | "
            + " | ".join(fmt(table[lv][m]) for m in methods) + " |" for lv in levels]
    times = {m: np.mean([c["methods"][m]["train_s"] for c in cells if m in c["methods"]]) for m in methods}
    skipped = {m: sum(c["methods"][m]["skipped"] for c in cells if m in c["methods"]) for m in methods}
    cfg = {m: METHODS[m][1] for m in METHODS}
    lines = [
        "## Model error: BPTT through the model vs replayed real trajectories vs SVG(k)",
        "",
        f"Command: `{meta['command']}` · date {meta['date']} · 2-core CPU container, no GPU (`nproc` = "
        f"{meta['nproc']}); load average at the start: {meta['load']}"
        f"{' (shared with other jobs)' if float(meta['load']) > 2 else ''} · "
        f"{meta['versions']}.",
        "",
        "The lecture's motivation for SVG(∞): a policy trained by backpropagating through *imagined* rollouts of "
        "a learned model exploits and compounds the model's errors, while replaying *real* trajectories with "
        "inferred noise (ζ_t = s_{t+1} − f(s_t, a_t)) uses the model only for its derivatives. Here the model is "
        "made worse by fitting it on less data or with fewer Adam steps, and then frozen (protocol in the "
        f"script's docstring): for each seed and level, N random-action transitions of Gymnasium `{ENV}` → one "
        "`pathwise.models.fit` → the same "
        f"frozen model for all methods → {meta['episodes']} real on-policy episodes per method (appended to D, "
        "never used to refit) → the final deterministic policy on Gymnasium itself "
        f"({EVAL_EPISODES} episodes). Seeds: {meta['seeds']}.",
        "",
        f"Methods (their default configs): `mbrl` = BPTT through the model, H = {cfg['mbrl'].horizon}, "
        f"{cfg['mbrl'].policy_steps} Adam steps per episode from {cfg['mbrl'].num_starts} real start states; "
        f"`svg-inf` = {cfg['svg-inf'].grad_steps} Adam steps per episode, each replaying "
        + (f"{cfg['svg-inf'].num_segments} windows of {cfg['svg-inf'].segment_length} recorded steps of "
           if cfg['svg-inf'].segment_length else "")
        + f"the {cfg['svg-inf'].recent_episodes} most recent real episodes with inferred noises; `svgk` = k = {cfg['svgk'].horizon} model steps + V, "
        f"{cfg['svgk'].updates_per_episode} updates per episode from {cfg['svgk'].n_envs} real start states. "
        f"Model: MLP {cfg['mbrl'].model_hidden} on the normalized Δobs."
        + (" `svg-inf-g10` = `svg-inf` with 10 instead of 100 Adam steps per real episode (`grad_steps=10`; "
           "an ablation run for seed 0 only)." if "svg-inf-g10" in methods else ""),
        "",
        "Model error columns: one-step MSE on 4,096 uniform Pendulum states and actions (|θ| ≤ π, |θ̇| ≤ 8, "
        "|u| ≤ 2; where a swing-up policy goes, not only where random actions went), and the fit's own held-out "
        "one-step and 10-step open-loop MSE (held-out blocks of the N random transitions).",
        "",
        "| frozen model | test 1-step MSE | held-out 1-step MSE | held-out 10-step MSE | "
        + " | ".join(f"`{m}` return: mean (per seed)" for m in methods) + " |",
        "|---|---|---|---|" + "---|" * len(methods),
        *rows,
        "",
        "Mean training wall-clock per run (incl. compilation, excl. evaluation): "
        + ", ".join(f"`{m}` {times[m]:.0f} s" for m in methods)
        + ". Non-finite policy updates skipped: " + ", ".join(f"`{m}` {skipped[m]}" for m in methods) + "."
        + f" Whole benchmark: {meta.get('total_s', float('nan')) / 60:.0f} min wall-clock"
        + (" (seeds in parallel processes)." if "--only-seed" in meta["command"] else "."),
        "",
    ]
    if payload.get("notes"):
        lines += [payload["notes"], ""]
    if figure:
        lines += [f"![model error]({figure})", "", f"Figure: `{figure}`", ""]
    SECTION.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(SECTION, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 model levels, 1 seed, 2 episodes")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--episodes", type=int, default=None, help="real on-policy episodes per run")
    parser.add_argument("--levels", type=str, nargs="*", default=None,
                        help="model levels N[:epochs:steps], e.g. 2000 200 2000:1:10")
    parser.add_argument("--methods", type=str, nargs="*", default=None)
    parser.add_argument("--replot", action="store_true", help="rewrite the section from the saved results")
    parser.add_argument("--notes", type=str, default="", help="a paragraph appended to the section")
    parser.add_argument("--only-seed", type=int, default=None,
                        help="run this one seed into benchmarks/out/model_error_sK.json (no section); "
                             "run seeds in parallel, then --replot merges them")
    args = parser.parse_args()
    if args.replot:
        parts = sorted(RESULTS.parent.glob("model_error_s*.json"))
        if parts:  # merge per-seed (and per-method) runs: one cell per (level, seed)
            loaded = [json.loads(p.read_text()) for p in parts]
            payload = loaded[0]
            merged: dict = {}
            for part in loaded:
                for c in part["cells"]:
                    key = (c["level"], c["seed"])
                    if key in merged:
                        merged[key]["methods"].update(c["methods"])
                    else:
                        merged[key] = c
            payload["cells"] = list(merged.values())
            payload["methods"] = list(dict.fromkeys(m for part in loaded for m in part["methods"]))
            payload["meta"]["seeds"] = len({c["seed"] for c in payload["cells"]})
            payload["meta"]["total_s"] = max(part["meta"]["total_s"] for part in loaded)
            payload["meta"]["command"] = payload["meta"]["command"].replace(
                f" --only-seed {payload['cells'][0]['seed']}", "") + f" (seeds run in parallel: --only-seed K)"
        else:
            payload = json.loads(RESULTS.read_text())
        if args.notes:
            payload["notes"] = args.notes
        write_section(payload)
        return
    if args.levels:
        levels = [Level(*map(int, spec.split(":"))) for spec in args.levels]
    else:
        levels = QUICK_LEVELS if args.quick else LEVELS
    seeds = args.seeds or (1 if args.quick else 2)
    episodes = args.episodes or (2 if args.quick else 4)
    methods = args.methods or DEFAULT_METHODS
    command = "python benchmarks/bench_model_error.py" + (" --quick" if args.quick else "")
    command += (f" --seeds {seeds}" if args.seeds else "") + (f" --episodes {episodes}" if args.episodes else "")
    command += (" --levels " + " ".join(args.levels)) if args.levels else ""
    command += (" --methods " + " ".join(args.methods)) if args.methods else ""
    seed_list = [args.only_seed] if args.only_seed is not None else list(range(seeds))
    command += f" --only-seed {args.only_seed}" if args.only_seed is not None else ""
    meta = {
        "command": command,
        "date": subprocess.run(["date", "-u", "+%F %H:%M UTC"], capture_output=True, text=True).stdout.strip(),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "load": Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "n/a",
        "versions": versions(), "seeds": seeds, "episodes": episodes,
    }
    t0 = time.perf_counter()
    tests = test_set()
    cells = [run_cell(level, seed, episodes, methods, tests) for seed in seed_list for level in levels]
    meta["total_s"] = time.perf_counter() - t0
    payload = {"cells": cells, "methods": methods, "meta": meta, "notes": args.notes}
    suffix = "" if not args.methods else "_" + "_".join(methods)
    results = RESULTS if args.only_seed is None else RESULTS.with_name(f"model_error_s{args.only_seed}{suffix}.json")
    results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results, json.dumps(payload, indent=1))
    if args.only_seed is None:
        write_section(payload)
    print(f"total {meta['total_s']:.0f} s; wrote {SECTION.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
