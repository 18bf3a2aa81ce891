"""pathwise BPTT (and SVG(k)) vs Brax's APG trainer through the *same* Pendulum dynamics: equal steps, time to match.

The pathwise ``Pendulum`` system (Gymnasium Pendulum-v1 exactly) is wrapped as a
``brax.envs.Env`` so both trainers differentiate through identical physics.
Both use 128 parallel environments and 50-step windows that carry the state
across updates (APG's design, and pathwise ``bptt``'s ``carry_state``).

Two measures, from one interleaved run (seed-major, every run compiles afresh):

* equal steps: both trainers get the same number of policy updates (``--updates``),
  hence the same number of simulated steps; final return and wall-clock;
* time to match: bptt is also run, each time as a fresh full run with
  compilation, at fewer updates (``--ladder``); the wall-clock of the first
  rung whose return reaches the best APG configuration's final return is set
  against that APG configuration's wall-clock.

svgk (SVG(k) as SHAC: k = 32 differentiable steps closed by a learned value) runs through the same
System at equal steps too: its default config, with as many updates as simulate APG's number of steps.

Wall-clock is measured from the call to the trained policy (compilation
included, as a user experiences it); for the pathwise runs (``pathwise.loops.simulated.run``: the
algorithm's ``init`` and its updates in one ``lax.scan``, under one ``jax.jit``) it is split into trace,
XLA compile and the compiled run. The trained policies are then evaluated (not
timed) on Gymnasium's own ``Pendulum-v1`` (10 episodes, identical seeds).

APG runs with its defaults (lr 1e-4 decayed x0.997 per update, Adam
beta=(0.7, 0.95)) and with constant learning rates 1e-3 and 3e-3 (3e-3 is the
rate of Brax's own APG tests and bptt's), so the comparison does not rest on
one learning rate.

    pip install -e '.[brax]'    # in a venv with jax 0.7.2 (the section gives the commands)
    python benchmarks/bench_apg.py [--quick] [--seeds 3] [--updates 500] [--ladder 10,25,50,100,200]
    python benchmarks/bench_apg.py --from-json   # re-render the section only (any venv)

Writes benchmarks/results/apg.json, then benchmarks/sections/45_apg.md (from benchmarks/templates/45_apg.md)
and benchmarks/figures/apg_pendulum.png; every run's record goes to benchmarks/out/apg_runs.json (not in
git). The results keep the headline ratios of every earlier run of the same command (``history``), to
show how much they move from run to run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from common import finished, machine, options, publish, save_figure, saved_results, utc_now  # benchmarks/common.py
from pathwise.checkpoint import atomic_write_text

HERE = Path(__file__).resolve().parent
NUM_ENVS, HORIZON, EPISODE = 128, 50, 200
EVAL_EPISODES = 10
MAX_TORQUE = 2.0
SOLVED = -200.0  # issue 7's "solved" threshold for Pendulum-v1
TARGET = 0.5  # issue 7: match or beat APG's return in at most half its wall-clock
#: APG configurations: name -> (learning rate, exponential schedule, normalize observations)
APG_CONFIGS = {
    "brax apg (defaults: lr 1e-4, decay)": (1e-4, True, False),
    "brax apg (lr 1e-3, constant)": (1e-3, False, False),
    "brax apg (lr 3e-3, constant)": (3e-3, False, False),
}


def brax_pendulum():
    from brax.envs.base import Env, State

    from pathwise.systems import Pendulum

    class PendulumBrax(Env):
        """pathwise Pendulum behind Brax's Env API; actions in [-1, 1] are scaled to ±2 N·m."""

        def __init__(self):
            self.system = Pendulum()

        def reset(self, rng):
            s = self.system.reset(rng)
            zero = jnp.zeros(())
            return State(pipeline_state=s, obs=self.system.observe(s), reward=zero, done=zero, metrics={}, info={})

        def step(self, state, action):
            a = MAX_TORQUE * jnp.clip(action, -1.0, 1.0)
            s2 = self.system.step(state.pipeline_state, a)
            r = self.system.reward(state.pipeline_state, a, s2)
            return state.replace(pipeline_state=s2, obs=self.system.observe(s2), reward=r)

        @property
        def observation_size(self):
            return 3

        @property
        def action_size(self):
            return 1

        @property
        def backend(self):
            return "pathwise"

    return PendulumBrax()


