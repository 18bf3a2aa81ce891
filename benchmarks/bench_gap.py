"""Every Pendulum-v1 learner against the per-episode optimal-control ceiling, on the same 100 episodes.

    python benchmarks/bench_gap.py                 # every learner, seed 0, its preset budget
    python benchmarks/bench_gap.py --seeds 0 1     # more seeds
    python benchmarks/bench_gap.py --quick         # bptt and imitation only, into a temporary folder
    python benchmarks/bench_gap.py --rescore       # the saved returns against re-measured ceilings (no training)
    python benchmarks/bench_gap.py --from-json     # re-render the section only

Writes benchmarks/results/gap.json, then benchmarks/sections/16_gap.md (from benchmarks/templates/16_gap.md),
and every policy's actions on every episode, played in the simulated twin, to benchmarks/results/gap_plays.npz (beside the results file):
``benchmarks/bench_ceiling.py --plays`` starts its trajectory optimization from them too.

Each learner trains through ``pathwise.train.train`` with its shipped preset and the preset's budget (the
twin-system learner ``svgk-system`` for the simulated steps ``LEARNERS`` gives), then its deterministic policy plays
the 100 episodes whose ceilings ``pathwise/ceilings.json`` holds (``reset(seed=EVALUATION_SEED + i)``,
written by ``benchmarks/bench_ceiling.py``). Per learner: mean return, mean gap to the ceiling on the same
episodes, and on how many episodes the policy's return is *above* its ceiling (by more than a rounding
tolerance): a ceiling worth the name has none.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import finished, machine, options, publish  # benchmarks/common.py

ENV = "Pendulum-v1"
#: learner -> (env id the learner trains on, budget; None: the preset's)
LEARNERS = {"bptt": (ENV, None), "imitation": (ENV, None), "ddpg": (ENV, None), "svg0": (ENV, None),
            "svg1": (ENV, None), "mbrl": (ENV, None), "svg-inf": (ENV, None), "svgk": (ENV, None),
            "svgk-system": ("pathwise/Pendulum-v1", 1_228_800)}
EPISODES = 100
#: a policy "beats" an episode's ceiling when its return is higher by more than this (absolute, return units)
TOLERANCE = 1e-3


def policy_returns(trainer, seed: int, episodes: int) -> np.ndarray:
    """Per-episode returns of the trained deterministic policy on Gymnasium ``ENV`` from ``reset(seed=seed + i)``."""
    from pathwise.envs import evaluate

    result = evaluate(lambda obs: trainer.run.act(obs, deterministic=True), ENV, episodes=episodes, seed=seed)
    return np.asarray(result.returns, np.float64)


def twin_plays(trainer, seed: int, episodes: int) -> np.ndarray:
    """The policy's actions (episodes, T, m) played closed loop in the simulated twin (``pw.systems.Pendulum``,
    float32) from the same start states. These, not the Gymnasium plays, are what trajectory optimization can
    start from: replayed open loop in the twin they give the same trajectory, while Gymnasium's float64
    actions replayed open loop drift off the unstable upright within seconds."""
    import jax
    import jax.numpy as jnp

    import pathwise as pw

    system = pw.systems.Pendulum()
    observe, step = jax.jit(jax.vmap(system.observe)), jax.jit(jax.vmap(system.dynamics))
    states = jnp.asarray(pw.envs.reset_states(ENV, episodes, seed=seed))
    actions = []
    for _ in range(system.episode_length):
        u = np.clip(trainer.run.act_batch(np.asarray(observe(states)), deterministic=True),
                    system.action_low, system.action_high).astype(np.float32)
        actions.append(u)
        states = step(states, jnp.asarray(u))
    return np.stack(actions, axis=1)


def save_plays(plays: dict[str, np.ndarray], results: Path | None) -> Path:
    """The policies' actions, ``{"<algorithm>_s<seed>": (episodes, T, m)}``, atomically beside the results file."""
    import io

    from pathwise.checkpoint import atomic_write_bytes

    from common import results_path

    path = results_path("gap", results).with_name("gap_plays.npz")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **plays)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def score(row: dict, ceilings: np.ndarray) -> dict:
    """``row`` (with its per-episode ``returns``) measured against ``ceilings`` of the same episodes."""
    returns = np.asarray(row["returns"], np.float64)
    excess = returns - ceilings
    return {**row, "mean": float(returns.mean()), "ceiling": float(ceilings.mean()), "gap": float(excess.mean()),
            "relative_gap": float(excess.mean() / abs(ceilings.mean())), "worst_gap": float(excess.min()),
            "beats": int(np.sum(excess > TOLERANCE)), "max_excess": float(excess.max())}


