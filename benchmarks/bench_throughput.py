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

Writes benchmarks/sections/10_throughput.md, benchmarks/figures/throughput.png
and benchmarks/out/throughput.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax

import pathwise.systems  # noqa: F401  (registers pathwise/Pendulum-v1)
from pathwise.checkpoint import atomic_write_text
from pathwise.rollout import rollout
from pathwise.systems import Pendulum

HERE = Path(__file__).resolve().parent
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


def plot(rows: list[dict], path: Path) -> None:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_section(rows: list[dict], args: argparse.Namespace, path: Path) -> None:
    base = next(r["steps_per_s"] for r in rows if r["backend"].startswith("Gymnasium") and r["envs"] == 1)
    vec = max((r for r in rows if "SyncVectorEnv" in r["backend"]), key=lambda r: r["steps_per_s"])
    best = max((r for r in rows if r["backend"].startswith("pathwise rollout (")), key=lambda r: r["steps_per_s"])
    best_grad = max((r for r in rows if "backward" in r["backend"]), key=lambda r: r["steps_per_s"])
    lines = [
        "## Throughput: jitted, vmapped Pendulum vs Gymnasium",
        "",
        f"Command: `python benchmarks/bench_throughput.py{' --quick' if args.quick else ''}`  ",
        f"Date: {args.date}  ",
        f"Machine: 2-core CPU container, no GPU ({os.cpu_count()} cores visible); "
        f"{'shared with other jobs during this run, ' if max(args.load_before, args.load) > 2 else 'no other jobs, '}"
        f"load average {args.load_before:.1f} before it and {args.load:.1f} at its end (absolute numbers "
        "are noisy; the rows were measured interleaved, so the ratios are the point)  ",
        f"Versions: jax {jax.__version__}, equinox {eqx.__version__}, optax {optax.__version__}, "
        f"gymnasium {gym.__version__}, numpy {np.__version__}",
        "",
        "Every row steps Pendulum-v1 dynamics, reward and observation under the same clipped linear torque law. "
        f"pathwise rows: one `jax.jit` call runs N pendulums (`jax.vmap`) for {HORIZON} steps (`lax.scan`); "
        "timed after compilation with `block_until_ready`, each timed run repeating the call until it lasts about "
        f"{0.1 if args.quick else 0.3} s; '+ backward' also computes the gradient of the mean "
        "return with respect to the policy parameters (BPTT's workload). Gymnasium rows step in a Python loop; "
        "the vector rows use `SyncVectorEnv`. All rows are compiled / constructed first and then timed "
        f"interleaved: {args.repeats} rounds, each round runs every row once (A, B, C, ..., A, B, C, ...); the "
        "table gives each row's median over the rounds and its slowest-fastest range. Default XLA and NumPy "
        "threading (both cores available to XLA).",
        "",
        "| backend | parallel envs | steps / s (median) | range over rounds | µs / step | vs Gymnasium single env |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = r["steps_per_s"]
        spread = f"{r['min']:,.0f}-{r['max']:,.0f}" if "min" in r else "—"
        lines.append(f"| {r['backend']} | {r['envs']} | {rate:,.0f} | {spread} | {1e6 / rate:.3g} | "
                     f"{rate / base:.3g}x |")
    lines += ["", f"The fastest pathwise rollout (N={best['envs']}) steps {best['steps_per_s'] / vec['steps_per_s']:,.0f}x "
              f"as many pendulums per second as Gymnasium's best vector row (SyncVectorEnv, N={vec['envs']}); with "
              f"the backward pass (N={best_grad['envs']}) {best_grad['steps_per_s'] / vec['steps_per_s']:,.0f}x. "
              "`SyncVectorEnv` steps its envs one after another in Python, so it is no faster per step than a single "
              "env. Behind the Gymnasium API (`SystemEnv`) a pathwise system pays one jitted call, with its dispatch "
              "and host-device copies, per step, which costs more than NumPy's few scalar operations: the "
              "throughput comes from keeping the whole loop inside `jit` (the rollout rows), not from the per-step "
              "API."]
    lines += ["", "![throughput](../figures/throughput.png)", ""]
    atomic_write_text(path, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (~30 s)")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the section from benchmarks/out/")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per row (default 5, quick 3)")
    args = parser.parse_args()
    args.repeats = args.repeats or (3 if args.quick else 5)
    sizes = [1, 64, 1024] if args.quick else [1, 64, 1024, 16384]
    gym_steps = 2_000 if args.quick else 10_000
    saved = HERE / "out" / "throughput.json"
    if args.from_json:  # rewrite section and figure from the last run's numbers
        data = json.loads(saved.read_text())
        rows, args.load = data["rows"], data["load"]
        args.load_before = data.get("load_before", args.load)
        args.date = data.get("date", "unknown")
        args.repeats, args.quick = data.get("repeats", args.repeats), data.get("quick", args.quick)
    else:
        args.load_before = os.getloadavg()[0]
        rows = interleaved_rates(pathwise_cases(sizes, 0.1 if args.quick else 0.3) + gymnasium_cases(gym_steps),
                                 args.repeats)
        args.load = os.getloadavg()[0]
        args.date = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"
        atomic_write_text(saved, json.dumps({"rows": rows, "load": args.load, "load_before": args.load_before,
                                             "date": args.date, "repeats": args.repeats, "quick": args.quick},
                                            indent=1))
    plot(rows, HERE / "figures" / "throughput.png")
    write_section(rows, args, HERE / "sections" / "10_throughput.md")
    print(f"wrote {HERE / 'sections' / '10_throughput.md'}")


if __name__ == "__main__":
    main()
