"""The optimal-control ceiling of Pendulum-v1, per evaluation episode: the best trajectory optimization finds.

    python benchmarks/bench_ceiling.py            # 100 evaluation episodes; rewrites pathwise/ceilings.json
    python benchmarks/bench_ceiling.py --quick    # 5 episodes, into a temporary folder (unless --out/--results)
    python benchmarks/bench_ceiling.py --variants # also the MPC settings comparison (minutes)
    python benchmarks/bench_ceiling.py --plays    # also start from every learned policy's play (bench_gap.py's)
    python benchmarks/bench_ceiling.py --from-json  # re-render the section only

Writes benchmarks/results/ceiling.json, then benchmarks/sections/15_ceiling.md (from
benchmarks/templates/15_ceiling.md) and benchmarks/figures/ceiling_pendulum.png. A quick run does not touch
pathwise/ceilings.json, and writes its section, figure and results to a temporary folder unless told where.

Protocol. Episode i is Gymnasium's ``Pendulum-v1`` reset with ``seed = EVALUATION_SEED + i``
(``pathwise.ceilings``; every run evaluates on these episodes by default). From each episode's initial
state, with the true model (``pw.systems.Pendulum``, equal to Gymnasium step for step):

1. long-horizon MPC: ``MPC(horizon=45, iterations=3, restarts=True)`` closed loop for the whole episode
   (the best mean of the settings the variants table compares);
2. full-horizon trajectory optimization: ``pw.control.multistart`` iLQR over all 200 steps from the MPC
   trajectory's actions, the box midpoint, constant pushes ±0.5 and 16 uniform random sequences, screened
   (``keep=4, screen_iterations=30``), ``max_iterations=200``.

With ``--plays`` (benchmarks/results/gap_plays.npz, written by ``benchmarks/bench_gap.py``), every learned
policy's actions on the episode are guesses too: a trajectory some method found is a start trajectory
optimization can refine, and a ceiling must be at least as good as every trajectory known from that state.

iLQR starts from the MPC actions among its guesses and only lowers a start's cost, so its best trajectory is
never worse than MPC's in simulation. That trajectory is tracked in Gymnasium's own environment from the
episode's reset with iLQR's feedback gains; that Gymnasium return is the episode's ceiling, written to
``pathwise/ceilings.json``. All episodes run as one vmapped program.
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
from pathwise.ceilings import EVALUATION_SEED
from pathwise.checkpoint import atomic_write_text

from common import finished, machine, options, publish, save_figure  # benchmarks/common.py

HERE = Path(__file__).resolve().parent
CEILINGS_JSON = HERE.parent / "pathwise" / "ceilings.json"
ENV = "Pendulum-v1"
MPC_HORIZON, MPC_ITERATIONS, MPC_RESTARTS = 45, 3, True
SECOND_MPC = (30, 3, False)  # a second MPC trajectory among the guesses: plans that differ reach other basins
PUSHES = (3, 5, 8, 10, 15, 20, 30, 40)  # "push" guesses: full torque one way for this many steps, then none (both directions)
RANDOM, KEEP, SCREEN, MAX_ITERATIONS = 16, 10, 30, 400
ILQR_GUESSES = (0.0, 1.0, -1.0)  # constant initial torques of the swing-up from rest


def method(plays: list[str] | None = None) -> str:
    also = f", the plays of the learned policies {', '.join(plays)} (benchmarks/bench_gap.py)" if plays else ""
    return (f"multi-start iLQR over the whole episode from the trajectories of MPC(iLQR, horizon={MPC_HORIZON}, "
            f"{MPC_ITERATIONS} iterations/step, restarts) and MPC(horizon={SECOND_MPC[0]}){also}, {2 * len(PUSHES)} "
            f"full-torque pushes either way for {', '.join(map(str, PUSHES))} steps, 3 constant and {RANDOM} random "
            f"guesses (best {KEEP} after {SCREEN} iterations solved on, {MAX_ITERATIONS} iterations), true model; "
            "never worse than that MPC in simulation; tracked in Gymnasium with its feedback gains")


def push_guesses(horizon: int) -> jnp.ndarray:
    """Full torque (±2) for the first d steps, d in ``PUSHES``, then zero: swing-ups either way, early or late."""
    t = jnp.arange(horizon)[None, :, None]
    d = jnp.asarray(PUSHES)[:, None, None]
    one_way = jnp.where(t < d, 2.0, 0.0)
    return jnp.concatenate([one_way, -one_way]).astype(jnp.float32)


def optimize(starts: jnp.ndarray, plays: jnp.ndarray | None = None) -> dict:
    """MPC and multi-start full-horizon iLQR from every start state, one vmapped program each; ``plays``
    (episodes, P, T, m): more guesses per episode (learned policies' actions)."""
    system = pw.systems.Pendulum()
    horizon = system.episode_length
    mpc = pw.control.MPC(system, horizon=MPC_HORIZON, iterations=MPC_ITERATIONS, restarts=MPC_RESTARTS)
    second = pw.control.MPC(system, horizon=SECOND_MPC[0], iterations=SECOND_MPC[1], restarts=SECOND_MPC[2])
    t0 = time.perf_counter()
    _, mpc_actions, mpc_rewards = jax.block_until_ready(jax.jit(jax.vmap(lambda s: mpc.rollout(s, horizon)))(starts))
    _, second_actions, _ = jax.block_until_ready(jax.jit(jax.vmap(lambda s: second.rollout(s, horizon)))(starts))
    mpc_seconds = time.perf_counter() - t0
    base = jnp.concatenate([push_guesses(horizon), pw.control.initial_guesses(
        system, horizon, pushes=(0.5,), random=RANDOM, key=jax.random.key(0))])

    if plays is None:
        plays = jnp.zeros((starts.shape[0], 0, horizon, system.action_dim), jnp.float32)

    def solve(x0, plan, other, more):
        guesses = jnp.concatenate([plan[None], other[None], more, base])
        return pw.control.multistart(system, x0, guesses, keep=KEEP, screen_iterations=SCREEN,
                                     max_iterations=MAX_ITERATIONS)

    t0 = time.perf_counter()
    res = jax.block_until_ready(jax.jit(jax.vmap(solve))(starts, mpc_actions, second_actions, plays))
    return {"mpc_actions": np.asarray(mpc_actions), "mpc_returns": np.asarray(mpc_rewards.sum(-1)),
            "mpc_seconds": mpc_seconds, "ilqr_actions": np.asarray(res.best.actions),
            "ilqr_states": np.asarray(res.best.states), "ilqr_gains": np.asarray(res.best.K),
            "ilqr_returns": -np.asarray(res.best.cost), "ilqr_from_mpc": np.asarray(res.index) == 0,
            "ilqr_seconds": time.perf_counter() - t0}


def gymnasium_return(actions: np.ndarray, states: np.ndarray, gains: np.ndarray, seed: int) -> float:
    """The plan tracked in Gymnasium's own environment after ``reset(seed=seed)``: ``u_t = ū_t + K_t (x_t − x̄_t)``
    with iLQR's feedback gains, clipped to the box. Open loop would not do: balancing upright is unstable, so
    float32 plan vs float64 environment differences grow by orders of magnitude within seconds."""
    system = pw.systems.Pendulum()
    env = gym.make(ENV)
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for t in range(actions.shape[0]):
        x = np.asarray(system.state_from_obs(jnp.asarray(obs, jnp.float32)), np.float64)
        ref = states[t]
        x[0] = ref[0] + np.arctan2(np.sin(x[0] - ref[0]), np.cos(x[0] - ref[0]))  # the angle nearest the plan's
        u = np.clip(actions[t] + gains[t] @ (x - ref), -2.0, 2.0)
        obs, reward, *_ = env.step(u.astype(np.float32))
        total += float(reward)
    env.close()
    return total


def load_plays(path: Path, episodes: int) -> tuple[list[str], jnp.ndarray]:
    """The learned policies' actions from ``bench_gap.py``'s npz: their names and (episodes, P, T, m)."""
    if not path.is_file():
        raise SystemExit(f"--plays: {path} does not exist; run benchmarks/bench_gap.py first (it writes it).")
    with np.load(path, allow_pickle=False) as data:
        names = sorted(data.files)
        arrays = [data[n] for n in names]
    short = [n for n, a in zip(names, arrays) if a.shape[0] < episodes]
    if short:
        raise SystemExit(f"--plays: {', '.join(short)} in {path} hold fewer than {episodes} episodes.")
    return names, jnp.asarray(np.stack([a[:episodes] for a in arrays], axis=1), jnp.float32)


def per_episode(episodes: int, plays: jnp.ndarray | None = None) -> dict:
    """Every episode's ceiling: the Gymnasium return of the multi-start iLQR trajectory (whose guesses include the
    MPC trajectory, so it is never worse than MPC in simulation), tracked with its feedback gains."""
    starts = jnp.asarray(pw.envs.reset_states(ENV, episodes, seed=EVALUATION_SEED))
    found = optimize(starts, plays)
    returns = np.array([gymnasium_return(found["ilqr_actions"][i], found["ilqr_states"][i], found["ilqr_gains"][i],
                                         EVALUATION_SEED + i) for i in range(episodes)])
    return {"returns": returns, "simulated": found["ilqr_returns"], "mpc": found["mpc_returns"],
            "ilqr": found["ilqr_returns"], "ilqr_better": int(np.sum(found["ilqr_returns"] > found["mpc_returns"])),
            "from_mpc": int(found["ilqr_from_mpc"].sum()), "mpc_seconds": found["mpc_seconds"],
            "ilqr_seconds": found["ilqr_seconds"]}


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
    starts = jnp.asarray(pw.envs.reset_states(ENV, episodes, seed=EVALUATION_SEED))
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


def plot(found: dict, sol, out: Path | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    returns = found["returns"]
    axes[0].hist(returns, bins=20, color="C0", label="ceiling (Gymnasium)")
    axes[0].hist(found["mpc"], bins=20, color="C1", alpha=0.5, label="MPC alone")
    axes[0].axvline(returns.mean(), color="k", ls="--", label=f"mean {returns.mean():.1f}")
    axes[0].set(xlabel="episode return", ylabel="episodes", title="Per-episode ceiling, Pendulum-v1")
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


def save_ceiling(facts: dict, found: dict, episodes: int, plays: list[str] | None) -> None:
    """Record the per-episode ceilings in ``pathwise/ceilings.json`` (what ``pathwise.ceilings`` reads)."""
    data = pw.ceilings.table()
    returns = found["returns"]
    data[ENV] = {"seed": EVALUATION_SEED, "episodes": episodes, "returns": [round(float(r), 4) for r in returns],
                 "mean": round(float(returns.mean()), 3), "std": round(float(returns.std()), 3), "method": method(plays),
                 "command": facts["command"], "date": facts["date"][:10]}
    atomic_write_text(CEILINGS_JSON, json.dumps(data, indent=1, sort_keys=True) + "\n")


def measure(args: argparse.Namespace) -> dict:
    facts = machine()
    episodes = args.episodes or (5 if args.quick else 100)
    sol, ilqr_seconds, ilqr_gym_return = ilqr_swing_up()
    names, plays = load_plays(args.plays, episodes) if args.plays else (None, None)
    found = per_episode(episodes, plays)
    returns, previous = found["returns"], pw.ceilings.entry(ENV)
    print(f"ceiling on {ENV}: {returns.mean():.2f} ± {returns.std():.2f} over {episodes} episodes (MPC alone "
          f"{found['mpc'].mean():.2f}); Gymnasium vs simulated: max |diff| "
          f"{np.abs(returns - found['simulated']).max():.2e}", flush=True)
    if not args.quick:
        save_ceiling(facts, found, episodes, names)
    variants = mpc_variants(episodes) if args.variants else []
    plot(found, sol, args.out)
    return {"machine": finished(facts), "quick": args.quick, "episodes": episodes, "seed": EVALUATION_SEED,
            "method": method(names), "plays": names,
            "ceiling": {"mean": float(returns.mean()), "std": float(returns.std()), "worst": float(returns.min()),
                        "best": float(returns.max()), "returns": returns.tolist()},
            "mpc": {"mean": float(found["mpc"].mean()), "seconds": found["mpc_seconds"]},
            "ilqr_full": {"mean": float(found["ilqr"].mean()), "seconds": found["ilqr_seconds"],
                          "better": found["ilqr_better"], "from_mpc": found["from_mpc"]},
            "max_sim_gym_diff": float(np.abs(returns - found["simulated"]).max()),
            "previous": None if previous is None else {"mean": previous["mean"], "method": previous.get(
                "method", previous.get("controller")), "date": previous.get("date")},
            "ilqr": {"horizon": int(sol.actions.shape[0]), "guesses": len(ILQR_GUESSES), "cost": float(sol.cost),
                     "converged": bool(sol.converged), "iterations": int(sol.iterations), "seconds": ilqr_seconds,
                     "gymnasium_return": ilqr_gym_return},
            "variants": variants}


def view(results: dict) -> dict:
    return {**results, "last_episode": results["episodes"] - 1, "has_variants": bool(results["variants"]),
            "has_previous": results.get("previous") is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--episodes", type=int, default=None)
    parser.add_argument("--variants", action="store_true", help="also compare MPC settings (minutes)")
    parser.add_argument("--plays", type=Path, nargs="?", const=HERE / "results" / "gap_plays.npz", default=None,
                        help="also start from the learned policies' actions (default file: benchmarks/results/"
                             "gap_plays.npz, written by bench_gap.py)")
    args = options(parser, "ceiling").parse_args()
    if args.quick and not args.from_json and args.out is None:  # a quick run leaves the reference's files alone
        args.out = Path(tempfile.mkdtemp(prefix="pathwise_ceiling_"))
        args.results = args.results or args.out / "ceiling.json"
    publish(args, "ceiling", "15_ceiling", measure, view)


if __name__ == "__main__":
    main()
