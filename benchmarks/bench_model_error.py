"""Model-error study (lecture: why SVG(∞)): BPTT through the model vs replayed real trajectories vs SVG(k).

    python benchmarks/bench_model_error.py              # 4 model levels x 3 methods x 2 seeds x 4 episodes
    python benchmarks/bench_model_error.py --quick      # 2 model levels x 3 methods x 1 seed x 2 episodes
    python benchmarks/bench_model_error.py --only-seed 1  # one seed, merged with the seeds run before (parallel)
    python benchmarks/bench_model_error.py --from-json  # re-render the section only

Writes benchmarks/results/model_error.json, then benchmarks/sections/62_model_error.md (from
benchmarks/templates/62_model_error.md) and benchmarks/figures/model_error.png; every (level, seed) cell goes to
benchmarks/out/model_error_cells.json (not in git), where ``--only-seed`` runs merge theirs.

Protocol. For each seed and data size N, collect N transitions of Gymnasium ``Pendulum-v1`` with uniformly
random actions (π₀; whole 200-step episodes, the last one cut at N), fit ONE dynamics model on them
(``pathwise.models.fit``: held-out blocks, early stopping) and FREEZE it: the model's quality is then set
by N alone. Each method starts from that same model and data and gets the same budget of real on-policy
episodes; those episodes are appended to D (start states, replayed episodes) but the model is never refit.
Each method is a ``pathwise.train.Run`` of the model-based loop (``pathwise.loops.model_based``) with its
default config (``random_episodes=1``: the stored random data counts as π₀) whose iterations are run here
without their refit step: collect an episode into D, then ``update`` on ``ModelData`` of the frozen model.

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
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from common import (finished, machine, merge_runs, options, publish, save_figure, separated,  # noqa: I001
                    update_saved, written_for)  # benchmarks/common.py
from pathwise import envs, replay
from pathwise.types import Transition

HERE = Path(__file__).resolve().parent
ENV = "Pendulum-v1"
EVAL_EPISODES = 10
EVAL_SEED = 10_000
EPISODE = 200
#: the date of the run the template's hand-written reading describes
READING_WRITTEN_FOR = "2026-11-25 18:32"

#: method -> (algorithm, config changes): the algorithms' defaults for Pendulum-v1, random_episodes=1 so that the
#: stored random data counts as π₀. svg-inf-g10 is SVG(∞) with 10 instead of 200 Adam steps per real episode (an
#: ablation, not in the default run).
METHODS = {"mbrl": ("mbrl", {}), "svg-inf": ("svg-inf", {}), "svgk": ("svgk", {}),
           "svg-inf-g10": ("svg-inf", {"grad_steps": 10})}
DEFAULT_METHODS = ["mbrl", "svg-inf", "svgk"]


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


def random_episodes(n: int, seed: int) -> list[Transition]:
    """Whole random-action episodes of Gymnasium Pendulum-v1, ``n`` transitions in all (the last one cut)."""
    env = envs.make_env(ENV)
    rng = np.random.default_rng(seed)
    out, left, i = [], n, 0
    while left > 0:
        act = lambda obs: rng.uniform(-2.0, 2.0, size=(1,)).astype(np.float32)  # noqa: E731
        ep, _, _ = envs.run_episode(env, act, seed=seed * 1000 + i, max_steps=EPISODE)
        f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
        m = min(left, len(ep.reward))
        truncated = np.asarray(ep.truncated, bool)[:m].copy()
        truncated[-1] = True  # an episode cut at N ends there
        out.append(Transition(f32(ep.obs)[:m], f32(ep.action).reshape(-1, 1)[:m], f32(ep.reward)[:m],
                              f32(ep.next_obs)[:m], np.asarray(ep.terminated, bool)[:m], truncated))
        left -= m
        i += 1
    env.close()
    return out


def test_set(n: int = 4096, seed: int = 123):
    """Model error where the policy may go: uniform Pendulum states (|θ| ≤ π, |θ̇| ≤ 8) and actions (|u| ≤ 2),
    next observations from ``pw.systems.Pendulum`` (step-for-step equal to Gymnasium, tests/test_parity.py)."""
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


# ----------------------------------------------------------------------------- one method on a frozen model


def method_run(name: str, seed: int, data: list[Transition]):
    """A fresh run of the method (its default config, ``random_episodes=1``) with the random episodes in D only
    (SVG(∞) replays its own episodes, not π₀'s), counted as π₀'s episodes."""
    from pathwise.train import make_run

    algo, changes = METHODS[name]
    run, _ = make_run(algo, ENV, seed, use_preset=False, overrides={"random_episodes": 1, **changes})
    buffer = run.carry.buffer
    for episode in data:
        buffer = replay.add_batch(buffer, episode)
    run.carry = run.carry._replace(buffer=buffer, episodes=jnp.asarray(len(data), jnp.int32),
                                   env_steps=jnp.asarray(sum(len(e.reward) for e in data), jnp.int32))
    return run


def fit_frozen_model(run, level: Level, seed: int):
    """A fresh model fitted on the run's D (the random data only); returns (model, FitReport)."""
    from pathwise.loops.model_based import dataset
    from pathwise.models import DynamicsModel, fit

    config, spec = run.config, run.spec
    model = DynamicsModel(spec.obs_dim, spec.action_dim, config.model_hidden, key=jax.random.key(seed + 17),
                          ensemble_size=config.model_ensemble)
    fit_config = dataclasses.replace(config.fit_config(), max_epochs=level.epochs, steps_per_epoch=level.steps)
    return fit(model, dataset(run.carry.buffer), fit_config, jax.random.key(seed + 29))


@eqx.filter_jit
def improve(update, state, data, key, config):
    return update(state, data, key, config)


def train_frozen(run, model, episodes: int) -> tuple[list[float], int]:
    """The model-based loop's iteration (collect an episode into D, improve) without its refit step; returns the
    episodes' returns and the policy updates skipped as non-finite."""
    from pathwise.loops.model_based import ModelData, learned_system

    system, returns, metrics = learned_system(model, run.spec, run.loop.limit), [], {}
    for _ in range(episodes):
        key, k_collect, k_update = jax.random.split(run.carry.key, 3)
        carry, collected = run.loop.collect(run.carry._replace(key=key), k_collect)
        algo, metrics = improve(run.algorithm.update, carry.algo, ModelData(system, carry.buffer, carry.recent),
                                k_update, run.config)
        run.carry = carry._replace(algo=algo)
        returns += [float(r) for r in collected]
    return returns, int(metrics.get("skipped_total", 0))


def run_cell(level: Level, seed: int, episodes: int, methods: list[str], tests) -> dict:
    """One (level, seed): one frozen model, shared by every method; each method's final Gymnasium return."""
    data, model = random_episodes(level.n, seed), None
    cell = {"level": level.label, "n": level.n, "epochs": level.epochs, "steps": level.steps, "seed": seed,
            "methods": {}}
    for name in methods:
        run = method_run(name, seed, data)
        if model is None:
            model, report = fit_frozen_model(run, level, seed)
            cell.update(one_step_mse=report.one_step_mse, multi_step_mse=report.multi_step_mse,
                        model_epochs=report.epochs, test_mse=test_error(model, tests))
        start = time.perf_counter()
        curve, skipped = train_frozen(run, model, episodes)
        wall = time.perf_counter() - start
        result = envs.evaluate(lambda obs: run.act(obs, deterministic=True), ENV, EVAL_EPISODES, seed=EVAL_SEED)
        run.loop.close()
        cell["methods"][name] = {"final_return": result.mean, "final_std": result.std, "episode_returns": curve,
                                 "train_s": wall, "skipped": skipped}
        print(f"{level.label:28s} seed={seed} {name:8s} return {result.mean:8.1f} ± {result.std:6.1f}  "
              f"(model test {cell['test_mse']:.2e}, held-out 1-step {cell['one_step_mse']:.2e}; {wall:.0f} s; "
              f"episodes {[round(r) for r in curve]})", flush=True)
    return cell


# ----------------------------------------------------------------------------- the results


def measured(row: list[dict]) -> list[float]:
    """The cells' held-out multi-step errors where there was one to measure (a held-out block without an episode
    end; saved as null otherwise)."""
    return [c["multi_step_mse"] for c in row if c["multi_step_mse"] is not None and np.isfinite(c["multi_step_mse"])]


def summarize(cells: list[dict], methods: list[str]) -> dict:
    """Per level (in the order first run): the model's errors averaged over seeds and each method's final returns
    per seed; per method the mean training wall-clock and the skipped updates."""
    levels = []
    for label in dict.fromkeys(c["level"] for c in cells):
        row = sorted((c for c in cells if c["level"] == label), key=lambda c: c["seed"])
        levels.append({"label": label, "n": row[0]["n"], "epochs": row[0]["epochs"], "steps": row[0]["steps"],
                       "test_mse": float(np.mean([c["test_mse"] for c in row])),
                       "one_step_mse": float(np.mean([c["one_step_mse"] for c in row])),
                       "multi_step_mse": float(np.mean(measured(row))) if measured(row) else None,
                       "returns": {m: [c["methods"][m]["final_return"] for c in row if m in c["methods"]]
                                   for m in methods}})
    ran = lambda m: [c["methods"][m] for c in cells if m in c["methods"]]  # noqa: E731
    return {"levels": levels, "train_s": {m: float(np.mean([r["train_s"] for r in ran(m)])) for m in methods},
            "skipped": {m: sum(r["skipped"] for r in ran(m)) for m in methods}}


def method_configs() -> dict:
    """The settings of each method's default config that the section states."""
    from pathwise import algorithms

    cfg = {name: algorithms.get(METHODS[name][0]).Config(random_episodes=1) for name in DEFAULT_METHODS}
    m, s, k = cfg["mbrl"], cfg["svg-inf"], cfg["svgk"]
    return {"mbrl": {"horizon": m.horizon, "policy_steps": m.policy_steps, "num_starts": m.num_starts},
            "svg_inf": {"grad_steps": s.grad_steps, "num_segments": s.num_segments,
                        "segment_length": s.segment_length, "recent_episodes": s.recent_episodes},
            "svgk": {"horizon": k.horizon, "updates_per_episode": k.updates_per_episode, "n_envs": k.n_envs},
            "model_hidden": list(m.model_hidden)}


def cells_of(args: argparse.Namespace, cells: list[dict]) -> list[dict]:
    """This run's cells; with ``--only-seed``, merged (under a lock) with the cells earlier runs stored."""
    path = Path(args.out or HERE) / "out" / "model_error_cells.json"
    if args.only_seed is None:
        return update_saved(path, lambda _: {"cells": cells})["cells"]

    def merge(saved: dict | None) -> dict:
        old = {(c["level"], c["seed"]): c for c in (saved or {}).get("cells", [])}
        new = [{**c, "methods": {**old.get((c["level"], c["seed"]), {}).get("methods", {}), **c["methods"]}}
               for c in cells]
        return {"cells": merge_runs(list(old.values()), new, key=lambda c: (c["level"], c["seed"]))}

    return update_saved(path, merge)["cells"]


def measure(args: argparse.Namespace) -> dict:
    facts = machine("equinox", "optax", "numpy")
    levels = ([Level(*map(int, spec.split(":"))) for spec in args.levels] if args.levels else
              QUICK_LEVELS if args.quick else LEVELS)
    episodes = args.episodes or (2 if args.quick else 4)
    methods = args.methods or DEFAULT_METHODS
    seeds = [args.only_seed] if args.only_seed is not None else list(range(args.seeds or (1 if args.quick else 2)))
    start, tests = time.perf_counter(), test_set()
    cells = cells_of(args, [run_cell(level, seed, episodes, methods, tests) for seed in seeds for level in levels])
    total_s = time.perf_counter() - start
    facts = finished(facts)
    if args.only_seed is not None:  # the command that runs the seeds, one process each
        facts["command"] = facts["command"].replace(f" --only-seed {args.only_seed}", "")
    shown = [m for m in METHODS if any(m in c["methods"] for c in cells)]
    results = {"machine": facts, "quick": args.quick, "parallel": args.only_seed is not None, "env": ENV,
               "episodes": episodes, "eval_episodes": EVAL_EPISODES, "seeds": len({c["seed"] for c in cells}),
               "methods": shown, "config": method_configs(), "total_s": total_s, **summarize(cells, shown)}
    plot(results, args.out)
    return results


def plot(results: dict, out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(results["levels"], key=lambda lv: lv["test_mse"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for m in results["methods"]:
        have = [lv for lv in levels if lv["returns"][m]]
        ax.plot([lv["test_mse"] for lv in have], [np.mean(lv["returns"][m]) for lv in have], "o-", label=m)
        ax.fill_between([lv["test_mse"] for lv in have], [np.min(lv["returns"][m]) for lv in have],
                        [np.max(lv["returns"][m]) for lv in have], alpha=0.15)
    for lv in levels:
        ax.annotate(lv["label"], (lv["test_mse"], ax.get_ylim()[0]), rotation=90, fontsize=7, va="bottom", ha="right",
                    alpha=0.6)
    ax.set_xscale("log")
    ax.set(xlabel="frozen model's one-step MSE on uniform Pendulum states (worse →)",
           ylabel=f"Gymnasium Pendulum-v1 return ({EVAL_EPISODES} ep.)",
           title="Final return vs model error (mean; band: min-max over seeds)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, "model_error.png", out)


# ----------------------------------------------------------------------------- the section's values


def prediction(levels: list[dict], methods: list[str]) -> dict:
    """The lecture's prediction: with a worse model than the best one, replaying real trajectories (svg-inf) holds
    up at least as well as BPTT through imagined rollouts (mbrl); judged on the mean returns of every worse level."""
    if not {"mbrl", "svg-inf"} <= set(methods):
        return {"judged": False}
    ordered = sorted(levels, key=lambda lv: lv["test_mse"])
    worse = [{"label": lv["label"], "svg_inf": float(np.mean(lv["returns"]["svg-inf"])),
              "mbrl": float(np.mean(lv["returns"]["mbrl"]))} for lv in ordered[1:]
             if lv["returns"]["svg-inf"] and lv["returns"]["mbrl"]]
    return {"judged": bool(worse), "reproduced": all(w["svg_inf"] >= w["mbrl"] for w in worse),
            "worse": separated(worse, "; ")}


def view(results: dict) -> dict:
    methods = results["methods"]
    rows = [{**lv, "cells": [{"method": m, "has": bool(lv["returns"][m]), "per_seed": separated(lv["returns"][m]),
                              "mean": float(np.mean(lv["returns"][m])) if lv["returns"][m] else None}
                             for m in methods]} for lv in results["levels"]]
    per_method = separated([{"method": m, "train_s": results["train_s"][m], "skipped": results["skipped"][m]}
                            for m in methods])
    return {**results, "rows": rows, "columns": [{"method": m} for m in methods], "per_method": per_method,
            "g10": "svg-inf-g10" in methods, "total_min": results["total_s"] / 60,
            "prediction": prediction(results["levels"], methods), "reading": written_for(results, READING_WRITTEN_FOR)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 model levels, 1 seed, 2 episodes")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--episodes", type=int, default=None, help="real on-policy episodes per run")
    parser.add_argument("--levels", type=str, nargs="*", default=None,
                        help="model levels N[:epochs:steps], e.g. 2000 200 2000:1:10")
    parser.add_argument("--methods", type=str, nargs="*", default=None, choices=list(METHODS))
    parser.add_argument("--only-seed", type=int, default=None,
                        help="run this one seed and merge it with the cells of earlier runs (run seeds as parallel "
                             "processes; the last to finish writes the section of them all)")
    publish(options(parser, "model_error").parse_args(), "model_error", "62_model_error", measure, view)


if __name__ == "__main__":
    main()
