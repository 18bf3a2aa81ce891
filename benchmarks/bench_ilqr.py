"""Swing-ups, Pendulum and CartPole: cost and time of ``pathwise.control`` multi-start solves vs SciPy's L-BFGS-B
and Google's trajax, every solver from the same initial guesses.

    python benchmarks/bench_ilqr.py            # 5 timed repeats per solver
    python benchmarks/bench_ilqr.py --quick    # 2 repeats
    python benchmarks/bench_ilqr.py --from-json  # re-render the section only

Writes benchmarks/results/ilqr.json, then benchmarks/sections/22_ilqr.md (from benchmarks/templates/22_ilqr.md)
and benchmarks/figures/ilqr_swing_up.png.

Problem: minimize the total cost ``-sum_t r(x_t, u_t)`` of a T-step open-loop action sequence from the
hanging rest state, actions in the system's box. Every solver gets the same guesses: constant sequences
(the box midpoint and pushes to either side) and ``RANDOM`` sequences drawn uniformly in the box (key 0),
and keeps its best answer. pathwise solves all guesses as one vmapped program
(``pw.control.multistart``: iLQR, iLQR screened with ``keep``/``screen_iterations`` in one stage and in
successive-halving stages, L-BFGS shooting). The peers: what a SciPy user writes, single
shooting with ``scipy.optimize.minimize(method="L-BFGS-B", bounds=box)`` given the exact cost and gradient
of the same rollout (``jax.jit(jax.value_and_grad)``, compiled before timing), one guess after the other;
and trajax (github.com/google/trajax, Google's; not the unrelated ``trajax`` on PyPI, which needs Python
>= 3.13), whose ``constrained_ilqr`` (augmented Lagrangian over iLQR) takes the box as inequality
constraints, vmapped over the guesses as a JAX user would. The costs of every solver's actions are
recomputed by one function (trajax's actions clipped into the box first; its constraint tolerance is
1e-2). Times: compiled calls, median over the repeats, solvers interleaved per repeat; the first call
(tracing and XLA compilation included) is reported on its own.
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
ILQR, SHOOTING = "pathwise ilqr (multi-start)", "pathwise shooting L-BFGS (multi-start)"
KEEP, SCREEN = 4, 30  # screened multi-start: every guess SCREEN iterations, the KEEP cheapest on to the end
SCREENED = f"pathwise ilqr (multi-start, screened: {SCREEN} iterations, best {KEEP} go on)"
HALVING_KEEP = (8, 4, 2, 1)  # successive halving (halving factor 2): SCREEN iterations per stage, then half go on
HALVING = f"pathwise ilqr (multi-start, successive halving: best {', '.join(map(str, HALVING_KEEP))} after " \
          f"each {SCREEN} iterations)"
SCIPY, TRAJAX = "scipy L-BFGS-B (exact JAX gradient)", "trajax constrained_ilqr (vmapped)"
MAX_ITERATIONS = {"ilqr": 200, "shooting": 2000, "scipy": 2000, "trajax": 100}
RANDOM = 16  # random guesses per problem, besides the constants


def problems() -> dict:
    """name -> (system, hanging rest state, horizon T, constant pushes (fractions of the half-width), angle index)."""
    return {
        "Pendulum swing-up": (pw.systems.Pendulum(), jnp.array([jnp.pi, 0.0]), 100, (0.5,), 0),
        "CartPole swing-up": (pw.systems.CartPoleSwingUp(), jnp.array([0.0, 0.0, jnp.pi, 0.0]), 200, (0.5,), 2),
    }


def guesses_for(system, horizon: int, pushes) -> jnp.ndarray:
    """The shared guesses: midpoint, midpoint ± p · half-width, then ``RANDOM`` uniform in the box (key 0)."""
    return pw.control.initial_guesses(system, horizon, pushes=pushes, random=RANDOM, key=jax.random.key(0))


def cost_of(system, x0, actions) -> tuple[np.ndarray, float]:
    states, cost = total_cost(system, x0, jnp.asarray(actions, jnp.float32))
    return np.asarray(states), float(cost)


def multistart_solver(solver: str, **options):
    def solve(system, x0, guesses):
        res = pw.control.multistart(system, x0, guesses, solver=solver, **options)
        jax.block_until_ready(res.costs)
        return np.asarray(res.solutions.actions), np.asarray(res.iterations), np.asarray(res.converged)

    return solve


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

    def solve(_system, _x0, guesses):
        out = [minimize(fun, np.asarray(g, np.float64).ravel(), jac=True, method="L-BFGS-B", bounds=box,
                        options={"maxiter": MAX_ITERATIONS["scipy"]}) for g in np.asarray(guesses)]
        return (np.stack([r.x.reshape(horizon, m) for r in out]), np.array([r.nit for r in out]),
                np.array([r.success for r in out]))

    return solve


def trajax_solver(system, x0, horizon: int):
    """trajax's constrained iLQR with the action box as inequality constraints, vmapped; None without trajax."""
    try:
        from trajax import optimizers
    except ImportError:
        return None
    problem = as_problem(system)
    low, high = problem.action_low, problem.action_high

    def cost(x, u, t):  # trajax evaluates cost(x_T, 0, T) for the final state: no final cost here
        return jnp.where(t == horizon, 0.0, problem.cost(x, u))

    def solve_one(u):
        out = optimizers.constrained_ilqr(cost, lambda x, u, t: problem.dynamics(x, u), x0, u,
                                          inequality_constraint=lambda x, u, t: jnp.concatenate([u - high, low - u]),
                                          maxiter_ilqr=MAX_ITERATIONS["trajax"])
        return jnp.clip(out[1], low, high), out[10], out[7] <= 1e-2

    program = jax.jit(jax.vmap(solve_one))

    def solve(_system, _x0, guesses):
        actions, iterations, ok = jax.block_until_ready(program(guesses))
        return np.asarray(actions), np.asarray(iterations), np.asarray(ok)

    return solve


