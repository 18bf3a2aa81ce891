"""The optimal-control ceiling: MPC with the true model on Gymnasium's own Pendulum-v1, and iLQR's swing-up.

    python benchmarks/bench_ceiling.py            # 100 seeded Gymnasium episodes; rewrites pathwise/ceilings.json
    python benchmarks/bench_ceiling.py --quick    # 5 episodes, does not touch ceilings.json

Writes benchmarks/sections/15_ceiling.md and benchmarks/figures/ceiling_*.png.

Protocol. The controller is ``pw.control.MPC(pw.systems.Pendulum(), horizon=H, iterations=I)``:
iLQR re-planned at every step over the next H steps, warm-started from the shifted previous plan
(I iterations per step; the first plan of an episode is solved from scratch from three constant
initial guesses). It acts on ``gymnasium.make("Pendulum-v1")`` through ``MPCPolicy`` (observation ->
state by ``Pendulum.state_from_obs``), episode i reset with ``seed=i``, i = 0..99. Nothing is learned:
this is what knowing the model exactly buys, the reference every learned policy is compared to.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

import pathwise as pw
from pathwise.checkpoint import atomic_write_text

HERE = Path(__file__).resolve().parent
SECTION = HERE / "sections" / "15_ceiling.md"
FIGURES = HERE / "figures"
CEILINGS_JSON = HERE.parent / "pathwise" / "ceilings.json"
HORIZON, ITERATIONS = 30, 3


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
    sols = [pw.control.ilqr(system, x0, jnp.full((horizon, 1), u), max_iterations=200) for u in (0.0, 1.0, -1.0)]
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


def mpc_variants(episodes: int) -> list[str]:
    """Other MPC settings, closed loop on ``pw.systems.Pendulum`` (step-for-step Gymnasium's) from the same
    Gymnasium start states, all episodes as one vmapped program: does planning longer or harder help?"""
    system = pw.systems.Pendulum()
    starts = jnp.asarray(pw.envs.reset_states("Pendulum-v1", episodes))
    rows = ["| horizon | iLQR iterations / step | restarts from constant guesses | mean return | worst | seconds (batch) |",
            "|---|---|---|---|---|---|"]
    for horizon, iterations, restarts in VARIANTS:
        mpc = pw.control.MPC(system, horizon=horizon, iterations=iterations, restarts=restarts)
        run = jax.jit(jax.vmap(lambda s: mpc.rollout(s, system.episode_length)[2].sum()))
        t0 = time.perf_counter()
        returns = np.asarray(run(starts))
        seconds = time.perf_counter() - t0
        rows.append(f"| {horizon} | {iterations} | {'yes' if restarts else 'no'} | {returns.mean():.2f} | "
                    f"{returns.min():.2f} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    return rows


def plot(result, sol) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(exist_ok=True)
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
    path = FIGURES / "ceiling_pendulum.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [f"![MPC ceiling and iLQR swing-up](figures/{path.name})"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--no-variants", action="store_true", help="skip the MPC settings comparison")
    args = parser.parse_args()
    episodes = args.episodes or (5 if args.quick else 100)
    today = datetime.date.today().isoformat()
    command = "python benchmarks/bench_ceiling.py" + (" --quick" if args.quick else "")

    sol, ilqr_seconds, ilqr_gym_return = ilqr_swing_up()
    result, seconds = mpc_on_gymnasium(episodes, HORIZON, ITERATIONS)
    steps = int(result.lengths.sum())
    print(f"MPC ceiling on Pendulum-v1: {result.mean:.2f} ± {result.std:.2f} over {episodes} episodes "
          f"({seconds:.0f} s, {1000 * seconds / steps:.1f} ms/step)")
    print(f"iLQR swing-up: cost {float(sol.cost):.2f}, {int(sol.iterations)} iterations, converged "
          f"{bool(sol.converged)}, Gymnasium return {ilqr_gym_return:.2f}")

    controller = f"MPC(iLQR, horizon={HORIZON}, {ITERATIONS} iterations/step, warm-started) on the true model"
    if not args.quick:
        data = pw.ceilings.table() if hasattr(pw, "ceilings") else {}
        data["Pendulum-v1"] = {"mean": round(result.mean, 3), "std": round(result.std, 3), "episodes": episodes,
                               "controller": controller, "command": command, "date": today}
        atomic_write_text(CEILINGS_JSON, json.dumps(data, indent=2, sort_keys=True) + "\n")

    variants = [] if (args.quick or args.no_variants) else mpc_variants(episodes)
    figure = plot(result, sol)
    lines = [
        "## The optimal-control ceiling (MPC with the true model)",
        "",
        f"Command: `{command}` — {today}, 2-core CPU container, no GPU, "
        f"python {platform.python_version()}, jax {jax.__version__}, gymnasium {gym.__version__}.",
        "",
        "Every learned Pendulum policy in this file is compared to this number: what optimal control scores on "
        "Gymnasium's own `Pendulum-v1` when it knows the model exactly. " + controller + ", acting on Gymnasium "
        f"observations; episode i reset with `seed=i`, i = 0..{episodes - 1}.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| **ceiling: mean return over {episodes} Gymnasium episodes** | **{result.mean:.2f}** ± {result.std:.2f} (std) |",
        f"| worst / best episode | {result.returns.min():.2f} / {result.returns.max():.2f} |",
        f"| MPC wall-clock | {seconds:.0f} s ({1000 * seconds / steps:.1f} ms per env step, one re-plan each) |",
        f"| iLQR swing-up from rest (θ = π), horizon 100 (best of 3 initial guesses): cost | {float(sol.cost):.2f} "
        f"(converged: {bool(sol.converged)}, {int(sol.iterations)} iterations, {ilqr_seconds:.1f} s incl. compile) |",
        f"| same plan + its feedback gains run in Gymnasium from rest | return {ilqr_gym_return:.2f} |",
        "",
        "The swing-up from exact rest is the hardest start (two swings are needed with |u| ≤ 2); the MPC mean is "
        "over Gymnasium's random starts. `pathwise/ceilings.json` holds the measured value "
        "(`pathwise.ceilings.ceiling(\"Pendulum-v1\")`); run summaries report `final_over_ceiling`.",
        "",
        *figure,
        "",
    ]
    if variants:
        lines += [
            "### Is the reference optimal? Other MPC settings",
            "",
            "The same controller with other settings, closed loop on `pw.systems.Pendulum` (equal to Gymnasium "
            "step for step, `tests/test_parity.py`) from the same start states, every episode in one vmapped "
            "program (compile time included in the seconds). The reference keeps the first row: the measured "
            "Gymnasium number above is what the learned policies are compared to.",
            "",
            *variants,
            "",
            "MPC plans 1.5-3 s ahead and iLQR is a local method: from the hanging position it can settle on a "
            "slower swing. A policy trained through the full 200-step episode (BPTT, SVG) can therefore score a "
            "few percent *above* this reference; the tables elsewhere say so when it happens (Pendulum returns are "
            "negative, so a `final_over_ceiling` below 1 means better than the reference).",
            "",
        ]
    if not args.quick:
        SECTION.parent.mkdir(exist_ok=True)
        atomic_write_text(SECTION, "\n".join(lines))
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