def evaluate_act(act, seed: int) -> float:
    from pathwise.envs import evaluate

    return float(evaluate(act, "Pendulum-v1", episodes=EVAL_EPISODES, seed=10_000 + 1_000 * seed).mean)


def run_apg(updates: int, seed: int, lr: float, schedule: bool, normalize: bool) -> dict:
    from brax.training.agents.apg import train as apg

    seen: dict = {}
    load0 = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    # num_evals=1: no evaluation before training, one training epoch (all updates in one compiled scan), then
    # APG's own final evaluation, which we keep small (16 envs); it is part of `train` and so of the wall-clock.
    make_policy, params, _ = apg.train(environment=brax_pendulum(), episode_length=EPISODE, policy_updates=updates,
                                       horizon_length=HORIZON, num_envs=NUM_ENVS, num_evals=1, learning_rate=lr,
                                       use_schedule=schedule, normalize_observations=normalize, seed=seed,
                                       num_eval_envs=16, progress_fn=lambda _, m: seen.update(m))
    jax.block_until_ready(params)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    train_s = float(seen.get("training/walltime", float("nan")))
    policy = jax.jit(make_policy(params, deterministic=True))
    key = jax.random.key(0)
    act = lambda o: np.asarray(MAX_TORQUE * policy(jnp.asarray(o)[None], key)[0][0], np.float32)  # noqa: E731
    return {"wall_s": wall, "cpu_s": cpu, "train_s": train_s, "return": evaluate_act(act, seed),
            "env_steps": updates * NUM_ENVS * HORIZON, "load": (load0 + os.getloadavg()[0]) / 2}


# ----------------------------------------------------------------------------- the pathwise side


def pendulum_spec():
    """The pathwise Pendulum as an ``EnvSpec`` (its System used directly: the simulated loop)."""
    from pathwise import spec
    from pathwise.systems import Pendulum

    return spec.from_system(Pendulum())


def bptt_config(updates: int):
    from pathwise.algorithms import bptt

    # the cosine schedule spans the run, whatever its length (each rung is a complete run of its own)
    return bptt.Config(horizon=HORIZON, batch_size=NUM_ENVS, carry_state=True, updates_per_iteration=max(updates, 1),
                       schedule_updates=max(updates, 1))


def timed_program(build, seed: int) -> tuple:
    """``build()`` (the config, validated as it is made: the program), then trace, compile and run the program
    afresh, each phase timed.

    Returns the program's carry and a record of wall-clock (split into trace, XLA compile and the compiled
    run) and process CPU time; the three phases add up to what a jitted call costs on a cold cache.
    """
    load0 = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    program = build()
    lowered = jax.jit(program).lower(jax.random.key(seed))
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    carry, _ = compiled(jax.random.key(seed))
    jax.block_until_ready(carry)
    t3, cpu = time.perf_counter(), time.process_time() - c0
    return carry, {"wall_s": t3 - t0, "cpu_s": cpu, "trace_s": t1 - t0, "compile_s": t2 - t1, "run_s": t3 - t2,
                   "env_steps": int(carry.env_steps), "load": (load0 + os.getloadavg()[0]) / 2}


def policy_return(algorithm, state, seed: int) -> float:
    """Gymnasium return of the algorithm's deterministic policy (``act``, jitted)."""
    act = jax.jit(lambda obs: algorithm.act(state, obs, jax.random.key(0), True))
    return evaluate_act(lambda o: np.asarray(act(jnp.asarray(o, jnp.float32)), np.float32), seed)


def run_simulated(name: str, make_config, seed: int) -> dict:
    """A fresh run of ``name`` on the pathwise Pendulum: init + one iteration of all its updates, the program
    ``pathwise.loops.simulated.train_seed`` runs, timed by :func:`timed_program`; then its Gymnasium return."""
    from pathwise import algorithms
    from pathwise.loops import simulated

    algorithm, spec = algorithms.get(name), pendulum_spec()

    def build():
        config = make_config()
        return lambda key: simulated.run(algorithm, spec, config, key, 1)

    carry, rec = timed_program(build, seed)
    return {**rec, "return": policy_return(algorithm, carry.algo, seed)}


