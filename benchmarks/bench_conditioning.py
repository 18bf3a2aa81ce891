"""The lecture's "poor conditioning", measured on Pendulum -> benchmarks/sections/25_conditioning.md.

    python benchmarks/bench_conditioning.py            # horizons 10..400, solvers on T = 200
    python benchmarks/bench_conditioning.py --quick    # horizons 10..100, T = 100, fewer iterations
    python benchmarks/bench_conditioning.py --replot   # redraw from benchmarks/out/conditioning.pkl
    python benchmarks/bench_conditioning.py --from-json  # re-render the section only

Writes benchmarks/results/conditioning.json (the numbers the section shows), then
benchmarks/sections/25_conditioning.md (from benchmarks/templates/25_conditioning.md), the figures
benchmarks/figures/conditioning_*.png and the full curves to benchmarks/out/conditioning.pkl (for --replot).

(a) ``pathwise.diagnostics.gradient_norms`` in float64 for two policies: a randomly
initialized MLP from Gymnasium's reset distribution, and a "trained-ish" linear
policy (the LQR gain of the upright linearization) started near the top. (b)
``shooting_vs_ilqr`` from the hanging position: gradient shooting with Adam
(three step sizes) and L-BFGS against iLQR, cost against iteration and time.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # products of 400 Jacobians overflow float32 (see the section)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pathwise as pw  # noqa: E402
from pathwise.checkpoint import atomic_write_bytes  # noqa: E402
from pathwise.control.lqr import lqr  # noqa: E402
from pathwise.diagnostics import gradient_norms, shooting_vs_ilqr  # noqa: E402

from common import finished, machine, options, publish, save_figure  # noqa: E402  (benchmarks/common.py)

HERE = Path(__file__).resolve().parent
MEASURE_LABELS = {
    "param_grad_norm": "‖∂J/∂θ‖ (policy parameters)",
    "action_grad_norm": "‖∂J/∂u‖ (open-loop actions)",
    "open_loop_jacobian_norm": "‖∂x_H/∂x_0‖ open loop",
    "closed_loop_jacobian_norm": "‖∂x_H/∂x_0‖ closed loop",
    "hessian_condition": "cond ∂²J/∂u²",
}
MEASURES = tuple(MEASURE_LABELS)


def lqr_policy(system: pw.systems.Pendulum) -> eqx.Module:
    """u = −K [θ, θ̇] from LQR on the upright linearization, written on the observation (cos θ, sin θ, θ̇)."""
    x, u = jnp.zeros(2), jnp.zeros(1)
    A, B = jax.jacobian(system.dynamics, 0)(x, u), jax.jacobian(system.dynamics, 1)(x, u)
    K = lqr(A, B, jnp.diag(jnp.array([1.0, 0.1])), 0.001 * jnp.eye(1)).K
    policy = pw.networks.LinearPolicy(3, 1, key=jax.random.PRNGKey(0))
    return eqx.tree_at(lambda p: p.gain, policy, jnp.array([[0.0, -K[0, 0], -K[0, 1]]]))


def conditioning(horizons: tuple[int, ...], num_states: int) -> dict[str, dict]:
    system = pw.systems.Pendulum()
    mlp = pw.networks.DeterministicPolicy(3, 1, system.action_low, system.action_high, key=jax.random.PRNGKey(0))
    near_top = np.stack([np.linspace(-0.08, 0.08, num_states), np.zeros(num_states)], axis=1)
    cases = {
        "random MLP (64, 64), reset states": (mlp, None),
        "LQR-gain linear policy, |θ0| ≤ 0.08": (lqr_policy(system), near_top),
    }
    out = {}
    for name, (policy, states0) in cases.items():
        start = time.perf_counter()
        out[name] = gradient_norms(system, policy, horizons, states0=states0, key=jax.random.PRNGKey(1),
                                   num_states=num_states, hessian=True, dtype=jnp.float64)
        out[name]["seconds"] = time.perf_counter() - start
        print(f"{name}: {out[name]['seconds']:.1f} s", flush=True)
    return out


def solvers(horizon: int, shooting_iterations: int, ilqr_iterations: int, rates: tuple[float, ...]) -> dict[str, dict]:
    system = pw.systems.Pendulum()
    x0 = jnp.array([jnp.pi, 0.0], jnp.float32)  # hanging, at rest; float32 like every solver default
    actions0 = jnp.zeros((horizon, 1), jnp.float32)
    runs = [(f"shooting, Adam lr={lr:g}", "adam", {"learning_rate": lr, "tol": 0.0}) for lr in rates]
    runs += [("shooting, L-BFGS", "lbfgs", {"tol": 0.0}), ("iLQR", "ilqr", {})]
    res = {}
    for label, solver, options in runs:
        iterations = ilqr_iterations if solver == "ilqr" else shooting_iterations
        res[label] = shooting_vs_ilqr(system, x0, horizon, actions0=actions0, max_iterations=iterations,
                                      solvers=(solver,), options={solver: options})[solver]
        print(f"{label}: cost {res[label]['cost']:.2f} in {res[label]['seconds']:.3f} s", flush=True)
    return res


def short(name: str) -> str:
    return "random MLP" if name.startswith("random") else "LQR-gain policy"


def plot_conditioning(results: dict[str, dict], folder: Path | None) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    keys = ["param_grad_norm", "action_grad_norm", "open_loop_jacobian_norm", "closed_loop_jacobian_norm"]
    for (name, out), ls in zip(results.items(), ["-", "--"]):
        h = out["horizons"]
        for key, color in zip(keys, ["C0", "C1", "C2", "C3"]):
            axes[0].loglog(h, out[key], ls, color=color, marker="o", ms=3, label=f"{MEASURE_LABELS[key]}, {short(name)}")
        axes[1].semilogy(np.arange(len(out["action_grad_by_t"])), out["action_grad_by_t"], ls, color="k",
                         label=short(name))
        cond = np.minimum(out["hessian_condition"], 1e14)  # beyond that min|λ| is rounding noise
        axes[2].loglog(h, cond, ls, color="k", marker="o", ms=3, label=short(name))
        past = out["hessian_condition"] >= 1e14
        axes[2].plot(h[past], cond[past], "x", color="r", ms=8)
    axes[0].set(xlabel="horizon H", ylabel="norm (median over initial states)",
                title="gradients and Jacobian products (— MLP, -- LQR gain)")
    axes[0].legend(fontsize=6, ncol=2)
    axes[1].set(xlabel="t", ylabel="‖∂J_T/∂u_t‖", title=f"open-loop gradient per action, T = {int(h[-1])}")
    axes[1].legend(fontsize=7)
    axes[2].axhline(1e14, color="gray", lw=0.8, ls=":")
    axes[2].set(xlabel="horizon H", ylabel="max|λ| / min|λ|", title="condition number of ∂²J/∂u² (float64; × = past 1e14, not resolved)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, "conditioning_gradients.png", folder)


def plot_solvers(by_horizon: dict[int, dict[str, dict]], out: Path | None) -> None:
    fig, axes = plt.subplots(len(by_horizon), 2, figsize=(12, 4.2 * len(by_horizon)), squeeze=False)
    for row, (horizon, res) in zip(axes, by_horizon.items()):
        for name, r in res.items():
            hist = r["cost_history"][: r["iterations"] + 1]
            row[0].plot(np.arange(len(hist)), hist, label=name)
            n = len(hist) - 1
            row[1].plot(r["seconds"] * np.arange(1, n + 1) / max(n, 1), hist[1:], label=name)
        row[0].set(xlabel="iteration", xscale="symlog", title=f"Pendulum from hanging, T = {horizon}")
        row[1].set(xlabel="wall-clock, s (compiled solve; iterations spread evenly over its time)", xscale="log",
                   title=f"T = {horizon}, against time")
        for ax in row:
            ax.set(ylabel="total cost (−return)", yscale="log")
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, "conditioning_solvers.png", out)


def case_summary(name: str, out: dict) -> dict:
    """One policy's table (a row per horizon) and the span of its per-action gradients."""
    by_t = np.asarray(out["action_grad_by_t"])
    nz = by_t[by_t > 0]
    rows = [{"H": int(h), "return": float(out["return"][i]), **{k: float(out[k][i]) for k in MEASURES}}
            for i, h in enumerate(out["horizons"])]
    return {"name": name, "num_states": int(out["num_states"]), "seconds": out["seconds"], "rows": rows,
            "action_grad_decades": float(np.log10(nz.max() / nz.min())), "action_grad_steps": len(by_t)}


