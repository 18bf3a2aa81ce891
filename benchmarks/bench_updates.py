"""Gradient updates per second: pathwise DDPG / SVG(0) vs Stable-Baselines3 DDPG / SAC, same networks and batch.

Both sides train on the same 10,000 Pendulum-v1 transitions (random actions,
seeded resets) already in their replay buffers, with the same network sizes
(SB3's defaults: [400, 300] for DDPG, [256, 256] for SAC; pathwise's configs
set to match), batch 256, and one update = what each library calls one:

- DDPG: one critic step, one actor step through the updated critic, a Polyak
  step of both targets (pathwise ``ddpg.update``; SB3 ``DDPG.train`` with
  ``policy_delay=1``).
- pathwise SVG(0) vs SB3 SAC (SVG(0) with twin critics and the tuned entropy
  bonus is SAC's closest relative): one critic step, one actor step, one
  entropy-coefficient step, a Polyak step of the target critics.

pathwise is timed through the jitted call its replay loop makes once per episode
(``pathwise.loops.replay.store_and_update``: store an episode, here of length 0,
then a ``fori_loop`` of ``n_updates`` calls of the algorithm's
``update(state, buffer, key, config)``), compiled once by a call with
``n_updates=0`` (reported as the compile time) and then timed in blocks of N
updates, checking that no block recompiles. SB3 is timed through
``model.train(gradient_steps=N, batch_size=256)``. The four cases run
interleaved (A, B, C, D, A, B, ...) so machine drift hits all alike; each
reports the median of the repeats. Each thread count runs in its own process
(XLA's and torch's thread pools are fixed at import).

    python benchmarks/bench_updates.py              # full: 1 and 2 threads, a few minutes
    python benchmarks/bench_updates.py --quick      # 1 thread, small blocks (< 1 min)
    python benchmarks/bench_updates.py --from-json  # re-render the section only

Writes benchmarks/results/updates.json, then benchmarks/sections/11_updates.md (from
benchmarks/templates/11_updates.md) and benchmarks/figures/updates.png. Needs the `bench` extra
(stable-baselines3, torch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and "--worker" in sys.argv:  # the thread limits go before jax and torch start
    from bench_sb3 import limit_threads

    limit_threads(int(sys.argv[sys.argv.index("--worker") + 1]))

import numpy as np  # noqa: E402

from common import finished, machine, options, publish, save_figure, separated  # noqa: E402  (benchmarks/common.py)

ENV = "Pendulum-v1"
BATCH = 256
BUFFER = 200_000
TRANSITIONS = 10_000
CASES = ["pathwise ddpg", "SB3 DDPG", "pathwise svg0", "SB3 SAC"]
PAIRS = {"pathwise ddpg": "SB3 DDPG", "pathwise svg0": "SB3 SAC"}
NETS = {"pathwise ddpg": "actor [400, 300], critic [400, 300]", "SB3 DDPG": "actor [400, 300], critic [400, 300]",
        "pathwise svg0": "actor [256, 256], 2 critics [256, 256]", "SB3 SAC": "actor [256, 256], 2 critics [256, 256]"}
#: pathwise's configs, set to SB3's network sizes (DDPG: [400, 300]; SAC: [256, 256], 2 critics, tuned entropy)
CONFIGS = {"ddpg": dict(hidden=(400, 300), critic_hidden=(400, 300), n_critics=1),
           "svg0": dict(hidden=(256, 256), critic_hidden=(256, 256), n_critics=2, auto_entropy=True)}


# ----------------------------------------------------------------------------- data


def random_transitions(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` Pendulum-v1 transitions under uniformly random actions, episodes reset with seeds seed, seed+1, ..."""
    import gymnasium as gym

    env = gym.make(ENV)
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated")}
    episode = 0
    obs, _ = env.reset(seed=seed)
    while len(rows["obs"]) < n:
        action = rng.uniform(-2.0, 2.0, size=(1,)).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for k, v in zip(rows, (obs, action, reward, next_obs, terminated, truncated)):
            rows[k].append(v)
        obs = next_obs
        if terminated or truncated:
            episode += 1
            obs, _ = env.reset(seed=seed + episode)
    data = {k: np.asarray(v) for k, v in rows.items()}
    for k in ("obs", "action", "reward", "next_obs"):
        data[k] = data[k].astype(np.float32)
    return data