def run_bptt(updates: int, seed: int) -> dict:
    return run_simulated("bptt", lambda: bptt_config(updates), seed)


def svgk_updates(updates: int) -> int:
    """SHAC updates that simulate at least as many steps as ``updates`` APG/bptt updates."""
    from pathwise.algorithms import svgk

    return -(-updates * NUM_ENVS * HORIZON // svgk.steps_per_update(pendulum_spec(), svgk.Config()))


def run_svgk(updates: int, seed: int) -> dict:
    """svgk on the same System (SHAC: k-step windows closed by a learned value), as one compiled program.

    Its default config (64 simulations, k = 32) with as many SHAC updates as simulate the same number of
    steps as ``updates`` APG updates; timed and split like :func:`run_bptt`.
    """
    from pathwise.algorithms import svgk

    n = svgk_updates(updates)
    return {**run_simulated("svgk", lambda: svgk.Config(updates_per_iteration=n), seed), "updates": n}


def untrained_return(seed: int) -> float:
    """Gymnasium return of bptt's initial policy (no update): the floor any trainer should beat."""
    from pathwise import algorithms
    from pathwise.loops import simulated

    algorithm = algorithms.get("bptt")
    carry = simulated.init_carry(algorithm, pendulum_spec(), bptt_config(1), jax.random.key(seed))
    return policy_return(algorithm, carry.algo, seed)


def warm_up() -> None:
    """Pay one-time costs (JAX backend start, imports) before anything is timed, so run order cannot matter."""
    from brax.training.agents.apg import train  # noqa: F401

    import pathwise.algorithms.bptt  # noqa: F401
    import pathwise.envs  # noqa: F401

    jax.block_until_ready(jnp.ones(3) @ jnp.ones(3))
    env = brax_pendulum()
    jax.block_until_ready(env.reset(jax.random.key(0)).obs)


def brax_apg_runs() -> bool:
    """brax 0.14's APG calls ``jax.device_put_replicated``, which JAX removed after 0.7 (hence venv-brax)."""
    return hasattr(jax, "device_put_replicated")


# ----------------------------------------------------------------------------- the run


def plan(args: argparse.Namespace) -> tuple[int, int, list[int]]:
    """Updates (the equal-steps budget), seeds and the bptt rungs (the ladder, then the budget)."""
    updates = args.updates or (100 if args.quick else 500)
    seeds = args.seeds or (1 if args.quick else 3)
    ladder = [int(x) for x in args.ladder.split(",")] if args.ladder else ([10, 25] if args.quick else
                                                                             [10, 25, 50, 100, 200])
    if any(n < 1 or n >= updates for n in ladder):
        raise SystemExit(f"--ladder entries must be between 1 and --updates - 1 ({updates - 1}), got {ladder}")
    return updates, seeds, sorted(set(ladder)) + [updates]


def run_all(updates: int, seeds: int, rungs: list[int]) -> dict:
    """Every trainer on every seed, interleaved seed-major (bptt rungs alternate with the APG runs), each run
    compiling afresh; every run's record."""
    runs = {f"bptt {n}": (lambda s, n=n: run_bptt(n, s)) for n in rungs}
    runs.update({name: (lambda s, c=c: run_apg(updates, s, *c)) for name, c in APG_CONFIGS.items()})
    runs["svgk"] = lambda s: run_svgk(updates, s)
    raw: dict = {"bptt": {str(n): [] for n in rungs}, "apg": {k: [] for k in APG_CONFIGS}, "untrained": [], "svgk": []}
    warm_up()
    for seed in range(seeds):
        raw["untrained"].append(untrained_return(seed))
        order = list(runs)
        order = order[::2] + order[1::2] if seed % 2 else order  # vary the order across seeds
        for name in order:
            jax.clear_caches()  # every run compiles afresh, as in a new process (else later runs reuse programs)
            r = runs[name](seed)
            (raw["bptt"][name.split()[1]] if name.startswith("bptt ") else
             raw["svgk"] if name == "svgk" else raw["apg"][name]).append(r)
            print(f"seed {seed} {name:52s} return {r['return']:8.1f}  wall {r['wall_s']:6.1f} s  "
                  f"({r['env_steps']} simulated steps, load {r['load']:.1f})", flush=True)
    return raw


def measure(args: argparse.Namespace) -> dict:
    facts, (updates, seeds, rungs) = machine("brax"), plan(args)
    start = time.perf_counter()
    raw = run_all(updates, seeds, rungs)
    results = {"machine": finished(facts), "quick": args.quick, "updates": updates, "seeds": seeds, "rungs": rungs,
               "num_envs": NUM_ENVS, "horizon": HORIZON, "eval_episodes": EVAL_EPISODES, "solved": SOLVED,
               "total_s": time.perf_counter() - start, **summarize(raw, rungs)}
    saved = saved_results("apg", args.results)
    earlier = saved.get("history", []) if saved and saved["machine"]["command"] == facts["command"] else []
    results["history"] = earlier + [headline(results)]
    atomic_write_text(Path(args.out or HERE) / "out" / "apg_runs.json", json.dumps(raw, indent=1) + "\n")
    plot(raw, results, args.out)
    return results


# ----------------------------------------------------------------------------- the results


def stats(recs: list[dict], *keys: str) -> dict:
    """Means over seeds of ``keys`` (None where a key was not recorded), and the return's sd, worst and best."""
    rets = [r["return"] for r in recs]
    out = {k: (statistics.mean(r[k] for r in recs) if all(r.get(k) is not None for r in recs) else None) for k in keys}
    return {**out, "return": {"mean": statistics.mean(rets), "sd": float(np.std(rets)), "worst": min(rets),
                              "best": max(rets)}}


def compiled(recs: list[dict]) -> dict:
    """:func:`stats` of a pathwise program's runs, with ``compiled_s``: its compiled loop including that loop's
    compilation (compile + run)."""
    return {**stats(recs, "wall_s", "trace_s", "compile_s", "run_s", "cpu_s"),
            "compiled_s": statistics.mean(r["compile_s"] + r["run_s"] for r in recs)}


def summarize(raw: dict, rungs: list[int]) -> dict:
    """The numbers the section shows: per bptt rung, APG configuration and svgk their means over seeds; the best
    APG configuration (by mean return) and, per rung, whether every seed reached that seed's APG return."""
    apg = [{"name": name, **stats(recs, "wall_s", "train_s", "cpu_s")} for name, recs in raw["apg"].items()]
    best = max(apg, key=lambda a: a["return"]["mean"])["name"]
    by_seed = [r["return"] for r in raw["apg"][best]]
    bptt = [{"updates": n, "steps": n * NUM_ENVS * HORIZON, **compiled(raw["bptt"][str(n)]),
             "every_seed": all(r["return"] >= a for r, a in zip(raw["bptt"][str(n)], by_seed))} for n in rungs]
    sv = raw["svgk"]
    svgk = None if not sv else {"updates": sv[0]["updates"], "env_steps": sv[0]["env_steps"], **compiled(sv),
                                **svgk_facts()}
    walls = [r["wall_s"] for v in raw["bptt"].values() for r in v]
    loads = [r["load"] for v in list(raw["bptt"].values()) + list(raw["apg"].values()) for r in v]
    xs, ys = zip(*[(n, r["run_s"]) for n in rungs for r in raw["bptt"][str(n)]])
    per_update = np.polyfit(xs, ys, 1)[0] if len(rungs) > 1 else None  # the compiled run's cost per update
    return {"bptt": bptt, "apg": apg, "best_apg": best, "svgk": svgk,
            "untrained": {"mean": statistics.mean(raw["untrained"]), "sd": float(np.std(raw["untrained"]))},
            "apg_best_seed": max(r["return"] for v in raw["apg"].values() for r in v),
            "bptt_walls": [min(walls), max(walls)], "run_loads": {"mean": statistics.mean(loads), "min": min(loads),
                                                                 "max": max(loads)},
            "compile_mean_s": statistics.mean(r["trace_s"] + r["compile_s"] for v in raw["bptt"].values() for r in v),
            "per_update_s": per_update}


def svgk_facts() -> dict:
    """The svgk settings the section states: k, the simulations, and the value fit's minibatch steps per update."""
    from pathwise.algorithms import svgk

    c = svgk.Config()
    return {"horizon": c.horizon, "n_envs": c.n_envs, "critic_steps": c.critic_iterations * c.critic_minibatches}


def ratios(results: dict) -> dict:
    """bptt's wall-clock and CPU time over the best APG configuration's: at equal steps, at the first rung whose mean
    return reaches APG's (``match``), and at the first rung where every seed does (``match_all``)."""
    apg = next(a for a in results["apg"] if a["name"] == results["best_apg"])
    rungs = {r["updates"]: r for r in results["bptt"]}
    match = next((r["updates"] for r in results["bptt"] if r["return"]["mean"] >= apg["return"]["mean"]), None)
    match_all = next((r["updates"] for r in results["bptt"] if r["every_seed"]), None)

    def ratio(n: int | None, key: str) -> float | None:
        if n is None or rungs[n][key] is None or apg[key] is None:
            return None
        return rungs[n][key] / apg[key]

    return {"match": match, "match_all": match_all, "equal_steps": ratio(results["updates"], "wall_s"),
            "to_match": ratio(match, "wall_s"), "to_match_all": ratio(match_all, "wall_s"),
            "equal_steps_cpu": ratio(results["updates"], "cpu_s"), "to_match_cpu": ratio(match, "cpu_s"),
            "to_match_all_cpu": ratio(match_all, "cpu_s")}


def headline(results: dict) -> dict:
    """This run's row of the history: when it finished, its mean load and its ratios."""
    finished_at = utc_now()
    return {"finished": finished_at, "load": results["run_loads"]["mean"], **ratios(results)}


def plot(raw: dict, results: dict, out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rungs, apg_ret = results["rungs"], next(a for a in results["apg"] if a["name"] == results["best_apg"])["return"]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    means = [(statistics.mean(r["wall_s"] for r in raw["bptt"][str(n)]),
              statistics.mean(r["return"] for r in raw["bptt"][str(n)])) for n in rungs]
    ax.plot(*zip(*means), "o-", color="C0", label="pathwise bptt (fresh run per update count)")
    for n, (w, r) in zip(rungs, means):
        ax.annotate(str(n), (w, r), textcoords="offset points", xytext=(4, 4), fontsize=7, color="C0")
    groups = [("C0", None, raw["bptt"][str(n)]) for n in rungs]
    groups += [(f"C{i + 1}", ("s", f"{name}, {results['updates']} updates"), recs)
               for i, (name, recs) in enumerate(raw["apg"].items())]
    if raw["svgk"]:
        groups.append(("C5", ("^", f"pathwise svgk, {raw['svgk'][0]['updates']} updates (same steps)"), raw["svgk"]))
    for color, mean_marker, recs in groups:
        ax.scatter([r["wall_s"] for r in recs], [r["return"] for r in recs], s=8, color=color, alpha=0.35)
        if mean_marker:
            ax.scatter([statistics.mean(r["wall_s"] for r in recs)], [statistics.mean(r["return"] for r in recs)],
                       marker=mean_marker[0], color=color, label=mean_marker[1])
    ax.axhline(apg_ret["mean"], color="grey", lw=0.8, ls="--", label="best APG's final return")
    ax.axhline(results["untrained"]["mean"], color="k", lw=0.8, ls=":", label="untrained policy")
    ax.set(xlabel="wall-clock (s, compilation included)", ylabel=f"Pendulum-v1 return ({EVAL_EPISODES} episodes)")
    ax.set_title("Pendulum through the same dynamics (numbers: bptt updates)", fontsize=9)
    ax.legend(fontsize=6.5, loc="center right")
    fig.tight_layout()
    save_figure(fig, "apg_pendulum.png", out)


# ----------------------------------------------------------------------------- the section's values


def status(history: list[dict], key: str, this_met: bool) -> dict:
    """The verdict on one ratio: this run's, or over several runs of the command, in how many it was at most 1/2
    and its range."""
    values = [h[key] for h in history if h.get(key) is not None]
    met = sum(v <= TARGET for v in values)
    return {"several": len(history) > 1, "this_met": this_met, "n": len(history), "met": met,
            "all": met == len(history), "none": met == 0, "min": min(values, default=None),
            "max": max(values, default=None)}


def trainers_view(results: dict, apg: dict, full: dict) -> dict:
    """The two tables' rows with their ratios to bptt (equal steps) and to the best APG configuration (rungs)."""
    def over(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    apg_ret = apg["return"]["mean"]
    rungs = [{**r, "wall_vs_apg": over(r["wall_s"], apg["wall_s"]), "cpu_vs_apg": over(r["cpu_s"], apg["cpu_s"]),
              "mean_ok": r["return"]["mean"] >= apg_ret} for r in results["bptt"]]
    sv = results["svgk"]
    svgk = None if sv is None else {
        **sv, "beats": sv["return"]["mean"] >= apg_ret,
        "wall_vs_bptt": over(sv["wall_s"], full["wall_s"]), "cpu_vs_bptt": over(sv["cpu_s"], full["cpu_s"]),
        "wall_vs_apg": over(sv["wall_s"], apg["wall_s"])}
    apg_rows = [{**a, "wall_vs_bptt": over(a["wall_s"], full["wall_s"]), "cpu_vs_bptt": over(a["cpu_s"], full["cpu_s"])}
                for a in results["apg"]]
    return {"rungs": rungs, "svgk": svgk, "apg_rows": apg_rows,
            "match": next((r for r in rungs if r["mean_ok"]), None),
            "match_all": next((r for r in rungs if r["every_seed"]), None),
            "solved_rung": next((r for r in rungs if r["return"]["mean"] >= results["solved"]), None)}


def view(results: dict) -> dict:
    apg = next(a for a in results["apg"] if a["name"] == results["best_apg"])
    full = next(r for r in results["bptt"] if r["updates"] == results["updates"])
    t, r, history = trainers_view(results, apg, full), ratios(results), results["history"]
    beats = full["return"]["mean"] >= apg["return"]["mean"]
    met = {"equal_steps": beats and r["equal_steps"] <= TARGET, "to_match": r["to_match"] is not None and
           r["to_match"] <= TARGET, "to_match_all": r["to_match_all"] is not None and r["to_match_all"] <= TARGET}
    return {**results, **t, "apg_best": apg, "full": full, "ratios": r, "beats": beats, "met": met,
            "status": {k: status(history, k, ok) for k, ok in met.items()}, "several_runs": len(history) > 1,
            "history_rows": history,
            "steps_each": results["updates"] * results["num_envs"] * results["horizon"],
            "has_cpu": full["cpu_s"] is not None, "total_min": results["total_s"] / 60,
            "apg_above_untrained": apg["return"]["mean"] - results["untrained"]["mean"],
            "n_apg": len(results["apg"]),
            "per_update_ms": None if results["per_update_s"] is None else 1e3 * results["per_update_s"],
            "compile_share": 100 * (full["trace_s"] + full["compile_s"]) / full["wall_s"],
            "apg_setup_s": apg["wall_s"] - apg["train_s"]}


def main() -> int:
    if "--from-json" not in sys.argv and not brax_apg_runs():
        sys.exit(f"bench_apg: brax's APG needs jax.device_put_replicated, which jax {jax.__version__} no longer has. "
                 "Run this script with the Python of a venv holding brax 0.14.x and jax 0.7.2 (the APG section of "
                 "BENCHMARKS.md gives the two pip commands).")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--updates", type=int, default=None, help="equal-steps budget (policy updates) of both")
    parser.add_argument("--ladder", default=None,
                        help="comma-separated smaller bptt update counts for time to match (each a fresh run)")
    publish(options(parser, "apg").parse_args(), "apg", "45_apg", measure, view)
    return 0


if __name__ == "__main__":
    sys.exit(main())
