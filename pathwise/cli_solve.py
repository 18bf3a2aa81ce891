"""``pathwise solve``: trajectory optimization on a system from the command line.

    pathwise solve lqr                                   # double integrator, infinite horizon: K, P
    pathwise solve lqr --horizon 50                      # finite horizon by the backward Riccati recursion
    pathwise solve ilqr --system pendulum --horizon 100  # swing-up from rest
    pathwise solve shooting --system pendulum --optimizer lbfgs
    pathwise solve mpc --system pendulum --episodes 5    # closed loop; on Gymnasium when the system has an id
    pathwise solve conditioning --system pendulum        # gradient norms vs horizon, shooting vs iLQR

``--out DIR`` writes ``solution.npz`` (states, actions, gains, cost history),
``summary.json`` and a plot there.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

from pathwise import helptext

METHOD_SUMMARIES = (
    ("lqr", "LQR on a LinearSystem (default: the double integrator); --horizon T for finite horizon"),
    ("ilqr", "iLQR (or DDP with --second-order) from --x0 (default: the system's hardest start)"),
    ("shooting", "gradient descent on the open-loop actions (--optimizer adam|lbfgs)"),
    ("mpc", "receding-horizon iLQR, closed loop for --steps; --episodes N also runs it on Gymnasium"),
    ("conditioning", "gradient norms of the return vs horizon, and shooting vs iLQR cost per iteration"),
)

USAGE = helptext.page("pathwise solve METHOD [--system NAME] [options]",
                      "Trajectory optimization on a differentiable system; --out DIR writes the solution, a summary "
                      "and a plot.", [helptext.section("methods", METHOD_SUMMARIES)],
                      "Run 'pathwise solve METHOD --help' for the options.")

METHODS = ("lqr", "ilqr", "shooting", "mpc", "conditioning")


@dataclasses.dataclass(frozen=True)
class SolveArgs:
    """Solve a trajectory-optimization problem on a system (the options below say which methods use them)."""

    system: str | None = None
    """System: a pathwise id or short name (pendulum, cartpoleswingup, acrobotcontinuous, doubleintegrator);
    default pendulum, and for lqr doubleintegrator (LQR needs a LinearSystem)."""
    horizon: int | None = None
    """Planning horizon T >= 1 (steps); default 100, and for lqr the infinite horizon."""
    x0: tuple[float, ...] | None = None
    """Initial state; default: Pendulum hanging at rest (θ = π), otherwise system.reset(seed)."""
    seed: int = 0
    """Seed for the initial state (when --x0 is not given) and for Gymnasium episodes."""
    iterations: int = 200
    """Maximum solver iterations (mpc: iterations of the first plan)."""
    second_order: bool = False
    """ilqr: full second-order DDP instead of Gauss-Newton iLQR."""
    optimizer: Literal["adam", "lbfgs"] = "lbfgs"
    """shooting: the optax optimizer."""
    learning_rate: float | None = None
    """shooting: Adam's step size (default 0.05); L-BFGS uses its line search."""
    mpc_horizon: int = 30
    """mpc: re-planning horizon."""
    mpc_iterations: int = 3
    """mpc: iLQR iterations per step (warm-started)."""
    steps: int = 0
    """mpc: closed-loop steps on the system (0 = its episode length)."""
    episodes: int = 0
    """mpc: also run this many episodes on the Gymnasium env the system reproduces (seed, seed+1, ...)."""
    out: str | None = None
    """Directory for solution.npz, summary.json and plot.png (created)."""


def _system(name: str):
    from pathwise import systems

    return systems.make(name)


def _x0(system, args: SolveArgs):
    import jax
    import jax.numpy as jnp

    if args.x0 is not None:
        x0 = jnp.asarray(args.x0, jnp.float32)
        if x0.shape != (system.state_dim,):
            raise ValueError(f"--x0 needs {system.state_dim} numbers for {system.name}, got {len(args.x0)}.")
        return x0
    if system.name == "Pendulum":
        return jnp.array([jnp.pi, 0.0])
    return system.reset(jax.random.key(args.seed))


def _write(out: str | None, summary: dict, arrays: dict, plot) -> None:
    if out is None:
        return
    from pathwise.checkpoint import atomic_write_bytes, atomic_write_text

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(folder / "solution.npz", buf.getvalue())
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n")
    if plot is not None:
        plot(folder / "plot.png")
    print(f"wrote {folder}/solution.npz, summary.json" + (", plot.png" if plot is not None else ""))


def _plot_solution(system, states, actions, title: str, **extra):
    """``plot(path)``: states (angles wrapped), actions with their bounds, cost per iteration or reward per step."""
    def plot(path: Path) -> None:
        from pathwise.plots import save_solution

        save_solution(path, system, states, actions, title, **extra)

    return plot