# ----------------------------------------------------------------------------- pathwise


def pathwise_case(algo: str, data: dict[str, np.ndarray], n_updates: int):
    """A ``run()`` that does one timed block of ``n_updates`` updates through the replay loop's jitted call.

    Returns ``(run, compile_s, compilations, counter)``: the compilations this case added, and ``counter()``,
    the compilations of the call so far (the call is one for every algorithm).
    """
    import jax
    import jax.numpy as jnp

    from common import update_block
    from pathwise import algorithms, replay, spec
    from pathwise.loops.replay import ReplayItem, example_item
    from pathwise.types import Transition

    algorithm, env_spec = algorithms.get(algo), spec.from_env(ENV)
    config = algorithm.Config(**CONFIGS[algo], batch_size=BATCH, buffer_size=BUFFER)
    stored = Transition(*(jnp.asarray(data[k]) for k in Transition._fields))
    buffer = replay.add_batch(replay.init(example_item(env_spec), BUFFER),
                              ReplayItem(stored, jnp.zeros(len(data["obs"]))))
    call = update_block(algorithm, env_spec, config)
    box = {"state": algorithm.init(jax.random.key(0), env_spec, config), "key": jax.random.key(1)}

    def block(n: int) -> None:
        box["key"], key = jax.random.split(box["key"])
        box["state"], metrics = call(box["state"], buffer, n, key)
        jax.block_until_ready((box["state"], metrics))

    before, t0 = call.compiled_versions(), time.perf_counter()
    block(0)  # n is traced: this compiles the call every block reuses, and runs no update
    compile_s = time.perf_counter() - t0
    block(n_updates)  # warm-up block
    return (lambda: block(n_updates)), compile_s, call.compiled_versions() - before, call.compiled_versions


# ----------------------------------------------------------------------------- SB3


def sb3_case(algo: str, data: dict[str, np.ndarray], n_updates: int):
    """A ``run()`` that does one timed block of ``model.train(gradient_steps=n_updates, batch_size=256)``."""
    import gymnasium as gym
    from stable_baselines3 import DDPG, SAC
    from stable_baselines3.common.logger import Logger

    env = gym.make(ENV)
    n = len(data["obs"])
    if algo == "ddpg":  # rl-zoo3's Pendulum-v1 DDPG settings (as bench_sb3.py)
        model = DDPG("MlpPolicy", env, learning_rate=1e-3, gamma=0.98, buffer_size=BUFFER, learning_starts=n,
                     batch_size=BATCH, policy_kwargs=dict(net_arch=[400, 300]), seed=0, verbose=0, device="cpu")
    else:  # SAC's defaults: net_arch [256, 256], 2 critics, ent_coef="auto"; rl-zoo3's learning rate
        model = SAC("MlpPolicy", env, learning_rate=1e-3, buffer_size=BUFFER, learning_starts=n, batch_size=BATCH,
                    seed=0, verbose=0, device="cpu")
    rb = model.replay_buffer
    # the same transitions; SB3 stores actions rescaled to [-1, 1]
    rb.observations[:n, 0] = data["obs"]
    rb.next_observations[:n, 0] = data["next_obs"]
    rb.actions[:n, 0] = data["action"] / 2.0
    rb.rewards[:n, 0] = data["reward"]
    rb.dones[:n, 0] = data["terminated"]
    rb.timeouts[:n, 0] = 0.0
    rb.pos = n
    model.set_logger(Logger(folder=None, output_formats=[]))  # train() records its losses; keep them in memory
    model.train(gradient_steps=n_updates, batch_size=BATCH)  # warm-up block

    def run() -> None:
        model.train(gradient_steps=n_updates, batch_size=BATCH)

    return run