def run_problem(name: str, system, x0, horizon: int, pushes, repeats: int) -> dict:
    solvers = {ILQR: multistart_solver("ilqr", max_iterations=MAX_ITERATIONS["ilqr"]),
               SCREENED: multistart_solver("ilqr", max_iterations=MAX_ITERATIONS["ilqr"], keep=KEEP,
                                           screen_iterations=SCREEN),
               HALVING: multistart_solver("ilqr", max_iterations=MAX_ITERATIONS["ilqr"], keep=HALVING_KEEP,
                                          screen_iterations=SCREEN),
               SHOOTING: multistart_solver("shooting", optimizer="lbfgs", max_iterations=MAX_ITERATIONS["shooting"]),
               SCIPY: scipy_solver(system, x0, horizon), TRAJAX: trajax_solver(system, x0, horizon)}
    solvers = {k: v for k, v in solvers.items() if v is not None}
    guesses = guesses_for(system, horizon, pushes)
    labels = ["0"] + [f"{s}{p:g}" for p in pushes for s in ("+", "-")] + [f"r{i}" for i in range(RANDOM)]
    out = {}
    for label, solve in solvers.items():  # first calls: tracing and compilation included
        t0 = time.perf_counter()
        actions, iterations, converged = solve(system, x0, guesses)
        out[label] = {"first_s": time.perf_counter() - t0, "times": [], "per_guess": []}
        for g, a, it, ok in zip(labels, actions, iterations, converged):
            states, cost = cost_of(system, x0, a)
            out[label]["per_guess"].append({"guess": g, "cost": cost, "iterations": int(it), "converged": bool(ok),
                                            "actions": a.tolist(), "states": states.tolist()})
    for _ in range(repeats):  # interleaved: every solver once per round
        for label, solve in solvers.items():
            t0 = time.perf_counter()
            solve(system, x0, guesses)
            out[label]["times"].append(time.perf_counter() - t0)
    print(name, {k: (round(min(g["cost"] for g in v["per_guess"]), 2), round(float(np.median(v["times"])), 3))
                 for k, v in out.items()}, flush=True)
    return {"horizon": horizon, "guesses": labels, "solvers": out}


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


