"""Imitation of the trajectory optimizer on Pendulum-v1: behaviour cloning vs DAgger vs joint (GPS-style).

    python benchmarks/bench_imitation.py              # 3 methods x 2 seeds, 8 rounds each
    python benchmarks/bench_imitation.py --quick      # 1 seed, 3 rounds (smoke run)
    python benchmarks/bench_imitation.py --low-data 2 # bc vs dagger with 2 trajectories per round, added
    python benchmarks/bench_imitation.py --from-json  # re-render the section only

Writes benchmarks/results/imitation.json, then benchmarks/sections/35_imitation.md (from
benchmarks/templates/35_imitation.md) and benchmarks/figures/imitation_pendulum.png. ``--low-data N`` keeps
the saved runs and adds (or replaces) the few-demonstrations table.

Protocol. Every method starts from the ``pathwise/presets/imitation.toml`` Pendulum-v1 config and runs the
same number of rounds (one iteration of the simulated loop each: ``imitation.update``), so bc and dagger ask
the MPC expert for the same number of labels. After each round the deterministic policy is evaluated from
the 100 initial states that Gymnasium's ``Pendulum-v1`` draws with ``reset(seed=i)``, i = 0..99, simulated
by ``pw.systems.Pendulum`` (step-for-step equal to Gymnasium, tests/test_parity.py) in one jitted batch (the
learning curve). The final numbers come from Gymnasium itself: ``gymnasium.make("Pendulum-v1")``, 100
episodes ``reset(seed=i)``. Training wall-clock includes building the run and every JIT compilation, and
excludes evaluations.

Compounding error. For each final policy the expert (MPC, the same one that labelled the data) is asked for
its action on two state sets from the same 100 initial states: the states the *expert* visits and the
states the *policy* visits. Behaviour cloning is fitted on the first kind only; its error on the second
kind is the distribution shift the lecture warns about, and DAgger's data is the second kind by design.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise.algorithms import imitation as im
from pathwise.envs import evaluate, reset_states
from pathwise.rollout import rollout

from common import (ceiling, finished, load_results, machine, options, publish, save_figure,  # noqa: I001
                    simulated_returns, timed_iterations, vs_ceiling)  # benchmarks/common.py

ENV = "Pendulum-v1"
EPISODES = 100
METHODS = {
    "bc": "behaviour cloning (expert demonstrations)",
    "dagger": "DAgger (MPC labels the policy's states)",
    "joint": "joint: iLQR with penalty ρ‖u − π(x)‖², then fit (GPS-style)",
}
CONFIG_FIELDS = ("expert_horizon", "expert_iterations", "rollouts_per_round", "rounds", "fit_steps", "lr",
                 "fit_batch", "hidden", "rho0", "rho_growth")


def preset_config(mode: str, **changes) -> im.Config:
    """The Pendulum-v1 preset (``pathwise/presets/imitation.toml``) with ``mode`` set, as the CLI builds it."""
    from pathwise import config, registry

    return config.build(im.Config, "imitation", registry.record(ENV).preset("imitation")[0], None,
                        {"mode": mode, **changes})


@eqx.filter_jit
def action_errors(system, policy, expert, states0):
    """Mean squared gap ``||pi(x) - expert(x)||^2`` on the expert's states and on the policy's states."""
    horizon = system.episode_length
    expert_states, expert_actions = jax.vmap(lambda s: im.expert_rollout(system, expert, s, horizon))(states0)
    own_states = jax.vmap(lambda s: rollout(system, policy, s, horizon).states)(states0)
    own_labels = jax.vmap(lambda v: im.expert_labels(expert, v))(own_states)

    def gap(states, labels):
        obs = jax.vmap(jax.vmap(system.observe))(states)
        return jnp.mean(jnp.sum((jax.vmap(jax.vmap(policy))(obs) - labels) ** 2, -1))

    return gap(expert_states, expert_actions), gap(own_states, own_labels)


def train(mode: str, seed: int, rounds: int, states0, **changes) -> dict:
    """One method and seed: ``rounds`` rounds with the simulated return after each; Gymnasium return and the
    action errors of the final policy."""
    from pathwise import algorithms
    from pathwise.train import Run

    config = preset_config(mode, **changes)
    probe = lambda run: {"return": float(simulated_returns(run.spec.system, run.carry.algo.policy,  # noqa: E731
                                                           states0)[0].mean())}
    run, rows = timed_iterations(lambda: Run(algorithms.get("imitation"), ENV, config, seed), rounds, probe)
    for i, row in enumerate(rows):
        print(f"{mode} seed {seed} round {i + 1}: return {row['return']:.1f} ({row['train_s']:.1f} s)", flush=True)
    result = evaluate(run.act, ENV, episodes=EPISODES, seed=0)
    expert = im.mpc_expert(run.spec.system, config)
    on_expert, on_own = action_errors(run.spec.system, run.carry.algo.policy, expert, states0)
    returns = [row["return"] for row in rows]
    print(f"{mode} seed {seed}: Gymnasium {result.mean:.1f} ± {result.std:.1f}; action error on expert states "
          f"{float(on_expert):.4f}, on own states {float(on_own):.4f}", flush=True)
    return {"mode": mode, "method": METHODS[mode], "seed": seed, "rounds": rounds, "env_steps": run.env_steps,
            "train_s": rows[-1]["train_s"], "returns": returns, "first_return": returns[0],
            "later_min": min(returns[1:] or returns), "later_max": max(returns[1:] or returns),
            "gym_mean": result.mean, "gym_std": result.std, "err_expert": float(on_expert), "err_own": float(on_own)}


def measure(args: argparse.Namespace) -> dict:
    """The methods x seeds (or, with --low-data, bc and dagger on few trajectories, added to the saved results)."""
    facts = machine("equinox", "optax")
    states0 = jnp.asarray(reset_states(ENV, EPISODES))
    rounds = args.rounds or (3 if args.quick and not args.low_data else preset_config("dagger").rounds)
    if args.low_data:
        saved = load_results("imitation", args.results)
        runs = [train(mode, 0, rounds, states0, rollouts_per_round=args.low_data) for mode in ("bc", "dagger")]
        low = {"machine": finished(facts), "rollouts": args.low_data, "runs": runs}
        plot(saved["runs"], saved["ceiling"], low, args.out)
        return {**saved, "low_data": low}
    t0 = time.perf_counter()
    runs = [train(mode, seed, rounds, states0) for seed in range(args.seeds or (1 if args.quick else 2))
            for mode in args.methods.split(",") if mode]  # interleaved: the machine's load hits every method alike
    config = preset_config("dagger")
    results = {"quick": args.quick, "seconds": time.perf_counter() - t0, "ceiling": ceiling(ENV),
               "config": {k: getattr(config, k) for k in CONFIG_FIELDS}, "episode_length": 200, "runs": runs,
               "low_data": None}
    plot(runs, results["ceiling"], None, args.out)
    return {"machine": finished(facts), **results}


def plot(runs: list[dict], ceiling: float, low: dict | None, out: Path | None) -> None:
    """The simulated learning curves (runs whose curve the results keep), the ceiling and the 10% target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"bc": "tab:red", "dagger": "tab:blue", "joint": "tab:green"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    seen, curves = set(), [r for r in runs + (low or {}).get("runs", []) if r.get("returns")]
    for run in (r for r in runs if r.get("returns")):
        ax.plot(range(1, len(run["returns"]) + 1), run["returns"], "o-", color=colors[run["mode"]], alpha=0.8,
                label=None if run["mode"] in seen else run["mode"])
        seen.add(run["mode"])
    for run in (low or {}).get("runs", []):
        ax.plot(range(1, len(run["returns"]) + 1), run["returns"], "x--", color=colors[run["mode"]],
                label=f"{run['mode']}, {low['rollouts']} trajectories/round")
    ax.axhline(ceiling, color="k", ls="--", label=f"MPC ceiling {ceiling:.1f}")
    ax.axhline(1.1 * ceiling, color="k", ls=":", label="within 10%")
    ax.set(xlabel="round (one iteration)", ylabel="mean return, 100 Gymnasium initial states",
           title="Imitating MPC(iLQR) on Pendulum-v1")
    ax.set_ylim(max(min((min(r["returns"]) for r in curves), default=-1300) - 20, -1300), -100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, "imitation_pendulum.png", out, dpi=120)


