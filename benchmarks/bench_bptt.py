"""BPTT through the known dynamics: Pendulum-v1 against the optimal-control ceiling, and CartPoleSwingUp.

    python benchmarks/bench_bptt.py              # 3 seeds + ablation + CartPoleSwingUp (several minutes)
    python benchmarks/bench_bptt.py --quick      # 1 seed, no ablation, shorter CartPoleSwingUp run
    python benchmarks/bench_bptt.py --from-json  # re-render the section only

Writes benchmarks/results/bptt.json, then benchmarks/sections/40_bptt.md (from
benchmarks/templates/40_bptt.md) and benchmarks/figures/bptt_*.png.

Protocol. Each run is a ``pathwise.train.Run`` of ``bptt`` (the simulated loop: one iteration =
``updates_per_iteration`` updates in one jitted ``lax.scan``). Training wall-clock includes building the run
and every JIT compilation, and excludes the evaluations. The learning curves evaluate the deterministic
policy after each iteration from the 100 initial states that Gymnasium's ``Pendulum-v1`` draws with
``reset(seed=i)``, i = 0..99, simulated by ``pw.systems.Pendulum`` (step-for-step equal to Gymnasium,
tests/test_parity.py) in one jitted batch. The final numbers come from Gymnasium itself:
``gymnasium.make("Pendulum-v1")``, 100 episodes with ``reset(seed=i)``, the policy acting on Gymnasium's
observations.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

import pathwise as pw
from pathwise import algorithms
from pathwise.algorithms.bptt import Config
from pathwise.envs import reset_states, run_episode
from pathwise.train import Run

from common import (ceiling, finished, machine, options, publish, save_figure, separated,  # noqa: I001
                    simulated_returns, timed_iterations, vs_ceiling)  # benchmarks/common.py

PENDULUM, CARTPOLE_ENV = "Pendulum-v1", "pathwise/CartPoleSwingUp-v0"
EPISODES = 100
ITERATIONS, ABLATION_ITERATIONS = 30, 12  # x 50 updates
TARGET_SECONDS = 60
UPRIGHT_COS = 0.95
#: the state entry that is the pole angle θ
THETA = {PENDULUM: 0, CARTPOLE_ENV: 2}
#: (key, variant, change from the default config) of the Pendulum ablation
ABLATIONS = [
    ("default", "carried 50-step windows (default)", {}),
    ("w25", "carried 25-step windows", dict(horizon=25)),
    ("w100", "carried 100-step windows", dict(horizon=100)),
    ("plain", "full 200-step episodes (lecture's plain BPTT)", dict(carry_state=False, horizon=200)),
    ("truncate", "full 200-step episodes, truncate_every=50", dict(carry_state=False, horizon=200, truncate_every=50)),
    ("noclip", "carried 50-step windows, no clipping", dict(max_grad_norm=0.0)),
]
# The working swing-up config (also pathwise/presets/bptt.toml, ["pathwise/CartPoleSwingUp-v0"]): 100-step
# carried windows, Adam 3e-3 cosine-decayed over 3000 updates, and training episodes that start anywhere in
# a broad box (every pole angle, |x| <= 1, |x_dot| <= 1, |theta_dot| <= 3) instead of hanging only.
CARTPOLE = Config(horizon=100, lr=3e-3, schedule_updates=3000, start_spread=(1.0, 1.0, 3.1416, 3.0))
CARTPOLE_VARIANTS = [("start_spread (this config)", {}), ("hanging starts only (no start_spread)",
                                                         dict(start_spread=None))]


def train_with_curve(env_id: str, config: Config, seed: int, iterations: int, states0) -> dict:
    """Train for ``iterations`` iterations; after each, the simulated return from ``states0`` and the fraction
    of those episodes that end upright, against training wall-clock."""
    def probe(run) -> dict:
        returns, finals = simulated_returns(run.spec.system, run.carry.algo.policy, states0)
        cos = jnp.cos(finals[:, THETA[env_id]])
        return {"return": float(returns.mean()), "upright": float((cos > UPRIGHT_COS).mean())}

    run, curve = timed_iterations(lambda: Run(algorithms.get("bptt"), env_id, config, seed), iterations, probe)
    return {"run": run, "curve": curve, "train_s": curve[-1]["train_s"], "skipped": int(curve[-1]["skipped_total"])}


def gym_evaluation(run, env_id: str) -> tuple[float, float, np.ndarray]:
    """Mean/std return over 100 seeded Gymnasium episodes, and each episode's final cos θ."""
    env = gym.make(env_id)
    returns, final_cos = [], []
    for i in range(EPISODES):
        episode, total, _ = run_episode(env, run.act, seed=i)
        returns.append(total)
        last = episode.next_obs[-1]  # Pendulum: (cos θ, sin θ, θ̇); CartPoleSwingUp: (x, ẋ, θ, θ̇)
        final_cos.append(float(last[0]) if env_id == PENDULUM else float(np.cos(last[2])))
    env.close()
    return float(np.mean(returns)), float(np.std(returns)), np.array(final_cos)


