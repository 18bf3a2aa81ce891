"""Many seeds at once: 8 BPTT runs as one vmapped program vs 8 sequential runs (Pendulum-v1).

    python benchmarks/bench_seeds.py            # 8 seeds x 500 updates
    python benchmarks/bench_seeds.py --quick    # 8 seeds x 150 updates

Writes benchmarks/sections/42_seeds.md and benchmarks/figures/seeds_*.png.

Both ways run the same jitted training loop (``init`` + ``lax.scan`` of ``update``); "sequential" calls
the single-seed program (``bptt.train_seed``) 8 times, "vmapped" calls ``bptt.train_seeds`` once.
Times are wall-clock; "first call" includes compilation, "second call" reuses the compiled program.
A third row runs the vmapped program with the seed axis sharded over 2 host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=2``, in a subprocess because the flag must be set
before JAX starts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import jax
import numpy as np

HERE = Path(__file__).resolve().parent
SECTION = HERE / "sections" / "42_seeds.md"
FIGURES = HERE / "figures"
SEEDS = 8
REPEATS = 3
SMALL_BATCH = 16


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - t0, out


def measure(updates: int, batch: int = 128, repeats: int = REPEATS) -> dict:
    """Run in this process (unsharded unless devices > 1): first-call times, then ``repeats`` interleaved calls."""
    import pathwise as pw
    from pathwise.algorithms import bptt

    system, config = pw.systems.Pendulum(), bptt.Config(batch_size=batch)
    res = {"devices": len(jax.devices()), "batch": batch}
    single = res["devices"] == 1
    seq = lambda: [bptt.train_seed(system, config, s, updates) for s in range(SEEDS)]  # noqa: E731
    vm = lambda: bptt.train_seeds(system, config, SEEDS, updates)  # noqa: E731
    if single:
        res["seq_first"], _ = timed(seq)
    res["vmap_first"], _ = timed(vm)
    res["seq_times"], res["vmap_times"] = [], []
    for _ in range(repeats):  # interleaved, so load changes on this shared machine hit both ways alike
        if single:
            t, seq_out = timed(seq)
            res["seq_times"].append(t)
        t, (_, metrics) = timed(vm)
        res["vmap_times"].append(t)
    res["vmap_second"] = float(np.min(res["vmap_times"]))
    res["vmap_loss"] = np.asarray(metrics["loss"]).tolist()
    if single:
        # fastest of the repeats: on a shared machine the least-disturbed call is the best estimate of the cost
        res["seq_second"] = float(np.min(res["seq_times"]))
        res["speedup"] = res["seq_second"] / res["vmap_second"]
        seq_loss = np.stack([np.asarray(m["loss"]) for _, m in seq_out])
        first = np.asarray(metrics["loss"])[:, 0]
        res["first_rel_diff"] = float(np.max(np.abs(seq_loss[:, 0] - first) / np.abs(first)))
        res["seq_final"] = float(-seq_loss[:, -20:].mean())
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--from-json", action="store_true", help="only rewrite the section from benchmarks/out/seeds.json")
    args = parser.parse_args()
    updates = 150 if args.quick else 500
    if args.child:
        print("RESULT " + json.dumps(measure(args.child)))
        return
    if args.from_json:  # rewrite section and figure from the saved numbers of the last run
        saved = json.loads((HERE / "out" / "seeds.json").read_text())
        local, small, sharded = saved["local"], saved["small"], saved["sharded"]
        local["load"] = saved.get("load")
        for res in (local, small, sharded):
            res["vmap_second"] = float(np.min(res["vmap_times"]))
            if res["seq_times"]:
                res["seq_second"] = float(np.min(res["seq_times"]))
                res["speedup"] = res["seq_second"] / res["vmap_second"]
    else:
        local = measure(updates)
        small = measure(updates, batch=SMALL_BATCH)
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
        out = subprocess.run([sys.executable, __file__, "--child", str(updates)], env=env, capture_output=True,
                             text=True, check=True).stdout
        sharded = json.loads(out.split("RESULT ", 1)[1])
        (HERE / "out").mkdir(exist_ok=True)
        (HERE / "out" / "seeds.json").write_text(json.dumps({"local": local, "small": small, "sharded": sharded,
                                                                   "load": os.getloadavg()[0]}))
    losses = np.array(local["vmap_loss"])
    sharded_diff = float(np.max(np.abs(np.array(sharded["vmap_loss"])[:, 0] - losses[:, 0]) / np.abs(losses[:, 0])))
    figure = plot(local, sharded, losses)
    write_section(args.quick, updates, local, sharded, sharded_diff, figure, losses, small)


def plot(local: dict, sharded: dict, losses: np.ndarray) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = ["8 sequential", "8 vmapped", "8 vmapped,\nsharded x2"]
    first = [local["seq_first"], local["vmap_first"], sharded["vmap_first"]]
    second = [local["seq_second"], local["vmap_second"], sharded["vmap_second"]]
    x = np.arange(3)
    ax1.bar(x - 0.2, first, 0.4, label="first call (incl. compile)")
    ax1.bar(x + 0.2, second, 0.4, label="second call")
    ax1.set_xticks(x, names)
    ax1.set(ylabel="wall-clock (s)", title="8 BPTT seeds on Pendulum-v1")
    ax1.legend()
    for row in losses:
        ax2.plot(-row, alpha=0.7)
    ax2.set(xlabel="update", ylabel="window return (50 steps, batch mean)", title="the 8 vmapped seeds")
    fig.tight_layout()
    fig.savefig(FIGURES / "seeds_timing.png", dpi=120)
    plt.close(fig)
    return "benchmarks/figures/seeds_timing.png"


def write_section(quick: bool, updates: int, local: dict, sharded: dict, sharded_diff: float, figure: str,
                  losses: np.ndarray, small: dict) -> None:
    import equinox
    import optax

    date = subprocess.run(["date", "-u", "+%F"], capture_output=True, text=True).stdout.strip()
    def verdict(res: dict) -> str:
        x = res["speedup"]
        return f"**{x:.2f}×** faster" if x >= 1 else f"**{1 / x:.2f}×** slower"

    why = ("Where vmapping loses, each seed's loop is already one compiled program, so sequential calls pay "
           "no per-step Python overhead that vmapping could remove, and a batch of 128 already gives XLA's CPU "
           "kernels enough work per op; vmapping turns each seed's matmuls into batched ones, which the CPU "
           "backend runs no faster. Where it wins (small per-seed batches), the fixed cost of each op in the "
           "compiled loop dominates and vmapping shares it across the 8 seeds; on an accelerator, where one "
           "seed leaves the device idle, that is the common case.")
    lines = [
        "## Many seeds at once (`pathwise.algorithms.bptt.train_seeds`)",
        "",
        f"Command: `python benchmarks/bench_seeds.py{' --quick' if quick else ''}` · date {date} · 2-core CPU "
        f"container, no GPU; {'shared with other jobs during this run, ' if float(local.get('load') or os.getloadavg()[0]) > 2 else ''}"
        f"load average {local.get('load') or os.getloadavg()[0]:.1f} at its end · "
        f"python {platform.python_version()}, jax {jax.__version__}, equinox {equinox.__version__}, "
        f"optax {optax.__version__}, gymnasium {gym.__version__}.",
        "",
        f"{SEEDS} seeds × {updates} BPTT updates on Pendulum (default config: batch 128 per seed, 50-step carried "
        f"windows; {SEEDS * updates * 128 * 50:,} simulated steps in all; and the same with batch {SMALL_BATCH} per "
        "seed). The whole training loop is one jitted program; vmapped = one call for all seeds, sequential = "
        f"the single-seed program called 8 times. 'Later calls' reuse the compiled program: fastest of {REPEATS} "
        "calls, sequential and vmapped alternating so that load changes on this shared machine hit both (the "
        "least-disturbed call is the best estimate of the cost under load; all repeats: "
        f"{', '.join(f'{t:.1f}' for t in local['seq_times'])} s sequential vs "
        f"{', '.join(f'{t:.1f}' for t in local['vmap_times'])} s vmapped at batch 128; "
        f"{', '.join(f'{t:.1f}' for t in small['seq_times'])} s vs "
        f"{', '.join(f'{t:.1f}' for t in small['vmap_times'])} s at batch {SMALL_BATCH}).",
        "",
        "| batch per seed | way | devices | first call, incl. compile (s) | later calls (s) |",
        "|---|---|---|---|---|",
        f"| 128 | 8 sequential runs | 1 | {local['seq_first']:.1f} | {local['seq_second']:.1f} |",
        f"| 128 | 8 seeds vmapped | 1 | {local['vmap_first']:.1f} | {local['vmap_second']:.1f} |",
        f"| 128 | 8 seeds vmapped, seed axis sharded | 2 (forced host devices) | {sharded['vmap_first']:.1f} | "
        f"{sharded['vmap_second']:.1f} |",
        f"| {SMALL_BATCH} | 8 sequential runs | 1 | {small['seq_first']:.1f} | {small['seq_second']:.1f} |",
        f"| {SMALL_BATCH} | 8 seeds vmapped | 1 | {small['vmap_first']:.1f} | {small['vmap_second']:.1f} |",
        "",
        f"Vmapped vs sequential (later calls): batch 128: {verdict(local)}; batch {SMALL_BATCH}: {verdict(small)}. "
        "Target (issue 7), the 8-seed vmapped run faster than 8 sequential runs: "
        f"batch 128 (the default) {'met' if local['speedup'] > 1 else 'NOT met'}, batch {SMALL_BATCH} "
        f"{'met' if small['speedup'] > 1 else 'NOT met'}"
        + (". " if local["speedup"] > 1 and small["speedup"] > 1 else ". " + why + " ")
        + "Compilation (first call) costs more for the vmapped program. Same computation: the first update's "
        f"loss differs by at most {local['first_rel_diff']:.1e} (relative) between vmapped and sequential and "
        f"{sharded_diff:.1e} between sharded and unsharded (floating-point reassociation in batched matmuls). "
        "Over hundreds of updates on the chaotic pendulum these ulp-level differences grow, so the runs are "
        "equal in distribution rather than bit-for-bit: mean window return over the last 20 updates "
        f"{local['seq_final']:.1f} (sequential) vs {-losses[:, -20:].mean():.1f} (vmapped), 8-seed means. "
        + (f"Sharding the seed axis over 2 forced *host* devices (`XLA_FLAGS=--xla_force_host_platform_device_count=2`, "
           f"one per core) is {local['seq_second'] / sharded['vmap_second']:.2f}x "
           + ("faster" if sharded["vmap_second"] < local["seq_second"] else "slower")
           + " than the 8 sequential runs on one device: XLA's CPU backend does not keep both cores busy within "
           "one device's small ops, while two devices run four seeds each in parallel. "
           if sharded["vmap_second"] < local["seq_second"] else
           "Sharding over 2 forced *host* devices on this 2-core machine is slower than one device using both "
           "cores for intra-op parallelism. ")
        + "tests/test_seeds.py checks that the sharded path agrees with the unsharded one.",
        "",
        f"![8 seeds: timing and learning curves](../figures/{Path(figure).name})",
        "",
    ]
    SECTION.parent.mkdir(parents=True, exist_ok=True)
    SECTION.write_text("\n".join(lines))
    print(f"wrote {SECTION}")


if __name__ == "__main__":
    main()