# ----------------------------------------------------------------------------- the section's values


def findings(runs: list[dict], target: float) -> dict:
    """Behaviour cloning against DAgger: round-1 and final returns, the own / expert states error ratio (the
    distribution shift), and whether every bc seed met the target."""
    by = {m: [r for r in runs if r["mode"] == m] for m in METHODS}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    ratio = lambda rs: mean([r["err_own"] / max(r["err_expert"], 1e-12) for r in rs])  # noqa: E731
    out = {"has_joint": bool(by["joint"]), "compared": bool(by["bc"] and by["dagger"])}
    if out["compared"]:
        bc, dg = by["bc"], by["dagger"]
        out.update(bc_first=mean([r["first_return"] for r in bc]), bc_rounds=bc[0]["rounds"],
                   bc_final=mean([r["gym_mean"] for r in bc]), dagger_final=mean([r["gym_mean"] for r in dg]),
                   bc_ratio=ratio(bc), dagger_ratio=ratio(dg), bc_all_met=min(r["gym_mean"] for r in bc) >= target)
    return out


def low_data_view(low: dict | None, ceiling: float) -> dict | None:
    """The few-demonstrations rows and how far each method's later rounds spread (bc vs dagger)."""
    if not low:
        return None
    runs = [{**r, "vs": vs_ceiling(r["gym_mean"], ceiling)} for r in low["runs"]]
    spread = {r["mode"]: r["later_max"] - r["later_min"] for r in runs if r["rounds"] > 2}
    both = "bc" in spread and "dagger" in spread
    return {**low, "runs": runs, "spread": spread if both else None,
            "bc_shifts_more": both and spread["bc"] > spread["dagger"]}


def view(results: dict) -> dict:
    c, runs = results["ceiling"], results["runs"]
    target = 1.1 * c
    rows = [{**r, "vs": vs_ceiling(r["gym_mean"], c), "met": r["gym_mean"] >= target} for r in runs]
    summary = []
    for mode in dict.fromkeys(r["mode"] for r in runs):
        mine = [r for r in rows if r["mode"] == mode]
        summary.append({"method": METHODS[mode], "first": sum(r["first_return"] for r in mine) / len(mine),
                        "final": sum(r["gym_mean"] for r in mine) / len(mine),
                        "worst": min(r["gym_mean"] for r in mine), "met": all(r["met"] for r in mine)})
    return {**results, "target": target, "rows": rows, "summary": summary, "findings": findings(runs, target),
            "steps_per_round": results["config"]["rollouts_per_round"] * results["episode_length"],
            "low": low_data_view(results.get("low_data"), c)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 3 rounds")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--methods", default="bc,dagger,joint")
    parser.add_argument("--low-data", type=int, default=0, metavar="N",
                        help="instead: bc and dagger with N trajectories per round (seed 0), added to the saved "
                             "results and the section")
    publish(options(parser, "imitation").parse_args(), "imitation", "35_imitation", measure, view)


if __name__ == "__main__":
    main()