def _report(sol, name: str, system, seconds: float) -> dict:
    summary = {"method": name, "system": system.name, "cost": float(sol.cost), "return": -float(sol.cost),
               "converged": bool(sol.converged), "iterations": int(sol.iterations),
               "final_state": np.asarray(sol.states[-1]).tolist(), "seconds": round(seconds, 3)}
    final = np.asarray(sol.states[-1], np.float64).copy()
    angles = list(getattr(system, "angle_entries", ()))
    final[angles] = (final[angles] + np.pi) % (2 * np.pi) - np.pi  # -6.19 rad is upright: printed as 0.09
    summary["final_state_wrapped"] = final.tolist()
    print(f"{name} on {system.name}, horizon {sol.actions.shape[0]}: cost {summary['cost']:.4f} "
          f"(return {summary['return']:.4f}), converged {summary['converged']} after {summary['iterations']} "
          f"iterations, {seconds:.2f} s incl. compile; final state {np.round(final, 4).tolist()}"
          + (" (angles wrapped to [-pi, pi))" if angles else ""))
    return summary


def solve_lqr(args: SolveArgs) -> int:
    import jax.numpy as jnp

    from pathwise import control
    from pathwise.systems import LinearSystem

    system = _system(args.system)
    if not isinstance(system, LinearSystem):
        raise ValueError(f"--system {args.system}: {system.name} is not a LinearSystem; LQR needs linear dynamics "
                         "(use --system doubleintegrator, or ilqr for nonlinear systems).")
    A, B, Q, R = system.A, system.B, system.Q, system.R
    t0 = time.perf_counter()
    if args.horizon is None:
        sol = control.lqr(A, B, Q, R)
        print(f"infinite-horizon LQR on {system.name} (u = -K x):\nK =\n{np.asarray(sol.K)}\nP =\n{np.asarray(sol.P)}")
        summary = {"method": "lqr", "system": system.name, "K": np.asarray(sol.K).tolist(),
                   "P": np.asarray(sol.P).tolist(), "seconds": round(time.perf_counter() - t0, 3)}
        _write(args.out, summary, {"K": sol.K, "P": sol.P}, None)
        return 0
    x0 = _x0(system, args)
    sol = control.lqr(A, B, Q, R, horizon=args.horizon, Qf=jnp.zeros_like(Q), x0=x0)
    seconds = time.perf_counter() - t0
    print(f"finite-horizon LQR on {system.name}, T = {args.horizon}: cost {float(sol.cost):.4f}; "
          f"K[0] = {np.asarray(sol.K[0]).tolist()}; final state {np.round(np.asarray(sol.states[-1]), 4).tolist()} "
          f"({seconds:.2f} s)")
    summary = {"method": "lqr", "system": system.name, "horizon": args.horizon, "cost": float(sol.cost),
               "K0": np.asarray(sol.K[0]).tolist(), "seconds": round(seconds, 3)}
    _write(args.out, summary, {"states": sol.states, "actions": sol.actions, "K": sol.K, "P": sol.P},
           _plot_solution(system, sol.states, sol.actions, f"finite-horizon LQR on {system.name}, T = {args.horizon}, "
                          f"cost {float(sol.cost):.4g}"))
    return 0