# ----------------------------------------------------------------------------- one process per thread count


def build_cases(threads: int, n_updates: int) -> tuple[dict, dict, dict]:
    """Every case's timed block; pathwise's compile times and compilations, and the compilation counter."""
    t0 = time.perf_counter()
    data = random_transitions(TRANSITIONS)
    runs, compile_s, compilations, counter = {}, {}, {}, None
    setup = {"data": time.perf_counter() - t0}
    for name in CASES:
        t0 = time.perf_counter()
        algo = name.split()[-1].lower()
        if name.startswith("pathwise"):
            runs[name], compile_s[name], compilations[name], counter = pathwise_case(algo, data, n_updates)
        else:
            runs[name] = sb3_case(algo, data, n_updates)
        setup[name] = time.perf_counter() - t0
    print(f"[{threads} thread(s)] setup (s): " + ", ".join(f"{k} {v:.1f}" for k, v in setup.items()) +
          " (pathwise: compile + a warm-up block; SB3: model + a warm-up block)", flush=True)
    return runs, compile_s, compilations, counter


def worker(threads: int, n_updates: int, repeats: int, budget_s: float, out: Path) -> None:
    runs, compile_s, compilations, counter = build_cases(threads, n_updates)
    before = counter()
    times = {name: [] for name in CASES}
    start = time.perf_counter()
    for r in range(repeats):  # interleaved: every case once per round
        if r >= 2 and time.perf_counter() - start > budget_s:
            print(f"[{threads} thread(s)] stopping after {r} rounds: over the {budget_s:.0f} s budget", flush=True)
            break
        for name in CASES:
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
        print(f"[{threads} thread(s)] round {r + 1}/{repeats}: " +
              ", ".join(f"{name} {n_updates / times[name][-1]:.0f}/s" for name in CASES), flush=True)
    recompiles = counter() - before
    if recompiles:
        print(f"WARNING: pathwise recompiled {recompiles} time(s) during the timed blocks", file=sys.stderr)
    out.write_text(json.dumps({"threads": threads, "n_updates": n_updates, "times": times, "compile_s": compile_s,
                               "compiled_versions": compilations, "recompiles": recompiles,
                               "load": os.getloadavg()[0]}))


# ----------------------------------------------------------------------------- the parent process


