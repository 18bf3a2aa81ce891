"""The optimal-control ceiling: MPC with the true model on Gymnasium's own Pendulum-v1, and iLQR's swing-up.

    python benchmarks/bench_ceiling.py            # 100 seeded Gymnasium episodes; rewrites pathwise/ceilings.json
    python benchmarks/bench_ceiling.py --quick    # 5 episodes, into a temporary folder (unless --out/--results)
    python benchmarks/bench_ceiling.py --from-json  # re-render the section only

Writes benchmarks/results/ceiling.json, then benchmarks/sections/15_ceiling.md (from
benchmarks/templates/15_ceiling.md) and benchmarks/figures/ceiling_pendulum.png. A quick run does not touch
pathwise/ceilings.json, and writes its section, figure and results to a temporary folder unless told where.

Protocol. The controller is ``pw.control.MPC(pw.systems.Pendulum(), horizon=H, iterations=I)``:
iLQR re-planned at every step over the next H steps, warm-started from the shifted previous plan
(I iterations per step; the first plan of an episode is solved from scratch from three constant
initial guesses). It acts on ``gymnasium.make("Pendulum-v1")`` through ``MPCPolicy`` (observation ->
state by ``Pendulum.state_from_obs``), episode i reset with ``seed=i``, i = 0..99. Nothing is learned:
this is what knowing the model exactly buys, the reference every learned policy is compared to.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

import pathwise as pw
from pathwise.checkpoint import atomic_write_text

from common import finished, machine, options, publish, save_figure  # benchmarks/common.py

HERE = Path(__file__).resolve().parent
CEILINGS_JSON = HERE.parent / "pathwise" / "ceilings.json"
HORIZON, ITERATIONS = 30, 3
ILQR_GUESSES = (0.0, 1.0, -1.0)  # constant initial torques of the swing-up


def mpc_on_gymnasium(episodes: int, horizon: int, iterations: int) -> tuple[pw.envs.EvalResult, float]:
    policy = pw.control.MPCPolicy(pw.control.MPC(pw.systems.Pendulum(), horizon=horizon, iterations=iterations))
    t0 = time.perf_counter()
    result = pw.envs.evaluate(policy, "Pendulum-v1", episodes=episodes, seed=0)
    return result, time.perf_counter() - t0


def ilqr_swing_up(horizon: int = 100):
    """iLQR from the hanging rest state (best of three constant initial guesses: 0, ±1 N m);
    its plan run in Gymnasium with its own feedback gains."""
    system = pw.systems.Pendulum()
    x0 = jnp.array([jnp.pi, 0.0])
    t0 = time.perf_counter()
    sols = [pw.control.ilqr(system, x0, jnp.full((horizon, 1), u), max_iterations=200) for u in ILQR_GUESSES]
    sol = min(sols, key=lambda s: float(s.cost))
    sol.cost.block_until_ready()
    seconds = time.perf_counter() - t0
    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array([np.pi, 0.0])
    obs, total = np.array([-1.0, 0.0, 0.0]), 0.0
    for t in range(horizon):
        state = system.state_from_obs(jnp.asarray(obs, jnp.float32))
        # feedback on the angle as an observation difference (wrap-safe): shift the state by 2π if needed
        ref = sol.states[t]
        state = state.at[0].set(ref[0] + jnp.arctan2(jnp.sin(state[0] - ref[0]), jnp.cos(state[0] - ref[0])))
        action = np.clip(np.asarray(sol.policy(t, state)), -2.0, 2.0)
        obs, reward, *_ = env.step(action.astype(np.float32))
        total += float(reward)
    env.close()
    return sol, seconds, total


#: (horizon, iterations per step, restarts) of the MPC variants compared on the simulated system.
VARIANTS = ((30, 3, False), (30, 10, False), (45, 3, False), (45, 3, True), (60, 5, True))


def mpc_variants(episodes: int) -> list[dict]:
    """Other MPC settings, closed loop on ``pw.systems.Pendulum`` (step-for-step Gymnasium's) from the same
    Gymnasium start states, all episodes as one vmapped program: does planning longer or harder help?"""
    system = pw.systems.Pendulum()
    starts = jnp.asarray(pw.envs.reset_states("Pendulum-v1", episodes))
    rows = []
    for horizon, iterations, restarts in VARIANTS:
        mpc = pw.control.MPC(system, horizon=horizon, iterations=iterations, restarts=restarts)
        run = jax.jit(jax.vmap(lambda s: mpc.rollout(s, system.episode_length)[2].sum()))
        t0 = time.perf_counter()
        returns = np.asarray(run(starts))
        seconds = time.perf_counter() - t0
        rows.append({"horizon": horizon, "iterations": iterations, "restarts": restarts,
                     "mean": float(returns.mean()), "worst": float(returns.min()), "seconds": seconds})
        print(rows[-1], flush=True)
    return rows


def plot(result, sol, out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    axes[0].hist(result.returns, bins=20, color="C0")
    axes[0].axvline(result.mean, color="k", ls="--", label=f"mean {result.mean:.1f}")
    axes[0].set(xlabel="episode return", ylabel="episodes", title="MPC on Gymnasium Pendulum-v1")
    axes[0].legend()
    t = np.arange(sol.actions.shape[0])
    axes[1].plot(np.arange(sol.states.shape[0]), np.asarray(sol.states[:, 0]), label="θ")
    axes[1].plot(t, np.asarray(sol.actions[:, 0]), label="torque")
    axes[1].set(xlabel="step", title="iLQR swing-up from rest (θ = π)")
    axes[1].legend()
    hist = np.asarray(sol.cost_history)[: int(sol.iterations) + 1]
    axes[2].semilogy(hist - hist.min() + 1e-3)
    axes[2].set(xlabel="iteration", ylabel="cost − final cost (+1e-3)", title="iLQR convergence")
    fig.tight_layout()
    save_figure(fig, "ceiling_pendulum.png", out)


def save_ceiling(facts: dict, controller: str, result, episodes: int) -> None:
    """Record the measured ceiling in ``pathwise/ceilings.json`` (what ``pw.ceilings.ceiling`` returns)."""
    data = pw.ceilings.table() if hasattr(pw, "ceilings") else {}
    data["Pendulum-v1"] = {"mean": round(result.mean, 3), "std": round(result.std, 3), "episodes": episodes,
                           "controller": controller, "command": facts["command"], "date": facts["date"][:10]}
    atomic_write_text(CEILINGS_JSON, json.dumps(data, indent=2, sort_keys=True) + "\n")


def measure(args: argparse.Namespace) -> dict:
    facts = machine()
    episodes = args.episodes or (5 if args.quick else 100)
    sol, ilqr_seconds, ilqr_gym_return = ilqr_swing_up()
    result, seconds = mpc_on_gymnasium(episodes, HORIZON, ITERATIONS)
    steps = int(result.lengths.sum())
    print(f"MPC ceiling on Pendulum-v1: {result.mean:.2f} ± {result.std:.2f} over {episodes} episodes "
          f"({seconds:.0f} s, {1000 * seconds / steps:.1f} ms/step)")
    print(f"iLQR swing-up: cost {float(sol.cost):.2f}, {int(sol.iterations)} iterations, converged "
          f"{bool(sol.converged)}, Gymnasium return {ilqr_gym_return:.2f}")
    controller = f"MPC(iLQR, horizon={HORIZON}, {ITERATIONS} iterations/step, warm-started) on the true model"
    if not args.quick:
        save_ceiling(facts, controller, result, episodes)
    variants = [] if (args.quick or args.no_variants) else mpc_variants(episodes)
    plot(result, sol, args.out)
    return {"machine": finished(facts), "quick": args.quick, "episodes": episodes, "controller": controller,
            "mpc": {"mean": result.mean, "std": result.std, "worst": result.returns.min(),
                    "best": result.returns.max(), "seconds": seconds, "env_steps": steps},
            "ilqr": {"horizon": int(sol.actions.shape[0]), "guesses": len(ILQR_GUESSES), "cost": float(sol.cost),
                     "converged": bool(sol.converged), "iterations": int(sol.iterations), "seconds": ilqr_seconds,
                     "gymnasium_return": ilqr_gym_return},
            "variants": variants}


def view(results: dict) -> dict:
    mpc = results["mpc"]
    return {**results, "last_episode": results["episodes"] - 1, "ms_per_step": 1000 * mpc["seconds"] / mpc["env_steps"],
            "has_variants": bool(results["variants"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--no-variants", action="store_true", help="skip the MPC settings comparison")
    args = options(parser, "ceiling").parse_args()
    if args.quick and not args.from_json and args.out is None:  # a quick run leaves the reference's files alone
        args.out = Path(tempfile.mkdtemp(prefix="pathwise_ceiling_"))
        args.results = args.results or args.out / "ceiling.json"
    publish(args, "ceiling", "15_ceiling", measure, view)


if __name__ == "__main__":
    main()