def pendulum_runs(seeds: int, ceiling_value: float) -> tuple[list[dict], list[dict]]:
    """The seeds one after another: their rows and curves."""
    states0 = jnp.asarray(reset_states(PENDULUM, EPISODES))
    rows, curves = [], []
    for seed in range(seeds):
        result = train_with_curve(PENDULUM, Config(), seed, ITERATIONS, states0)
        mean, std, _ = gym_evaluation(result["run"], PENDULUM)
        curve = result["curve"]
        reached = [c["train_s"] for c in curve if c["return"] >= 1.05 * ceiling_value]
        rows.append({"seed": seed, "train_s": result["train_s"], "reach_s": reached[0] if reached else None,
                     "first_eval_s": curve[0]["train_s"], "env_steps": result["run"].env_steps, "gym_mean": mean,
                     "gym_std": std, "skipped": result["skipped"]})
        curves.append(curve)
        print(f"pendulum seed {seed}: gym return {mean:.1f}, train {result['train_s']:.1f}s, within 5% at "
              f"{rows[-1]['reach_s']}", flush=True)
    return rows, curves


def ablation() -> list[dict]:
    states0 = jnp.asarray(reset_states(PENDULUM, EPISODES))
    rows = []
    for key, name, change in ABLATIONS:
        result = train_with_curve(PENDULUM, dataclasses.replace(Config(), **change), 0, ABLATION_ITERATIONS, states0)
        rows.append({"key": key, "name": name, "train_s": result["train_s"], "env_steps": result["run"].env_steps,
                     "final": result["curve"][-1]["return"], "skipped": result["skipped"]})
        print(f"ablation {name}: {rows[-1]['final']:.1f} in {result['train_s']:.1f}s", flush=True)
    return rows


def cartpole_runs(iterations: int, variants: list) -> tuple[list[dict], dict[str, list]]:
    """The swing-up config and its variants, seed 0: their rows and curves."""
    system = pw.systems.CartPoleSwingUp()
    states0 = jax.vmap(system.reset)(jax.random.split(jax.random.key(123), EPISODES))
    rows, curves = [], {}
    for name, change in variants:
        result = train_with_curve(CARTPOLE_ENV, dataclasses.replace(CARTPOLE, **change), 0, iterations, states0)
        mean, std, cos = gym_evaluation(result["run"], CARTPOLE_ENV)
        up = [c["train_s"] for c in result["curve"] if c["upright"] >= 0.9]
        rows.append({"name": name, "train_s": result["train_s"], "env_steps": result["run"].env_steps,
                     "gym_mean": mean, "gym_std": std, "final_cos": float(cos.mean()),
                     "upright": float(np.mean(cos > UPRIGHT_COS)), "upright_at_s": up[0] if up else None,
                     "skipped": result["skipped"]})
        curves[name] = result["curve"]
        print(f"cartpole {name}: return {mean:.1f}, final cos {cos.mean():.3f}, upright {rows[-1]['upright']:.2f}",
              flush=True)
    return rows, curves


def plot(curves: list[list[dict]], ceiling_value: float, cartpole: dict[str, list], out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for seed, curve in enumerate(curves):
        ax.plot([c["train_s"] for c in curve], [c["return"] for c in curve], label=f"seed {seed}")
    ax.axhline(ceiling_value, color="k", ls="--", label=f"ceiling {ceiling_value:.0f}")
    ax.axhline(1.05 * ceiling_value, color="k", ls=":", label="within 5%")
    ax.set(xlabel="training wall-clock (s, incl. compile)", ylabel="mean return, 100 Gymnasium inits",
           title="BPTT on Pendulum-v1", ylim=(-1300, -100))
    ax.legend()
    fig.tight_layout()
    save_figure(fig, "bptt_pendulum_curve.png", out, dpi=120)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, curve in cartpole.items():
        ax.plot([c["train_s"] for c in curve], [c["return"] for c in curve], label=name)
        ax2.plot([c["train_s"] for c in curve], [100 * c["upright"] for c in curve], label=name)
    ax.set(xlabel="training wall-clock (s, incl. compile)", ylabel="mean return, 100 hanging starts",
           title="BPTT on CartPoleSwingUp (500 steps, max 500)")
    ax2.set(xlabel="training wall-clock (s, incl. compile)", ylabel=f"% episodes ending cos θ > {UPRIGHT_COS}",
            title="ending upright", ylim=(-3, 103))
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, "bptt_cartpole_curve.png", out, dpi=120)


