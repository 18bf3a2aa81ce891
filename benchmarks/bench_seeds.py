"""Many seeds at once: 8 runs as one vmapped program vs 8 sequential runs (bptt, and svgk on a System).

    python benchmarks/bench_seeds.py              # 8 seeds x 500 bptt / 150 svgk updates
    python benchmarks/bench_seeds.py --quick      # 8 seeds x 150 bptt / 50 svgk updates
    python benchmarks/bench_seeds.py --from-json  # re-render the section only

Writes benchmarks/results/seeds.json, then benchmarks/sections/42_seeds.md (from
benchmarks/templates/42_seeds.md) and benchmarks/figures/seeds_timing.png.

Every way runs the same jitted training loop of the simulated loop (``pathwise.loops.simulated``: ``init``
and a ``lax.scan`` of the algorithm's ``update``): "sequential" calls the single-seed program
(``train_seed``) 8 times, "vmapped" calls ``train_seeds`` once. Two processes:

* one CPU device (JAX's default on a machine without an accelerator): sequential vs vmapped;
* the host split into one XLA device per core (``pathwise.seeds.use_host_devices``, what
  ``pathwise train ... --seeds 8`` does on such a machine): sequential (on the first device) vs vmapped with
  the seed axis sharded over the devices.

Within a process the ways alternate (A, B, A, B, ...) so that load changes hit them alike; "first call"
includes compilation, "later calls" reuse the compiled program (fastest of the repeats).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import finished, machine, options, publish, save_figure, separated  # benchmarks/common.py

SEEDS = 8
REPEATS = 3
PROFILE_CALLS = 10
#: (name, algorithm, per-seed batch or None for the default config); the updates are set per algorithm
CASES = [("bptt-128", "bptt", 128), ("bptt-16", "bptt", 16), ("svgk", "svgk", None)]
SPLIT_CASES = ["bptt-128", "svgk"]
#: the metric whose negative is the window return of an update
LOSS = {"bptt": "loss", "svgk": "actor_loss"}


def setup(algo: str, batch: int | None):
    """The algorithm, the Pendulum System's spec and its default config (``batch``, if given) with one update
    per iteration, so that a run's metrics have one entry per update."""
    import pathwise as pw
    from pathwise import algorithms, spec

    algorithm = algorithms.get(algo)
    config = algorithm.Config(updates_per_iteration=1, **({"batch_size": batch} if batch else {}))
    return algorithm, spec.from_system(pw.systems.Pendulum()), config


def timed(fn):
    import jax

    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - t0, out


def measure_case(algo: str, batch: int | None, updates: int) -> tuple[dict, list]:
    """Sequential vs vmapped (sharded when this process has several devices), interleaved, in this process.

    Returns the numbers and the vmapped seeds' per-update losses (for the figure)."""
    import jax
    import numpy as np

    from pathwise.loops.simulated import train_seed, train_seeds

    algorithm, spec, config = setup(algo, batch)
    seq = lambda: [train_seed(algorithm, spec, config, s, updates) for s in range(SEEDS)]  # noqa: E731
    vm = lambda: train_seeds(algorithm, spec, config, SEEDS, updates)  # noqa: E731 (sharded when devices > 1)
    res = {"algo": algo, "batch": batch, "devices": len(jax.devices()), "updates": updates,
           "n_envs": getattr(config, "n_envs", None), "horizon": config.horizon}
    res["seq_first"], _ = timed(seq)
    res["vmap_first"], _ = timed(vm)
    res["seq_times"], res["vmap_times"] = [], []
    for _ in range(REPEATS):
        t, seq_out = timed(seq)
        res["seq_times"].append(t)
        t, (_, metrics) = timed(vm)
        res["vmap_times"].append(t)
    seq_loss = np.stack([np.asarray(m[LOSS[algo]]) for _, m in seq_out])
    vm_loss = np.asarray(metrics[LOSS[algo]])
    res["first_rel_diff"] = float(np.max(np.abs(seq_loss[:, 0] - vm_loss[:, 0]) / np.abs(vm_loss[:, 0])))
    res["seq_final"], res["vmap_final"] = float(-seq_loss[:, -20:].mean()), float(-vm_loss[:, -20:].mean())
    return res, vm_loss.tolist()


def profile_bptt_update(batch: int = 128) -> dict:
    """ms for the 8 seeds' window loss alone vs loss and gradient: sequential calls vs one vmapped call."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from pathwise.algorithms import bptt

    _, spec, config = setup("bptt", batch)
    keys = jax.vmap(jax.random.key)(jnp.arange(SEEDS))
    states = jax.vmap(lambda k: bptt.init(k, spec, config))(keys)

    def loss(state, key, grad):
        f = lambda p: bptt.bptt_loss(p, spec.system, state.states, jax.random.split(key, batch), config)[0]  # noqa
        return eqx.filter_grad(f)(state.policy) if grad else f(state.policy)

    out = {}
    for grad in (False, True):
        one = eqx.filter_jit(lambda s, k, g=grad: loss(s, k, g))
        vm = eqx.filter_jit(jax.vmap(lambda s, k, g=grad: loss(s, k, g)))
        rows = [jax.tree.map(lambda x, i=i: x[i], states) for i in range(SEEDS)]
        ways = {"seq": lambda: [one(rows[i], keys[i]) for i in range(SEEDS)], "vmap": lambda: vm(states, keys)}
        for fn in ways.values():
            timed(fn)
        best = {w: float("inf") for w in ways}
        for _ in range(REPEATS):
            for w, fn in ways.items():
                t, _ = timed(lambda fn=fn: [fn() for _ in range(PROFILE_CALLS)])
                best[w] = min(best[w], t / PROFILE_CALLS * 1e3)
        out["grad" if grad else "loss"] = best
    return out


def run_child(split: int, updates: dict[str, int]) -> dict:
    """The split-host measurements, in a fresh interpreter (the device count is fixed once JAX starts)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, __file__, "--child", str(split), "--updates", json.dumps(updates)],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"split-host child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.split("RESULT ", 1)[1])


