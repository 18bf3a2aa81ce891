"""Sampling planners (CEM, MPPI) and the gradient MPC on Pendulum-v1's true System, against the ceiling.

    python benchmarks/bench_planners.py              # 10 evaluation episodes
    python benchmarks/bench_planners.py --quick      # 3 episodes, into a temporary file
    python benchmarks/bench_planners.py --results /tmp/planners.json

Writes benchmarks/results/planners.json (no section yet: the lead writes BENCHMARKS.md).

Protocol. Episode i starts from the state of Gymnasium's ``Pendulum-v1`` reset with ``seed = EVALUATION_SEED + i``
(``pathwise.ceilings``), the episodes whose per-episode ceilings ``pathwise/ceilings.json`` holds. Each planner
runs closed loop for the whole episode (200 steps) on ``pw.systems.Pendulum`` (step for step Gymnasium's) as one
``lax.scan`` (``rollout``): receding-horizon CEM and MPPI (``pw.control.SamplingMPC``, default configs: horizon
30, 400 samples, 5 refits per step, 10 for the first plan) and iLQR-MPC (``pw.control.mpc_expert``: horizon 40,
5 iterations per step, 100 for the first plan). Reported per planner: mean return over the episodes, its ratio
to the ceiling's mean on the same episodes (1 = the ceiling; returns are negative, so larger is worse) and the
per-episode returns. Times: the first call of the jitted episode (trace + XLA compile + one run) apart from the
compiled call; per environment step, one episode at a time (the median over the episodes of compiled-episode
time / 200) and all episodes vmapped (compiled batch time / 200 / episodes); and in Gymnasium through
``pw.control.MPCPolicy`` (one jitted re-plan per step, Python and env included), episode 0, whose return is
reported too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import pathwise as pw
from pathwise.ceilings import EVALUATION_SEED, episode_ceilings

from common import finished, machine, save_results, vs_ceiling  # benchmarks/common.py

ENV = "Pendulum-v1"


def planners(system: pw.systems.System) -> dict:
    """name -> receding-horizon controller with ``init``/``step``/``rollout`` (one interface)."""
    return {"CEM": pw.control.SamplingMPC(system, pw.control.CEMConfig()),
            "MPPI": pw.control.SamplingMPC(system, pw.control.MPPIConfig()),
            "iLQR-MPC": pw.control.mpc_expert(system)}


def settings(planner) -> dict:
    if isinstance(planner, pw.control.SamplingMPC):
        return {k: v for k, v in vars(planner.config).items()}
    return {"horizon": planner.horizon, "iterations": planner.iterations, "init_iterations": planner.init_iterations,
            "solver": planner.solver}


@eqx.filter_jit
def episode(planner, state0):
    """One closed-loop episode's return."""
    return planner.rollout(state0, planner.system.episode_length)[2].sum()


@eqx.filter_jit
def episodes(planner, states0):
    """Every episode's return, vmapped."""
    return jax.vmap(lambda s: planner.rollout(s, planner.system.episode_length)[2].sum())(states0)


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0, out


def gymnasium_episode(planner, seed: int) -> tuple[float, float]:
    """(return, seconds per step after the first) of ``MPCPolicy(planner)`` on Gymnasium from ``reset(seed)``."""
    import gymnasium as gym

    policy, env = pw.control.MPCPolicy(planner), gym.make(ENV)
    obs, _ = env.reset(seed=seed)
    total, times = 0.0, []
    for _ in range(planner.system.episode_length):
        t0 = time.perf_counter()
        action = policy(obs)
        times.append(time.perf_counter() - t0)
        obs, reward, *_ = env.step(action)
        total += float(reward)
    env.close()
    return total, statistics.median(times[2:])  # the first calls compile


def measure_one(name: str, planner, starts: jnp.ndarray, ceilings: np.ndarray) -> dict:
    steps = planner.system.episode_length
    first_s, _ = timed(episode, planner, starts[0])
    per_episode = [timed(episode, planner, s) for s in starts]
    returns = np.array([float(r) for _, r in per_episode])
    batch_first_s, _ = timed(episodes, planner, starts)
    batch_s, batch_returns = timed(episodes, planner, starts)
    gym_return, gym_step_s = gymnasium_episode(planner, EVALUATION_SEED)
    row = {"planner": name, "settings": settings(planner), "mean": float(returns.mean()),
           "ceiling": float(ceilings.mean()), "ratio": float(returns.mean() / ceilings.mean()),
           "vs_ceiling_pct": vs_ceiling(float(returns.mean()), float(ceilings.mean())),
           "worst_gap": float((returns - ceilings).min()), "returns": returns.round(3).tolist(),
           "batch_max_diff": float(np.abs(np.asarray(batch_returns) - returns).max()),
           "first_call_s": first_s, "step_ms": 1e3 * statistics.median(t for t, _ in per_episode) / steps,
           "batch_first_call_s": batch_first_s, "batch_step_ms": 1e3 * batch_s / steps / len(starts),
           "gym_return_episode0": gym_return, "gym_step_ms": 1e3 * gym_step_s}
    print({k: v for k, v in row.items() if k not in ("returns", "settings")}, flush=True)
    return row


def measure(args: argparse.Namespace) -> dict:
    facts = machine()
    ceilings = episode_ceilings(ENV, EVALUATION_SEED, args.episodes)
    if ceilings is None:
        raise SystemExit(f"No per-episode ceilings for {ENV}: run `python benchmarks/bench_ceiling.py` first.")
    system = pw.systems.Pendulum()
    starts = jnp.asarray(pw.envs.reset_states(ENV, args.episodes, seed=EVALUATION_SEED))
    rows = [measure_one(name, planner, starts, ceilings) for name, planner in planners(system).items()
            if name in args.planners]
    return {"machine": finished(facts), "env_id": ENV, "episodes": args.episodes, "seed": EVALUATION_SEED,
            "ceiling_mean": float(ceilings.mean()), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 episodes, results into a temporary folder")
    parser.add_argument("--planners", nargs="+", default=["CEM", "MPPI", "iLQR-MPC"],
                        choices=["CEM", "MPPI", "iLQR-MPC"])
    parser.add_argument("--results", type=Path, default=None,
                        help="results file to write (default benchmarks/results/planners.json)")
    args = parser.parse_args()
    if args.quick:
        args.episodes = 3
        args.results = args.results or Path(tempfile.mkdtemp(prefix="pathwise_planners_")) / "planners.json"
    save_results("planners", measure(args), args.results)
    print(f"wrote {args.results or 'benchmarks/results/planners.json'}")


if __name__ == "__main__":
    main()