def config_facts(config: Config, *names: str) -> dict:
    return {n: getattr(config, n) for n in names}


def measure(args: argparse.Namespace) -> dict:
    facts = machine("equinox", "optax", "numpy")
    c = ceiling(PENDULUM)
    seeds, curves = pendulum_runs(args.seeds or (1 if args.quick else 3), c)
    ablation_rows = [] if args.quick else ablation()
    cp_iterations = 30 if args.quick else 60  # x 50 updates
    cp_rows, cp_curves = cartpole_runs(cp_iterations, CARTPOLE_VARIANTS[:1] if args.quick else CARTPOLE_VARIANTS)
    plot(curves, c, cp_curves, args.out)
    per_call = Config().updates_per_iteration
    return {"machine": finished(facts), "quick": args.quick, "ceiling": c, "target_seconds": TARGET_SECONDS,
            "config": config_facts(Config(), "hidden", "batch_size", "horizon", "lr", "schedule_updates",
                                   "max_grad_norm", "updates_per_iteration"),
            "pendulum": {"updates": ITERATIONS * per_call, "seeds": seeds},
            "ablation": {"updates": ABLATION_ITERATIONS * per_call, "rows": ablation_rows} if ablation_rows else None,
            "cartpole": {"updates": cp_iterations * CARTPOLE.updates_per_iteration, "upright_cos": UPRIGHT_COS,
                         "config": config_facts(CARTPOLE, "horizon", "batch_size", "lr", "schedule_updates",
                                                "max_grad_norm", "start_spread"), "rows": cp_rows}}


# ----------------------------------------------------------------------------- the section's values


def pendulum_view(p: dict, c: float, target_seconds: float) -> dict:
    """The seeds against the ceiling and the target (within 5% in under ``target_seconds`` s, every seed)."""
    seeds = [{**s, "vs": vs_ceiling(s["gym_mean"], c)} for s in p["seeds"]]
    later = [s for s in seeds[1:] if s["reach_s"] is not None]
    first, means = seeds[0], [s["gym_mean"] for s in seeds]
    return {**p, "seeds": seeds, "first": first, "n": len(seeds), "several": len(seeds) > 1, "best": max(means),
            "worst": min(means),
            "met": all(s["reach_s"] is not None and s["reach_s"] < target_seconds for s in seeds),
            "all_better": min(means) > c, "later": bool(later),
            "later_seeds": separated([s["seed"] for s in later], ", ", " and "),
            "later_min": min((s["reach_s"] for s in later), default=None),
            "later_max": max((s["reach_s"] for s in later), default=None),
            "small_margin": first["reach_s"] is not None and first["reach_s"] >= 0.75 * target_seconds}


def ablation_view(a: dict | None, c: float) -> dict | None:
    """The ablation rows, each marked ``within`` 5% of the ceiling or not, and by key."""
    if not a:
        return None
    rows = [{**r, "vs": vs_ceiling(r["final"], c), "within": r["final"] >= 1.05 * c} for r in a["rows"]]
    by = {r["key"]: r for r in rows}
    return {**a, "rows": rows, **by, "short_within": by["w25"]["within"] and by["default"]["within"]}


def cartpole_view(cp: dict) -> dict:
    """The swing-up rows; the main config's verdicts, and the hanging-starts variant's (if it ran)."""
    rows = [{**r, "swung_up": r["upright"] >= 0.9, "all_upright": r["upright"] == 1.0, "gap": 500 - r["gym_mean"],
             "lost": r["upright_at_s"] is not None and r["upright"] < 0.9} for r in cp["rows"]]
    spread = cp["config"]["start_spread"]
    return {**cp, "rows": rows, "main": rows[0], "hanging": rows[1] if len(rows) > 1 else None,
            "spread": str(tuple(round(w, 4) for w in spread)) if spread else "None"}


def view(results: dict) -> dict:
    c = results["ceiling"]
    return {**results, "target": 1.05 * c, "p": pendulum_view(results["pendulum"], c, results["target_seconds"]),
            "a": ablation_view(results["ablation"], c), "cp": cartpole_view(results["cartpole"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, no ablation, shorter CartPoleSwingUp run")
    parser.add_argument("--seeds", type=int, default=None)
    publish(options(parser, "bptt").parse_args(), "bptt", "40_bptt", measure, view)


if __name__ == "__main__":
    main()