def measure_one(name: str, seed: int, ceilings: np.ndarray, plays: dict) -> dict:
    from pathwise.ceilings import EVALUATION_SEED
    from pathwise.train import train

    env, budget = LEARNERS[name]
    t0 = time.perf_counter()
    trainer, summary = train(name.split("-system")[0], env, budget, seed=seed, quiet=True)
    returns = policy_returns(trainer, EVALUATION_SEED, ceilings.size)
    plays[f"{name}_s{seed}"] = twin_plays(trainer, EVALUATION_SEED, ceilings.size)
    row = score({"algorithm": name, "env_id": env, "seed": seed, "env_steps": summary["env_steps"],
                 "returns": returns.round(4).tolist(), "wall_s": round(time.perf_counter() - t0, 1)}, ceilings)
    print({k: v for k, v in row.items() if k != "returns"}, flush=True)
    return row


def shipped_ceilings() -> np.ndarray:
    from pathwise import ceilings as ceilings_mod
    from pathwise.ceilings import EVALUATION_SEED

    ceilings = ceilings_mod.episode_ceilings(ENV, EVALUATION_SEED, EPISODES)
    if ceilings is None:
        sys.exit(f"pathwise/ceilings.json has no per-episode ceilings for {ENV}: run benchmarks/bench_ceiling.py.")
    return ceilings


def ceiling_facts() -> dict:
    from pathwise import ceilings as ceilings_mod

    entry = ceilings_mod.entry(ENV)
    return {"mean": float(np.mean(entry["returns"])), "method": entry["method"], "date": entry["date"]}


def rescore(args: argparse.Namespace) -> dict:
    """The saved policies' per-episode returns against the ceilings shipped now (no training)."""
    from common import load_results

    saved = load_results("gap", args.results)
    ceilings = shipped_ceilings()
    return {**saved, "ceiling": ceiling_facts(), "rows": [score(r, ceilings) for r in saved["rows"]],
            "rescored": "the returns of the run above, scored against the ceilings measured later (--rescore)"}


def measure(args: argparse.Namespace) -> dict:
    from pathwise.ceilings import EVALUATION_SEED

    if args.rescore:
        return rescore(args)
    facts = machine()
    ceilings = shipped_ceilings()
    names = ["bptt", "imitation"] if args.quick else args.algos
    plays: dict[str, np.ndarray] = {}
    rows = [measure_one(name, seed, ceilings, plays) for seed in args.seeds for name in names]
    print(f"plays written to {save_plays(plays, args.results)}", flush=True)
    return {"machine": finished(facts), "episodes": EPISODES, "seed": EVALUATION_SEED, "tolerance": TOLERANCE,
            "ceiling": ceiling_facts(), "rows": rows}


def view(results: dict) -> dict:
    rows = [{k: v for k, v in r.items() if k != "returns"} for r in results["rows"]]
    beaten = [r for r in rows if r["beats"]]
    return {"rescored": None, "held_out": None, **results, "rows": rows, "n_rows": len(rows), "n_beaten": len(beaten),
            "none_beaten": not beaten, "closest": max(rows, key=lambda r: r["gap"]) if rows else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--algos", nargs="+", default=list(LEARNERS), choices=list(LEARNERS))
    parser.add_argument("--rescore", action="store_true",
                        help="score the saved runs' per-episode returns against the ceilings shipped now")
    args = options(parser, "gap").parse_args()
    if args.quick and not args.from_json and args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="pathwise_gap_"))
        args.results = args.results or args.out / "gap.json"
    publish(args, "gap", "16_gap", measure, view)


if __name__ == "__main__":
    main()