def solver_summary(horizon: int, res: dict[str, dict]) -> dict:
    """One horizon's solver runs: cost after 10, 100 and 1000 iterations, final cost, iterations, time."""
    def cost_at(r: dict, it: int) -> float:
        return float(r["cost_history"][min(it, len(r["cost_history"]) - 1)])

    return {"horizon": horizon, "runs": [
        {"name": name, **{f"cost_{it}": cost_at(r, it) for it in (10, 100, 1000)}, "cost": r["cost"],
         "return": r["return"], "iterations": int(r["iterations"]), "converged": bool(r["converged"]),
         "seconds": r["seconds"], "ms_per_iteration": 1e3 * r["seconds_per_iteration"]} for name, r in res.items()]}


def measure(args: argparse.Namespace) -> dict:
    """Measure (or, with --replot, load OUT/out/conditioning.pkl), draw both figures, summarize."""
    raw = Path(args.out or HERE) / "out" / "conditioning.pkl"  # the full curves, for --replot (not in git)
    if args.replot:
        saved = pickle.loads(raw.read_bytes())
    else:
        facts = machine("equinox", "optax")
        horizons = (10, 25, 50, 100) if args.quick else (10, 25, 50, 100, 200, 400)
        solver_horizons = (100,) if args.quick else (100, 200)
        shooting_iterations, ilqr_iterations = (500, 100) if args.quick else (5000, 200)
        t0 = time.time()
        cond = conditioning(horizons, 4 if args.quick else 16)
        res = {T: solvers(T, shooting_iterations, ilqr_iterations, (0.03, 0.1, 0.3)) for T in solver_horizons}
        saved = {"machine": finished(facts), "seconds": time.time() - t0, "cond": cond, "res": res,
                 "max_iterations": {"shooting": shooting_iterations, "ilqr": ilqr_iterations}}
        atomic_write_bytes(raw, pickle.dumps(saved))
    plot_conditioning(saved["cond"], args.out)
    plot_solvers(saved["res"], args.out)
    return {"machine": saved["machine"], "seconds": saved["seconds"], "max_iterations": saved["max_iterations"],
            "cases": [case_summary(name, out) for name, out in saved["cond"].items()],
            "solvers": [solver_summary(T, res) for T, res in saved["res"].items()]}