def guess_text(per_guess: list[dict]) -> str:
    """The constant guesses' costs one by one, the random ones as best and median."""
    constants = [g for g in per_guess if not g["guess"].startswith("r")]
    random = [g["cost"] for g in per_guess if g["guess"].startswith("r")]
    text = ", ".join(f"{g['guess']}: {g['cost']:.1f}" for g in constants)
    if random:
        text += f"; random: best {min(random):.1f}, median {float(np.median(random)):.1f}"
    return text


def summarize(name: str, res: dict) -> dict:
    """One problem's numbers as the section shows them (best guess of each solver; no trajectories)."""
    angle, solvers = problems()[name][4], []
    for label, entry in res["solvers"].items():
        g = best(entry)
        solvers.append({"label": label, "cost": g["cost"], "best_guess": g["guess"], "iterations": g["iterations"],
                        "converged": g["converged"], "converged_count": sum(p["converged"] for p in entry["per_guess"]),
                        "gymnasium_cost": gymnasium_cost(g["actions"]) if name.startswith("Pendulum") else None,
                        "upright": upright(g["states"], angle), "time_s": float(np.median(entry["times"])),
                        "first_s": entry["first_s"], "per_guess_text": guess_text(entry["per_guess"])})
    return {"name": name, "horizon": res["horizon"], "n_guesses": len(res["guesses"]), "solvers": solvers}


def measure(args: argparse.Namespace) -> dict:
    facts = {**machine("scipy"), "trajax": trajax_source()}
    repeats = 2 if args.quick else 5
    raw = {name: run_problem(name, *spec[:4], repeats) for name, spec in problems().items()}
    plot(raw, args.out)
    return {"machine": finished(facts), "quick": args.quick, "repeats": repeats, "max_iterations": MAX_ITERATIONS,
            "random": RANDOM, "keep": KEEP, "screen": SCREEN,
            "halving_keep": list(HALVING_KEEP), "problems": [summarize(name, res) for name, res in raw.items()]}


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


def trajax_source() -> str | None:
    """Where the installed trajax came from (its distribution's URL), or None when it is not installed."""
    import importlib.metadata

    try:
        meta = importlib.metadata.metadata("trajax")
    except importlib.metadata.PackageNotFoundError:
        return None
    return f"{meta.get('Home-page') or meta.get('Author')} {meta.get('Version')}"


def view(results: dict) -> dict:
    """Per problem: the table rows, each multi-start iLQR row against SciPy (cost, time ratio, targets), the
    lowest cost of all."""
    shown = []
    for p in results["problems"]:
        by = {s["label"]: s for s in p["solvers"]}
        peer = by[SCIPY]
        versus = [{"label": label, "cost": by[label]["cost"], "cost_met": by[label]["cost"] <= peer["cost"],
                   "time_vs_scipy": by[label]["time_s"] / peer["time_s"],
                   "time_met": by[label]["time_s"] <= peer["time_s"]} for label in (ILQR, SCREENED, HALVING)
                  if label in by]
        solvers = [{**s, "has_gymnasium": s["gymnasium_cost"] is not None} for s in p["solvers"]]
        shown.append({**p, "solvers": solvers, "scipy_cost": peer["cost"], "versus": versus,
                      "winner": min(solvers, key=lambda s: s["cost"])["label"]})
    halving = results.get("halving_keep")
    return {**results, "problems": shown, "halving_keep_text": f"({', '.join(map(str, halving))})" if halving else "–",
            "has_trajax": any(TRAJAX in [s["label"] for s in p["solvers"]]
                                                           for p in results["problems"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    publish(options(parser, "ilqr").parse_args(), "ilqr", "22_ilqr", measure, view)


if __name__ == "__main__":
    main()