def solve_trajectory(args: SolveArgs, method: str) -> int:
    from pathwise import control

    system = _system(args.system)
    x0 = _x0(system, args)
    print(f"{method} on {system.name}, horizon {args.horizon}: compiling, then up to {args.iterations} iterations "
          "in one jitted call ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    if method == "ilqr":
        sol = control.ilqr(system, x0, args.horizon, max_iterations=args.iterations, second_order=args.second_order)
    else:
        from pathwise.control.shooting import shooting

        sol = shooting(system, x0, args.horizon, optimizer=args.optimizer, learning_rate=args.learning_rate,
                       max_iterations=args.iterations)
    sol.cost.block_until_ready()
    summary = _report(sol, method, system, time.perf_counter() - t0)
    arrays = {"states": sol.states, "actions": sol.actions, "K": sol.K, "k": sol.k, "cost_history": sol.cost_history}
    _write(args.out, summary, arrays, _plot_solution(system, sol.states, sol.actions, f"{method} on {system.name}, "
                                                     f"cost {float(sol.cost):.4g}", cost_history=sol.cost_history,
                                                     iterations=int(sol.iterations)))
    return 0


def solve_mpc(args: SolveArgs) -> int:
    import jax

    from pathwise import control

    system = _system(args.system)
    x0 = _x0(system, args)
    mpc = control.MPC(system, horizon=args.mpc_horizon, iterations=args.mpc_iterations,
                      init_iterations=args.iterations)
    steps = args.steps or system.episode_length
    print(f"MPC on {system.name}: compiling, then {steps} closed-loop steps in one jitted call ...", file=sys.stderr,
          flush=True)
    t0 = time.perf_counter()
    states, actions, rewards = jax.jit(lambda s: mpc.rollout(s, steps))(x0)
    rewards.block_until_ready()
    seconds = time.perf_counter() - t0
    summary = {"method": "mpc", "system": system.name, "steps": steps, "return": float(rewards.sum()),
               "final_state": np.asarray(states[-1]).tolist(), "seconds": round(seconds, 3)}
    print(f"MPC (iLQR, horizon {args.mpc_horizon}, {args.mpc_iterations} it/step) on {system.name}: return "
          f"{summary['return']:.3f} over {steps} steps from {np.round(np.asarray(x0), 3).tolist()} "
          f"({seconds:.1f} s incl. compile)")
    if args.episodes > 0:
        from pathwise.envs import evaluate

        gym_id = system.gym_id
        if gym_id is None:
            raise ValueError(f"{system.name} reproduces no Gymnasium env; drop --episodes.")
        try:
            from pathwise.progress import Progress

            policy = control.MPCPolicy(mpc)
            with Progress(args.episodes, desc=f"MPC on {gym_id}", unit="episodes") as bar:
                result = evaluate(policy, gym_id, episodes=args.episodes, seed=args.seed, progress=bar.update)
        except NotImplementedError as err:
            raise ValueError(f"{err} MPC on Gymnasium needs the state from the observation.") from None
        summary.update(gym_id=gym_id, gym_mean=result.mean, gym_std=result.std, gym_returns=result.returns.tolist())
        print(f"on Gymnasium {gym_id}: mean return {result.mean:.2f} ± {result.std:.2f} over {args.episodes} "
              f"episodes (seeds {args.seed}..{args.seed + args.episodes - 1})")
    _write(args.out, summary, {"states": states, "actions": actions, "rewards": rewards},
           _plot_solution(system, states, actions, f"MPC (iLQR, horizon {args.mpc_horizon}) on {system.name}",
                          rewards=rewards))
    return 0


def solve_conditioning(args: SolveArgs) -> int:
    import jax

    from pathwise import diagnostics
    from pathwise.networks import DeterministicPolicy

    system = _system(args.system)
    policy = DeterministicPolicy(system.obs_dim, system.action_dim, system.action_low, system.action_high, (32, 32),
                                 key=jax.random.key(args.seed))
    horizons = tuple(h for h in (10, 25, 50, 100, 200, 400) if h <= max(args.horizon, 10)) or (10,)
    norms = diagnostics.gradient_norms(system, policy, horizons, key=jax.random.key(args.seed))
    print("horizon  |dJ/dθ|        |dJ/du|        |dx_H/dx_0| (closed loop)")
    for i, h in enumerate(norms["horizons"]):
        print(f"{int(h):7d}  {norms['param_grad_norm'][i]:12.4g}  {norms['action_grad_norm'][i]:12.4g}  "
              f"{norms['closed_loop_jacobian_norm'][i]:12.4g}")
    x0 = _x0(system, args)
    runs = diagnostics.shooting_vs_ilqr(system, x0, min(args.horizon, 100), max_iterations=args.iterations,
                                        repeats=1)
    print("solver     final cost   iterations  converged  seconds")
    for name, r in runs.items():
        print(f"{name:9s} {r['cost']:11.4f}  {r['iterations']:10d}  {str(r['converged']):9s}  {r['seconds']:.3f}")
    summary = {"system": system.name, "horizons": norms["horizons"].tolist(),
               "param_grad_norm": norms["param_grad_norm"].tolist(),
               "action_grad_norm": norms["action_grad_norm"].tolist(),
               "solvers": {k: {kk: v[kk] for kk in ("cost", "iterations", "converged", "seconds")}
                           for k, v in runs.items()}}
    arrays = {f"{k}_cost_history": v["cost_history"] for k, v in runs.items()}
    arrays.update(horizons=norms["horizons"], param_grad_norm=norms["param_grad_norm"],
                  action_grad_norm=norms["action_grad_norm"])
    _write(args.out, summary, arrays, None)
    return 0


def _check_counts(args: SolveArgs) -> None:
    """Counts that must be positive (or zero where zero means a default), refused before any work."""
    if args.horizon is not None and args.horizon < 1:
        raise ValueError(f"--horizon {args.horizon}: the horizon is a number of steps >= 1 (omit it for lqr's "
                         "infinite horizon).")
    for name in ("iterations", "mpc_horizon", "mpc_iterations"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1.")
    for name in ("steps", "episodes"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} {getattr(args, name)}: must be >= 0 (0: the default).")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    method, rest = argv[0], argv[1:]
    if method not in METHODS:
        import difflib

        close = difflib.get_close_matches(method, METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        print(f"pathwise solve: unknown method {method!r}; choose one of {', '.join(METHODS)}.{hint}",
              file=sys.stderr)
        return 2
    if helptext.has_help(rest):
        summary = dict(METHOD_SUMMARIES)[method]
        print(helptext.page(f"pathwise solve {method} [options]", f"{method}: {summary}.",
                            [helptext.section("options", helptext.options(SolveArgs))]), end="")
        return 0
    args = tyro.cli(SolveArgs, args=rest, prog=f"pathwise solve {method}")
    if args.system is None:
        args = dataclasses.replace(args, system="doubleintegrator" if method == "lqr" else "pendulum")
    if method != "lqr" and args.horizon is None:
        args = dataclasses.replace(args, horizon=100)
    try:
        _check_counts(args)
        if method == "lqr":
            return solve_lqr(args)
        if method in ("ilqr", "shooting"):
            return solve_trajectory(args, method)
        if method == "mpc":
            return solve_mpc(args)
        return solve_conditioning(args)
    except ValueError as err:
        print(f"pathwise solve {method}: {err}", file=sys.stderr)
        return 2
