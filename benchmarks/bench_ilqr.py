"""iLQR swing-ups, Pendulum and CartPole: cost and time of ``pathwise.control.ilqr`` vs SciPy's L-BFGS-B.

    python benchmarks/bench_ilqr.py            # 5 timed repeats per solver
    python benchmarks/bench_ilqr.py --quick    # 2 repeats
    python benchmarks/bench_ilqr.py --from-json  # re-render the section only

Writes benchmarks/results/ilqr.json, then benchmarks/sections/22_ilqr.md (from benchmarks/templates/22_ilqr.md)
and benchmarks/figures/ilqr_swing_up.png.

Problem: minimize the total cost ``-sum_t r(x_t, u_t)`` of a T-step open-loop action sequence from the
hanging rest state, actions in the system's box. The peer is what a SciPy user writes: single shooting,
``scipy.optimize.minimize(method="L-BFGS-B", bounds=box)``, given the exact cost and gradient of the same
rollout (``jax.jit(jax.value_and_grad)``, compiled before timing, so SciPy is not charged for finite
differences). pathwise's own gradient shooting (``pw.control.shooting``, L-BFGS) is a third row. Each solver
starts from the same constant initial guesses and keeps its best; the costs of every solver's actions are
recomputed by one function. Times: compiled calls, median over the repeats, solvers interleaved per repeat;
the first call (tracing and XLA compilation included) is reported on its own.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import pathwise as pw
from pathwise.control.solution import as_problem, total_cost

from common import finished, machine, options, publish, save_figure  # benchmarks/common.py

FIGURE = "ilqr_swing_up.png"
ILQR, SCIPY = "pathwise ilqr", "scipy L-BFGS-B (exact JAX gradient)"
MAX_ITERATIONS = {"ilqr": 200, "shooting": 2000, "scipy": 2000}


def problems() -> dict:
    """name -> (system, hanging rest state, horizon T, constant initial guesses, index of the pole angle)."""
    return {
        "Pendulum swing-up": (pw.systems.Pendulum(), jnp.array([jnp.pi, 0.0]), 100, (0.0, 1.0, -1.0), 0),
        "CartPole swing-up": (pw.systems.CartPoleSwingUp(), jnp.array([0.0, 0.0, jnp.pi, 0.0]), 200,
                              (0.0, 0.5, -0.5), 2),
    }


def cost_of(system, x0, actions) -> tuple[np.ndarray, float]:
    states, cost = total_cost(system, x0, jnp.asarray(actions, jnp.float32))
    return np.asarray(states), float(cost)


def solve_ilqr(system, x0, guess):
    sol = pw.control.ilqr(system, x0, guess, max_iterations=MAX_ITERATIONS["ilqr"])
    jax.block_until_ready(sol.cost)
    return np.asarray(sol.actions), int(sol.iterations), bool(sol.converged)


def solve_shooting(system, x0, guess):
    sol = pw.control.shooting(system, x0, guess, optimizer="lbfgs", max_iterations=MAX_ITERATIONS["shooting"])
    jax.block_until_ready(sol.cost)
    return np.asarray(sol.actions), int(sol.iterations), bool(sol.converged)


def scipy_solver(system, x0, horizon: int):
    """L-BFGS-B on the open-loop cost with the exact JAX gradient (jitted once, float64 at SciPy's side)."""
    from scipy.optimize import minimize

    problem = as_problem(system)
    m = system.action_dim

    @jax.jit
    def value_and_grad(flat):
        return jax.value_and_grad(lambda u: total_cost(system, x0, u.reshape(horizon, m))[1])(flat)

    def fun(flat):
        v, g = value_and_grad(jnp.asarray(flat, jnp.float32))
        return float(v), np.asarray(g, np.float64)

    box = list(zip(np.tile(np.asarray(problem.action_low), horizon), np.tile(np.asarray(problem.action_high), horizon)))

    def solve(_system, _x0, guess):
        res = minimize(fun, np.asarray(guess, np.float64).ravel(), jac=True, method="L-BFGS-B", bounds=box,
                       options={"maxiter": MAX_ITERATIONS["scipy"]})
        return res.x.reshape(horizon, m), int(res.nit), bool(res.success)

    return solve


def run_problem(name: str, system, x0, horizon: int, guesses, repeats: int) -> dict:
    solvers = {ILQR: solve_ilqr, "pathwise shooting (L-BFGS)": solve_shooting, SCIPY: scipy_solver(system, x0, horizon)}
    inits = [jnp.full((horizon, system.action_dim), g, jnp.float32) for g in guesses]
    out = {}
    for label, solve in solvers.items():  # first calls: tracing and compilation included
        t0 = time.perf_counter()
        results = [solve(system, x0, u0) for u0 in inits]
        out[label] = {"first_s": time.perf_counter() - t0, "times": [], "per_guess": []}
        for u0, (actions, iters, ok) in zip(guesses, results):
            states, cost = cost_of(system, x0, actions)
            out[label]["per_guess"].append({"guess": u0, "cost": cost, "iterations": iters, "converged": ok,
                                            "actions": actions.tolist(), "states": states.tolist()})
    for _ in range(repeats):  # interleaved: every solver once per round
        for label, solve in solvers.items():
            t0 = time.perf_counter()
            for u0 in inits:
                solve(system, x0, u0)
            out[label]["times"].append(time.perf_counter() - t0)
    print(name, {k: (round(min(g["cost"] for g in v["per_guess"]), 2), round(float(np.median(v["times"])), 3))
                 for k, v in out.items()}, flush=True)
    return {"horizon": horizon, "guesses": list(guesses), "solvers": out}


def gymnasium_cost(actions: list) -> float:
    """The plan's cost replayed open loop in Gymnasium's own Pendulum-v1 from the hanging rest state (a check
    of the recomputed cost by an independent implementation)."""
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array([np.pi, 0.0])
    total = sum(float(env.step(np.asarray(u, np.float32))[1]) for u in actions)
    env.close()
    return -total


def upright(states: list, angle: int) -> float:
    """|angle to upright| at the end of the plan (radians)."""
    theta = np.asarray(states)[-1, angle]
    return float(abs(np.arctan2(np.sin(theta), np.cos(theta))))


def best(entry: dict) -> dict:
    return min(entry["per_guess"], key=lambda g: g["cost"])


def summarize(name: str, res: dict) -> dict:
    """One problem's numbers as the section shows them (best guess of each solver; no trajectories)."""
    angle, solvers = problems()[name][4], []
    for label, entry in res["solvers"].items():
        g = best(entry)
        solvers.append({"label": label, "cost": g["cost"], "iterations": g["iterations"], "converged": g["converged"],
                        "gymnasium_cost": gymnasium_cost(g["actions"]) if name.startswith("Pendulum") else None,
                        "upright": upright(g["states"], angle), "time_s": float(np.median(entry["times"])),
                        "first_s": entry["first_s"],
                        "per_guess": [{"guess": p["guess"], "cost": p["cost"]} for p in entry["per_guess"]]})
    return {"name": name, "horizon": res["horizon"], "guesses": res["guesses"], "solvers": solvers}


def measure(args: argparse.Namespace) -> dict:
    facts = machine("scipy")
    repeats = 2 if args.quick else 5
    raw = {name: run_problem(name, *spec[:4], repeats) for name, spec in problems().items()}
    plot(raw, args.out)
    return {"machine": finished(facts), "quick": args.quick, "repeats": repeats, "max_iterations": MAX_ITERATIONS,
            "problems": [summarize(name, res) for name, res in raw.items()]}


def plot(raw: dict, out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = problems()
    fig, axes = plt.subplots(1, len(raw), figsize=(6 * len(raw), 4), squeeze=False)
    for ax, (name, res) in zip(axes[0], raw.items()):
        angle = specs[name][4]
        for label, entry in res["solvers"].items():
            g = best(entry)
            theta = np.unwrap(np.asarray(g["states"])[:, angle])
            ax.plot(theta, label=f"{label}: cost {g['cost']:.1f}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set(xlabel="step", ylabel="pole angle (rad, unwrapped; 0, ±2π = upright)",
               title=f"{name}, T = {res['horizon']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, FIGURE, out)


def view(results: dict) -> dict:
    """Per problem: the table rows, and iLQR against SciPy (cost, which is lower, time ratio, lowest of all)."""
    shown = []
    for p in results["problems"]:
        solvers = [{**s, "has_gymnasium": s["gymnasium_cost"] is not None,
                    "per_guess_text": ", ".join(f"{g['guess']:+g}: {g['cost']:.1f}" for g in s["per_guess"])}
                   for s in p["solvers"]]
        by = {s["label"]: s for s in solvers}
        ours, peer = by[ILQR], by[SCIPY]
        shown.append({**p, "solvers": solvers, "ilqr_cost": ours["cost"], "scipy_cost": peer["cost"],
                          "lower": "iLQR" if ours["cost"] < peer["cost"] else "SciPy",
                          "time_vs_scipy": ours["time_s"] / peer["time_s"],
                          "winner": min(solvers, key=lambda s: s["cost"])["label"]})
    return {**results, "problems": shown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    publish(options(parser, "ilqr").parse_args(), "ilqr", "22_ilqr", measure, view)


if __name__ == "__main__":
    main()