def slope(h: list, y: list) -> float:
    """Least-squares slope of log y against log H."""
    return float(np.polyfit(np.log(h), np.log(y), 1)[0])


def case_view(case: dict) -> dict:
    """Growth from the first to the last horizon, the first horizon whose Hessian is past float64's resolution."""
    rows = [{**r, "hessian_text": unresolved(r["hessian_condition"]) or f"{r['hessian_condition']:.3g}"}
            for r in case["rows"]]
    first, last = rows[0], rows[-1]
    column = lambda key: [r[key] for r in rows]
    open_loop = last["open_loop_jacobian_norm"] / first["open_loop_jacobian_norm"]
    return {**case, "rows": rows, "first": first, "last": last, "last_t": case["action_grad_steps"] - 1,
            "param_growth": last["param_grad_norm"] / first["param_grad_norm"],
            "param_slope": slope(column("H"), column("param_grad_norm")),
            "return_growth": last["return"] / first["return"],
            "open_loop_per_step": float(open_loop ** (1 / (last["H"] - first["H"]))),
            "unresolved_from": next((r["H"] for r in rows if unresolved(r["hessian_condition"])), None)}


def unresolved(cond: float | None) -> str:
    """The table's text for a condition number past float64's resolution (min |λ| at rounding level), else ''."""
    return "> 1e14 †" if cond is None or not cond < 1e14 else ""


def solvers_view(entry: dict) -> dict:
    """iLQR, the best shooting run and the best Adam run, and how far the latter two are from iLQR (%)."""
    runs = entry["runs"]
    ilqr = next(r for r in runs if r["name"] == "iLQR")
    best = min((r for r in runs if r["name"] != "iLQR"), key=lambda r: r["cost"])
    adam = min((r for r in runs if "Adam" in r["name"]), key=lambda r: r["cost"])
    return {**entry, "ilqr": ilqr, "best": best, "adam": adam, "best_vs_ilqr": 100 * (best["cost"] / ilqr["cost"] - 1),
            "adam_vs_ilqr": 100 * (adam["cost"] / ilqr["cost"] - 1)}


def view(results: dict) -> dict:
    cases = [case_view(c) for c in results["cases"]]
    return {**results, "cases": cases, "mlp": cases[0], "lqr": cases[1],
            "solvers": [solvers_view(e) for e in results["solvers"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="horizons up to 100, T = 100, fewer iterations")
    parser.add_argument("--replot", action="store_true",
                        help="redraw the figures and section from benchmarks/out/conditioning.pkl (no re-measuring)")
    publish(options(parser, "conditioning").parse_args(), "conditioning", "25_conditioning", measure, view)


if __name__ == "__main__":
    main()