def summarize(run: dict) -> dict:
    """One thread count: median rate per case, the paired per-round ratios pathwise / SB3 (median, range), and
    the updates after which pathwise's compile time is paid back by its faster updates (where it is faster)."""
    n = run["n_updates"]
    rates = {name: [n / t for t in ts] for name, ts in run["times"].items()}
    cases = []
    for name in CASES:
        case = {"name": name, "rate": statistics.median(rates[name]), "ratio": None, "compile_s": None,
                "compiled_versions": None, "paid_back_after": None}
        if name in PAIRS:  # per round: both measured back to back
            ratios = [x / y for x, y in zip(rates[name], rates[PAIRS[name]])]
            saved = 1.0 / statistics.median(rates[PAIRS[name]]) - 1.0 / case["rate"]
            case.update(ratio={"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)},
                        compile_s=run["compile_s"][name], compiled_versions=run["compiled_versions"][name],
                        paid_back_after=run["compile_s"][name] / saved if saved > 0 else None)
        cases.append(case)
    return {"threads": run["threads"], "repeats": len(run["times"][CASES[0]]), "load": run["load"],
            "recompiles": run["recompiles"], "cases": cases}


def thread_count(threads: int, n_updates: int, repeats: int, budget: float) -> dict:
    """One thread count's measurements, in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        subprocess.check_call([sys.executable, __file__, "--worker", str(threads), "--worker-out", str(out),
                               "--updates", str(n_updates), "--repeats", str(repeats), "--budget", str(budget)])
        return summarize(json.loads(out.read_text()))


def measure(args: argparse.Namespace) -> dict:
    facts = machine("torch", "stable-baselines3")
    n_updates, repeats, budget = settings(args)
    threads = [int(t) for t in (args.threads or ("1" if args.quick else "1,2")).split(",")]
    runs = [thread_count(t, n_updates, repeats, budget) for t in threads]
    plot(runs, args.out)
    return {"machine": finished(facts), "quick": args.quick, "n_updates": n_updates, "batch": BATCH,
            "buffer": BUFFER, "transitions": TRANSITIONS, "runs": runs}


def plot(runs: list[dict], out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(runs)
    colors = {"pathwise ddpg": "tab:blue", "SB3 DDPG": "tab:gray", "pathwise svg0": "tab:blue", "SB3 SAC": "tab:gray"}
    for i, run in enumerate(runs):
        xs = np.arange(len(CASES)) + (i - (len(runs) - 1) / 2) * width
        bars = ax.bar(xs, [c["rate"] for c in run["cases"]], width, color=[colors[c] for c in CASES],
                      alpha=1.0 if i == 0 else 0.55, edgecolor="black", linewidth=0.5)
        for x, bar in zip(xs, bars):
            ax.text(x, bar.get_height(), f"{run['threads']}t", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(CASES)), [f"{c}\n" + NETS[c].replace("], ", "]\n", 1) for c in CASES], fontsize=7)
    ax.set_ylabel("gradient updates / s (median)")
    ax.set_title(f"Updates/s at batch {BATCH} on Pendulum-shaped data (labels: threads)")
    fig.tight_layout()
    save_figure(fig, "updates.png", out, dpi=120)


def run_view(run: dict) -> dict:
    """A thread count's rows with their networks and ms per update; its pathwise cases on their own."""
    cases = [{**c, "networks": NETS[c["name"]], "algo": c["name"].split()[-1], "ms": 1e3 / c["rate"]}
             for c in run["cases"]]
    ours = [c for c in cases if c["name"] in PAIRS]
    by = {c["name"]: c for c in cases}
    return {**run, "cases": cases, "compiled": separated(ours), "ddpg": by["pathwise ddpg"],
            "svg0": by["pathwise svg0"], "paid_back": separated([c for c in ours if c["paid_back_after"] is not None]),
            "any_paid_back": any(c["paid_back_after"] is not None for c in ours)}


def view(results: dict) -> dict:
    runs = separated([run_view(r) for r in results["runs"]])
    return {**results, "runs": runs, "runs_semicolon": separated(runs, "; "),
            "multi_thread": any(r["threads"] > 1 for r in runs)}


def settings(args: argparse.Namespace) -> tuple[int, int, float]:
    """Updates per timed block, interleaved rounds and the seconds after which no new round starts."""
    return (args.updates or (10 if args.quick else 100), args.repeats or (3 if args.quick else 7),
            args.budget or (30.0 if args.quick else 240.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 thread, N=10, 3 rounds (< 1 min)")
    parser.add_argument("--threads", default=None, help="comma-separated thread counts (default 1,2; quick 1)")
    parser.add_argument("--updates", type=int, default=None, help="updates per timed block (default 100; quick 10)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 7; quick 3)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed rounds per thread count after which no new round starts (at least 2 "
                             "rounds run; default 240, quick 30): on a busy machine torch's 2-thread pool can slow "
                             "down 10-30x")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = options(parser, "updates").parse_args()
    if args.worker is not None:
        worker(args.worker, *settings(args), Path(args.worker_out))
        return 0
    publish(args, "updates", "11_updates", measure, view)
    return 0


if __name__ == "__main__":
    sys.exit(main())
