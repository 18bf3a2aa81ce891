"""Environment steps per second: pathwise's jitted, vmapped Pendulum vs Gymnasium's Pendulum-v1.

Measured side by side in one process, same policy (a fixed linear torque law
clipped to the box), Pendulum dynamics + reward + observation each step:

- pathwise ``rollout``: ``jax.jit(jax.vmap(rollout))`` over N parallel
  pendulums, ``lax.scan`` over 200 steps; timed after compilation, with
  ``block_until_ready``. Also the same rollout *with its backward pass*
  (``jax.grad`` of the mean return with respect to the policy parameters),
  the workload of BPTT.
- pathwise ``SystemEnv`` (``gymnasium.make("pathwise/Pendulum-v1")``): our
  system behind the Gymnasium API, one jitted step call per Python step.
- Gymnasium ``Pendulum-v1`` (NumPy): one env stepped in Python, and
  ``gymnasium.vector.SyncVectorEnv`` with 8 and 64 envs.

All rows are built (and compiled) first, then timed interleaved: every round runs
each row once, and each row reports its median over the rounds (the machine is
shared; drift hits every row alike).

    python benchmarks/bench_throughput.py            # full: ~1-2 minutes
    python benchmarks/bench_throughput.py --quick    # fewer steps/repeats
    python benchmarks/bench_throughput.py --from-json  # re-render the section only

Writes benchmarks/results/throughput.json, then benchmarks/sections/10_throughput.md
(from benchmarks/templates/10_throughput.md) and benchmarks/figures/throughput.png.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Callable

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

import pathwise.systems  # noqa: F401  (registers pathwise/Pendulum-v1)
from pathwise.rollout import rollout
from pathwise.systems import Pendulum

from common import finished, machine, options, publish, save_figure  # benchmarks/common.py

HORIZON = 200
GAIN = np.array([-1.0, -0.5, -0.3], np.float32)  # torque = clip(GAIN . obs, -2, 2)


def interleaved_rates(cases: list[tuple[str, int, Callable[[], int]]], repeats: int) -> list[dict]:
    """Time every case once per round, ``repeats`` rounds (A, B, C, A, B, C, ...): machine drift hits all alike.

    Each ``run()`` returns the number of steps it took; a row reports the median steps/second over the
    rounds and the slowest and fastest round.
    """
    rates: list[list[float]] = [[] for _ in cases]
    for r in range(repeats):
        for i, (_, _, run) in enumerate(cases):
            t0 = time.perf_counter()
            steps = run()
            rates[i].append(steps / (time.perf_counter() - t0))
        print(f"round {r + 1}/{repeats} done", flush=True)
    rows = []
    for (label, n, _), rs in zip(cases, rates):
        rows.append({"backend": label, "envs": n, "steps_per_s": statistics.median(rs), "min": min(rs), "max": max(rs)})
        print(f"{label:50s} N={n:6d}: {rows[-1]['steps_per_s']:12,.0f} steps/s (range {min(rs):,.0f}-{max(rs):,.0f})",
              flush=True)
    return rows


# ----------------------------------------------------------------------------- pathwise


def make_batch_rollout(num_envs: int, with_grad: bool, min_time: float):
    system = Pendulum()

    def mean_return(gain, states0):
        def one(s0):
            return rollout(system, lambda o: jnp.clip(gain @ o, -2.0, 2.0)[None], s0, HORIZON).rewards.sum()

        return jax.vmap(one)(states0).mean()

    fn = jax.jit(jax.value_and_grad(mean_return) if with_grad else mean_return)
    states0 = jax.vmap(system.reset)(jax.random.split(jax.random.key(0), num_envs))
    gain = jnp.asarray(GAIN)
    jax.block_until_ready(fn(gain, states0))  # compile
    # a timed run repeats the call until it lasts about `min_time` (one call of a few envs takes microseconds,
    # and timing a single one measures the scheduler more than the rollout)
    one = []
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(gain, states0))
        one.append(time.perf_counter() - t0)
    calls = max(1, math.ceil(min_time / min(one)))

    def run() -> int:
        for _ in range(calls):
            out = fn(gain, states0)
        jax.block_until_ready(out)
        return calls * num_envs * HORIZON

    return run


def pathwise_cases(sizes: list[int], min_time: float) -> list[tuple[str, int, Callable[[], int]]]:
    """Compiled (jit, vmap, scan) rollouts, without and with the backward pass, for each batch size."""
    cases = []
    for with_grad in (False, True):
        label = "pathwise rollout + backward (jit, vmap, scan)" if with_grad else "pathwise rollout (jit, vmap, scan)"
        cases += [(label, n, make_batch_rollout(n, with_grad, min_time)) for n in sizes]
    return cases


# ----------------------------------------------------------------------------- Gymnasium API


def policy(obs: np.ndarray) -> np.ndarray:
    return np.clip(obs @ GAIN, -2.0, 2.0).astype(np.float32)[..., None]


def single_env_run(env: gym.Env, steps: int) -> Callable[[], int]:
    env.reset(seed=0)

    def run() -> int:
        obs, _ = env.reset()
        for _ in range(steps):
            obs, _, terminated, truncated, _ = env.step(policy(obs))
            if terminated or truncated:
                obs, _ = env.reset()
        return steps

    return run


def vector_env_run(num_envs: int, steps: int) -> Callable[[], int]:
    envs = gym.make_vec("Pendulum-v1", num_envs=num_envs, vectorization_mode="sync")
    envs.reset(seed=0)
    iterations = max(1, steps // num_envs)

    def run() -> int:
        obs, _ = envs.reset()
        for _ in range(iterations):
            obs, *_ = envs.step(policy(obs))  # NEXT_STEP autoreset: Gymnasium's default
        return iterations * num_envs

    return run


def gymnasium_cases(steps: int) -> list[tuple[str, int, Callable[[], int]]]:
    """Gymnasium's NumPy Pendulum (single env and SyncVectorEnv) and pathwise's SystemEnv behind the same API."""
    return [
        ("Gymnasium Pendulum-v1 (NumPy), single env", 1, single_env_run(gym.make("Pendulum-v1"), steps)),
        ("pathwise SystemEnv via gymnasium.make, single env", 1,
         single_env_run(gym.make("pathwise/Pendulum-v1"), steps // 4)),
        ("Gymnasium Pendulum-v1, SyncVectorEnv", 8, vector_env_run(8, steps)),
        ("Gymnasium Pendulum-v1, SyncVectorEnv", 64, vector_env_run(64, steps * 2)),
    ]


# ----------------------------------------------------------------------------- report


def plot(rows: list[dict], out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['backend']}\nN={r['envs']}" for r in rows]
    colors = ["tab:blue" if r["backend"].startswith("pathwise rollout (") else
              "tab:purple" if "backward" in r["backend"] else
              "tab:orange" if "SystemEnv" in r["backend"] else "tab:gray" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    ax.barh(range(len(rows)), [r["steps_per_s"] for r in rows], color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("Pendulum environment steps per second (log scale, median of interleaved rounds)")
    ax.set_title("Pendulum throughput: pathwise (JAX, CPU) vs Gymnasium (NumPy)")
    fig.tight_layout()
    save_figure(fig, "throughput.png", out, dpi=120)


def measure(args: argparse.Namespace) -> dict:
    facts = machine("equinox", "optax", "numpy")
    sizes = [1, 64, 1024] if args.quick else [1, 64, 1024, 16384]
    min_time = 0.1 if args.quick else 0.3
    rows = interleaved_rates(pathwise_cases(sizes, min_time) + gymnasium_cases(2_000 if args.quick else 10_000),
                             args.repeats)
    plot(rows, args.out)
    return {"machine": finished(facts), "quick": args.quick, "repeats": args.repeats, "horizon": HORIZON,
            "min_time": min_time, "rows": rows}


def view(results: dict) -> dict:
    """The rows with time per step and ratio to Gymnasium's single env; the best rows of each kind."""
    rows = results["rows"]
    base = next(r["steps_per_s"] for r in rows if r["backend"].startswith("Gymnasium") and r["envs"] == 1)
    rows = [{**r, "us_per_step": 1e6 / r["steps_per_s"], "vs_gymnasium": r["steps_per_s"] / base} for r in rows]
    fastest = lambda keep: max((r for r in rows if keep(r["backend"])), key=lambda r: r["steps_per_s"])
    vector = fastest(lambda b: "SyncVectorEnv" in b)
    best, best_grad = fastest(lambda b: b.startswith("pathwise rollout (")), fastest(lambda b: "backward" in b)
    return {**results, "rows": rows, "vector": vector, "best": best, "best_grad": best_grad,
            "best_vs_vector": best["steps_per_s"] / vector["steps_per_s"],
            "grad_vs_vector": best_grad["steps_per_s"] / vector["steps_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (~30 s)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per row (default 5, quick 3)")
    args = options(parser, "throughput").parse_args()
    args.repeats = args.repeats or (3 if args.quick else 5)
    publish(args, "throughput", "10_throughput", measure, view)


if __name__ == "__main__":
    main()
