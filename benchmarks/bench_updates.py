"""Gradient updates per second: pathwise DDPG / SVG(0) vs Stable-Baselines3 DDPG / SAC, same networks and batch.

Both sides train on the same 10,000 Pendulum-v1 transitions (random actions,
seeded resets) already in their replay buffers, with the same network sizes
(SB3's defaults: [400, 300] for DDPG, [256, 256] for SAC; pathwise's configs
set to match), batch 256, and one update = what each library calls one:

- DDPG: one critic step, one actor step through the updated critic, a Polyak
  step of both targets (pathwise ``ddpg.update_step``; SB3 ``DDPG.train`` with
  ``policy_delay=1``).
- pathwise SVG(0) vs SB3 SAC (SVG(0) with twin critics and the tuned entropy
  bonus is SAC's closest relative): one critic step, one actor step, one
  entropy-coefficient step, a Polyak step of the target critics.

pathwise is timed through the jitted call its learner makes once per episode
(``ddpg.learn`` / ``svg0.learn``: store an episode, here of length 0, then a
``fori_loop`` of ``n_updates`` updates), compiled once by a call with
``n_updates=0`` (reported as the compile time) and then timed in blocks of N
updates, checking that no block recompiles. SB3 is timed through
``model.train(gradient_steps=N, batch_size=256)``. The four cases run
interleaved (A, B, C, D, A, B, ...) so machine drift hits all alike; each
reports the median of the repeats. Each thread count runs in its own process
(XLA's and torch's thread pools are fixed at import).

    python benchmarks/bench_updates.py              # full: 1 and 2 threads, a few minutes
    python benchmarks/bench_updates.py --quick      # 1 thread, small blocks (< 1 min)
    python benchmarks/bench_updates.py --from-json  # rewrite the section from benchmarks/out/updates.json

Writes benchmarks/sections/11_updates.md, benchmarks/figures/updates.png and
benchmarks/out/updates.json. Needs the `bench` extra (stable-baselines3, torch).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ENV = "Pendulum-v1"
BATCH = 256
BUFFER = 200_000
CASES = ["pathwise ddpg", "SB3 DDPG", "pathwise svg0", "SB3 SAC"]
PAIRS = [("pathwise ddpg", "SB3 DDPG"), ("pathwise svg0", "SB3 SAC")]
NETS = {"pathwise ddpg": "actor [400, 300], critic [400, 300]", "SB3 DDPG": "actor [400, 300], critic [400, 300]",
        "pathwise svg0": "actor [256, 256], 2 critics [256, 256]", "SB3 SAC": "actor [256, 256], 2 critics [256, 256]"}


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
    """A ``run()`` that does one timed block of ``n_updates`` through the learner's jitted ``learn``.

    Returns ``(run, compile_s, cache_size)``: ``cache_size()`` counts ``learn``'s compiled versions.
    """
    import jax
    import jax.numpy as jnp

    from pathwise import replay
    from pathwise.algorithms import ddpg, svg0
    from pathwise.types import Transition

    low, high = np.array([-2.0], np.float32), np.array([2.0], np.float32)
    if algo == "ddpg":
        module = ddpg
        config = ddpg.DDPGConfig(hidden=(400, 300), critic_hidden=(400, 300), n_critics=1, batch_size=BATCH,
                                 buffer_size=BUFFER)
    else:
        module = svg0
        config = svg0.SVG0Config(hidden=(256, 256), critic_hidden=(256, 256), n_critics=2, batch_size=BATCH,
                                 buffer_size=BUFFER, auto_entropy=True)
    state = module.init(jax.random.key(0), 3, 1, low, high, config)
    stored = Transition(*(jnp.asarray(data[k]) for k in Transition._fields))
    state = state._replace(buffer=replay.add_batch(state.buffer, stored))
    # the learner passes one padded episode per call; a length-0 episode stores nothing
    episode = jax.tree.map(lambda x: jnp.zeros((200, *x.shape[1:]), x.dtype), stored)
    length = jnp.asarray(0, jnp.int32)
    box = {"state": state, "key": jax.random.key(1)}

    def call(n: int) -> None:
        box["key"], key = jax.random.split(box["key"])
        box["state"], metrics = module.learn(box["state"], episode, length, jnp.asarray(n, jnp.int32), key, config)
        jax.block_until_ready((box["state"], metrics))

    t0 = time.perf_counter()
    call(0)  # n_updates is traced: this compiles the call every block reuses, and runs no update
    compile_s = time.perf_counter() - t0
    call(n_updates)  # warm-up block
    return (lambda: call(n_updates)), compile_s, module.learn._cache_size


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


def worker(threads: int, n_updates: int, repeats: int, budget_s: float, out: Path) -> None:
    sys.path.insert(0, str(HERE))
    from bench_sb3 import limit_threads

    limit_threads(threads)  # before jax and torch are imported
    import jax
    import stable_baselines3
    import torch

    t0 = time.perf_counter()
    data = random_transitions(10_000)
    runs, compile_s, caches = {}, {}, {}
    setup = {"data": time.perf_counter() - t0}
    for name in CASES:
        t0 = time.perf_counter()
        algo = name.split()[-1].lower()
        if name.startswith("pathwise"):
            runs[name], compile_s[name], caches[name] = pathwise_case(algo, data, n_updates)
        else:
            runs[name] = sb3_case(algo, data, n_updates)
        setup[name] = time.perf_counter() - t0
    print(f"[{threads} thread(s)] setup (s): " + ", ".join(f"{k} {v:.1f}" for k, v in setup.items()) +
          " (pathwise: compile + a warm-up block; SB3: model + a warm-up block)", flush=True)
    before = {name: cache() for name, cache in caches.items()}
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
    recompiles = {name: cache() - before[name] for name, cache in caches.items()}
    if any(recompiles.values()):
        print(f"WARNING: pathwise recompiled during the timed blocks: {recompiles}", file=sys.stderr)
    result = {"threads": threads, "n_updates": n_updates, "repeats": len(times[CASES[0]]), "times": times,
              "compile_s": compile_s, "compiled_versions": {n: c() for n, c in caches.items()},
              "recompiles_during_timing": recompiles, "load": os.getloadavg()[0],
              "versions": {"jax": jax.__version__, "torch": torch.__version__,
                           "stable-baselines3": stable_baselines3.__version__}}
    out.write_text(json.dumps(result, indent=1))


# ----------------------------------------------------------------------------- report


def summarize(run: dict) -> dict:
    n = run["n_updates"]
    rates = {name: [n / t for t in ts] for name, ts in run["times"].items()}
    med = {name: statistics.median(r) for name, r in rates.items()}
    paired = {}
    for a, b in PAIRS:  # per round: both measured back to back
        ratios = [x / y for x, y in zip(rates[a], rates[b])]
        paired[a] = (statistics.median(ratios), min(ratios), max(ratios))
    return {"median": med, "paired": paired}


def break_even(run: dict) -> dict[str, float]:
    """Updates after which pathwise's compile time is recovered by its faster updates (pairs where it is faster)."""
    med = summarize(run)["median"]
    out = {}
    for a, b in PAIRS:
        saved = 1.0 / med[b] - 1.0 / med[a]
        if saved > 0:
            out[a] = run["compile_s"][a] / saved
    return out


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(runs)
    colors = {"pathwise ddpg": "tab:blue", "SB3 DDPG": "tab:gray", "pathwise svg0": "tab:blue", "SB3 SAC": "tab:gray"}
    for i, run in enumerate(runs):
        med = summarize(run)["median"]
        xs = np.arange(len(CASES)) + (i - (len(runs) - 1) / 2) * width
        bars = ax.bar(xs, [med[c] for c in CASES], width, color=[colors[c] for c in CASES],
                      alpha=1.0 if i == 0 else 0.55, edgecolor="black", linewidth=0.5)
        for x, bar in zip(xs, bars):
            ax.text(x, bar.get_height(), f"{run['threads']}t", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(CASES)), [f"{c}\n" + NETS[c].replace("], ", "]\n", 1) for c in CASES], fontsize=7)
    ax.set_ylabel("gradient updates / s (median)")
    ax.set_title(f"Updates/s at batch {BATCH} on Pendulum-shaped data (labels: threads)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_section(saved: dict, path: Path) -> None:
    runs = saved["runs"]
    v = runs[0]["versions"]
    first = runs[0]
    lines = [
        "## Gradient updates per second: pathwise DDPG / SVG(0) vs Stable-Baselines3",
        "",
        f"Command: `{saved['command']}`  ",
        f"Date: {saved['date']}  ",
        f"Machine: 2-core CPU container, no GPU ({saved['nproc']} cores visible); "
        + ("shared with other jobs during this run, " if max([saved['load_before']] + [r['load'] for r in runs]) > 2
           else "no other jobs, ")
        + f"load average {saved['load_before']:.1f} before it and "
        + ", ".join(f"{r['load']:.1f} after the {r['threads']}-thread part" for r in runs)
        + " (absolute rates are noisy; the interleaved ratios are the point)  ",
        f"Versions: jax {v['jax']}, torch {v['torch']}, stable-baselines3 {v['stable-baselines3']}",
        "",
        "Both sides train on the same 10,000 Pendulum-v1 transitions (uniformly random actions, seeded resets) "
        f"in a {BUFFER:,}-slot replay buffer, batch {BATCH}, Adam, the same network sizes (SB3's defaults: "
        "[400, 300] for DDPG, [256, 256] for SAC; pathwise's configs set to match). One update is what each "
        "library calls one: DDPG = critic step, actor step, Polyak step of both targets; SVG(0) / SAC = critic "
        "step (twin critics), actor step, entropy-coefficient step, Polyak step of the target critics. pathwise "
        "is timed through the jitted call its learner makes once per episode (`ddpg.learn` / `svg0.learn`: a "
        "`fori_loop` of N updates), SB3 through `model.train(gradient_steps=N, batch_size=256)`. Blocks of "
        f"N = {first['n_updates']} updates after a warm-up block; the four cases run interleaved (A, B, C, D, A, "
        f"B, ...), " + ", ".join(f"{r['repeats']} rounds at {r['threads']} thread(s)" for r in runs) +
        ", medians. Each thread count is its own process: 1 thread = "
        "`torch.set_num_threads(1)` and XLA's `--xla_cpu_multi_thread_eigen=false` (as the SB3 section); "
        "2 threads = both libraries' pools at 2.",
        "",
        "| threads | implementation | networks | updates / s | ms / update | pathwise / SB3 (paired rounds: median, range) |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for run in runs:
        s = summarize(run)
        for name in CASES:
            rate = s["median"][name]
            ratio = ""
            if name in s["paired"]:
                m, lo, hi = s["paired"][name]
                ratio = f"**{m:.2f}x** ({lo:.2f}-{hi:.2f})"
            lines.append(f"| {run['threads']} | {name} | {NETS[name]} | {rate:,.0f} | {1e3 / rate:.2f} | {ratio} |")
    for run in runs:
        s = summarize(run)
        (d, _, _), (v, _, _) = s["paired"]["pathwise ddpg"], s["paired"]["pathwise svg0"]
        lines += ["", f"At {run['threads']} thread(s), pathwise ddpg ran **{d:.2f}x** SB3 DDPG's updates per second and "
                  f"pathwise svg0 **{v:.2f}x** SB3 SAC's (median over the interleaved rounds of the per-round ratio)."]
    lines += ["", "Compilation (pathwise; once per run, before the first update, not in the rates above): " +
              "; ".join(f"{r['threads']} thread(s): " + ", ".join(f"{k} {t:.1f} s" for k, t in r["compile_s"].items())
                        for r in runs) + ". Compiled versions of `learn` after the timed blocks: " +
              "; ".join(", ".join(f"{k} {c}" for k, c in r["compiled_versions"].items()) for r in runs) +
              " (recompilations during the timed blocks: " +
              ", ".join(str(sum(r["recompiles_during_timing"].values())) for r in runs) + ")." + "".join(
                  f" At {r['threads']} thread(s) the compilation is paid back after " + ", ".join(
                      f"{even:,.0f} {a.split()[-1]} updates" for a, even in break_even(r).items()) + "."
                  for r in runs if break_even(r))]
    lines += ["", "Notes: pathwise's DDPG actor uses tanh hidden units (SB3's ReLU); same layer sizes, so the same "
              "matrix-multiply work. An SB3 update pays Python and PyTorch dispatch for every layer, optimizer and "
              "`.item()` call; a pathwise block of N updates is one XLA call (fused, no Python between updates), "
              "so its per-update cost is the arithmetic. The learner's 200,000-slot replay buffer rides through "
              "the loop without being copied per update (a separate check under load: the same rate with a "
              "10,000-slot buffer, and with the state donated to the call)."]
    if any(r["threads"] > 1 for r in runs):
        lines += ["", "With 2 threads each library's thread pool needs both cores at the same moment: on a machine "
                  "shared with other jobs this is the most fragile row (during development, at load average 12, "
                  "SB3 fell to ~1 update/s at 2 threads), so trust it only from an idle machine."]
    lines += ["", "![updates](../figures/updates.png)", ""]
    from pathwise.checkpoint import atomic_write_text  # jax is imported only after the thread limits are set

    atomic_write_text(path, "\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 thread, N=10, 3 rounds (< 1 min)")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the section from benchmarks/out/")
    parser.add_argument("--threads", default=None, help="comma-separated thread counts (default 1,2; quick 1)")
    parser.add_argument("--updates", type=int, default=None, help="updates per timed block (default 100; quick 10)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 7; quick 3)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed rounds per thread count after which no new round starts (at least 2 "
                             "rounds run; default 240, quick 30): on a busy machine torch's 2-thread pool can slow "
                             "down 10-30x")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    n_updates = args.updates or (10 if args.quick else 100)
    repeats = args.repeats or (3 if args.quick else 7)
    budget = args.budget or (30.0 if args.quick else 240.0)
    if args.worker is not None:
        worker(args.worker, n_updates, repeats, budget, Path(args.worker_out))
        return 0
    saved_path = HERE / "out" / "updates.json"
    if args.from_json:
        saved = json.loads(saved_path.read_text())
    else:
        threads = [int(t) for t in (args.threads or ("1" if args.quick else "1,2")).split(",")]
        command = "python benchmarks/bench_updates.py" + (" --quick" if args.quick else "") + "".join(
            f" --{k} {v}" for k, v in (("threads", args.threads), ("updates", args.updates),
                                       ("repeats", args.repeats), ("budget", args.budget)) if v is not None)
        saved = {"command": command, "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
                 "nproc": os.cpu_count(), "load_before": os.getloadavg()[0], "runs": []}
        saved_path.parent.mkdir(exist_ok=True)
        for t in threads:
            out = saved_path.with_name(f"updates_{t}threads.json")
            subprocess.check_call([sys.executable, __file__, "--worker", str(t), "--worker-out", str(out),
                                   "--updates", str(n_updates), "--repeats", str(repeats), "--budget", str(budget)])
            saved["runs"].append(json.loads(out.read_text()))
            out.unlink()
            from pathwise.checkpoint import atomic_write_text

            # after every thread count: an interrupted run keeps its rows
            atomic_write_text(saved_path, json.dumps(saved, indent=1))
    plot(saved["runs"], HERE / "figures" / "updates.png")
    write_section(saved, HERE / "sections" / "11_updates.md")
    print(f"wrote {HERE / 'sections' / '11_updates.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