def child(split: int, updates: dict[str, int]) -> None:
    from pathwise import seeds

    assert seeds.use_host_devices(split), "the child must start with JAX not yet started"
    print("RESULT " + json.dumps({n: measure_case(a, b, updates[a])[0] for n, a, b in CASES if n in SPLIT_CASES}))


def measure(args: argparse.Namespace) -> dict:
    from pathwise.seeds import cpu_cores

    facts = machine("equinox", "optax")
    updates = {"bptt": 150, "svgk": 50} if args.quick else {"bptt": 500, "svgk": 150}
    one, curves = {}, {}
    for name, algo, batch in CASES:
        one[name], curves[name] = measure_case(algo, batch, updates[algo])
    results = {"quick": args.quick, "seeds": SEEDS, "repeats": REPEATS, "profile_calls": PROFILE_CALLS,
               "one": one, "profile": profile_bptt_update(), "split": run_child(max(2, cpu_cores()), updates)}
    plot(results, curves["bptt-128"], args.out)
    return {"machine": finished(facts), **results}


def plot(results: dict, losses: list, out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    one, split = results["one"], results["split"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    labels, bars = [], []
    for name in SPLIT_CASES:
        labels += [f"{name}\nsequential", f"{name}\nvmapped", f"{name}\nvmapped,\nsharded x{split[name]['devices']}"]
        bars += [min(min(one[name]["seq_times"]), min(split[name]["seq_times"])), min(one[name]["vmap_times"]),
                 min(split[name]["vmap_times"])]
    ax1.bar(np.arange(len(bars)), bars, color=["tab:gray", "tab:blue", "tab:green"] * len(SPLIT_CASES))
    ax1.set_xticks(np.arange(len(bars)), labels, fontsize=7)
    ax1.set(ylabel="wall-clock, compiled (s)", title=f"{SEEDS} seeds on Pendulum (later calls)")
    for row in np.array(losses):
        ax2.plot(-row, alpha=0.7)
    ax2.set(xlabel="update", ylabel="window return (50 steps, batch mean)", title=f"the {SEEDS} vmapped bptt seeds")
    fig.tight_layout()
    save_figure(fig, "seeds_timing.png", out, dpi=120)


# ----------------------------------------------------------------------------- the section's values


def case_view(name: str, res: dict) -> dict:
    """One case in one process: the fastest round of each way and how much faster vmapped is."""
    seq, vmap = min(res["seq_times"]), min(res["vmap_times"])
    return {**res, "name": name, "seq_second": seq, "vmap_second": vmap, "speedup": seq / vmap}


def rows(case: dict) -> list[dict]:
    """The table's two rows of a case: sequential and vmapped."""
    return [{**case, "vmapped": way == "vmap", "sharded": way == "vmap" and case["devices"] > 1,
             "first": case[f"{way}_first"], "later": case[f"{way}_second"], "times": separated(case[f"{way}_times"])}
            for way in ("seq", "vmap")]


def factor(x: float) -> dict:
    """A speed ratio x (> 1 = faster) as the template words it: ``factor`` times ``faster`` or not (slower)."""
    return {"factor": x if x >= 1 else 1 / x, "faster": x >= 1}


def verdict(name: str, one: dict, split: dict) -> dict:
    """Sharded vmapped vs the faster sequential baseline (the target), and vmapped vs sequential on one device."""
    best_seq = min(one["seq_second"], split["seq_second"])
    x = best_seq / split["vmap_second"]
    return {"name": name, "command": name.split("-")[0], "devices": split["devices"], "best_seq": best_seq,
            "met": x > 1, "sharded": factor(x), "one_device": factor(one["speedup"])}


def view(results: dict) -> dict:
    one = {name: case_view(name, r) for name, r in results["one"].items()}
    split = {name: case_view(name, r) for name, r in results["split"].items()}
    table = [row for name in SPLIT_CASES for case in (one[name], split[name]) for row in rows(case)]
    table += rows(one["bptt-16"])
    gains = [one[n]["vmap_second"] / split[n]["vmap_second"] for n in SPLIT_CASES]
    return {**results, "table": table, "bptt": one["bptt-128"], "bptt_split": split["bptt-128"], "svgk": one["svgk"],
            "svgk_split": split["svgk"],
            "verdicts": [verdict(n, one[n], split[n]) for n in SPLIT_CASES],
            "small_batch": factor(one["bptt-16"]["speedup"]), "sharding_gain": sum(gains) / len(gains),
            "bptt_vmap_slower": one["bptt-128"]["speedup"] < 1,
            "grad_vmap_slower": results["profile"]["grad"]["vmap"] > results["profile"]["grad"]["seq"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="150 bptt / 50 svgk updates per seed")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--updates", default="", help=argparse.SUPPRESS)
    args = options(parser, "seeds").parse_args()
    if args.child:
        child(args.child, json.loads(args.updates))
        return
    publish(args, "seeds", "42_seeds", measure, view)


if __name__ == "__main__":
    main()
