"""BPTT through the known dynamics: Pendulum-v1 against the optimal-control ceiling, and CartPoleSwingUp.

    python benchmarks/bench_bptt.py            # 3 seeds + ablation + CartPoleSwingUp (several minutes)
    python benchmarks/bench_bptt.py --quick    # 1 seed, no ablation, shorter CartPoleSwingUp run

Writes benchmarks/sections/40_bptt.md and benchmarks/figures/bptt_*.png.

Protocol. Training wall-clock includes building the learner and every JIT compilation, and excludes
the evaluations. The learning curves evaluate the deterministic policy after each ``train_iteration``
from the 100 initial states that Gymnasium's ``Pendulum-v1`` draws with ``reset(seed=i)``,
i = 0..99, simulated by ``pw.systems.Pendulum`` (step-for-step equal to Gymnasium, tests/test_parity.py)
in one jitted batch. The final numbers come from Gymnasium itself: ``gymnasium.make("Pendulum-v1")``,
100 episodes with ``reset(seed=i)``, the policy acting on Gymnasium's observations.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import time
from pathlib import Path

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

import pathwise as pw
from pathwise.algorithms.bptt import BPTT, Config
from pathwise.envs import evaluate, reset_states, run_episode
from pathwise.rollout import rollout

HERE = Path(__file__).resolve().parent
SECTION = HERE / "sections" / "40_bptt.md"
FIGURES = HERE / "figures"
EPISODES = 100


def pendulum_ceiling() -> tuple[float, str]:
    from pathwise.ceilings import ceiling

    value = ceiling("Pendulum-v1")
    if value is None:
        raise SystemExit("No measured ceiling for Pendulum-v1: run `python benchmarks/bench_ceiling.py` first.")
    return value, "MPC on the true model, `benchmarks/bench_ceiling.py` (pathwise/ceilings.json)"


@eqx.filter_jit
def simulated_returns(system, policy, states0, horizon: int):
    traj = jax.vmap(lambda s: rollout(system, policy, s, horizon))(states0)
    return traj.rewards.sum(-1), traj.final_state


def train_with_curve(env_id: str, config: Config, seed: int, iterations: int, states0) -> dict:
    """Train for ``iterations`` train_iterations; curve of simulated eval return vs training wall-clock."""
    t0 = time.perf_counter()
    learner = BPTT(env_id, config, seed=seed)
    train_time, curve = time.perf_counter() - t0, []
    horizon = learner.system.episode_length
    for _ in range(iterations):
        t0 = time.perf_counter()
        metrics = learner.train_iteration()
        jax.block_until_ready(learner.get_state().policy)
        train_time += time.perf_counter() - t0
        returns, finals = simulated_returns(learner.system, learner.get_state().policy, states0, horizon)
        cos = jnp.cos(finals[:, 0] if env_id == "Pendulum-v1" else finals[:, 2])  # theta: state 0 / state 2
        curve.append((train_time, learner.env_steps, float(returns.mean()), metrics["nonfinite_skipped"],
                      float((cos > UPRIGHT_COS).mean())))
    return {"learner": learner, "curve": np.array(curve), "train_s": train_time}


def gym_evaluation(learner: BPTT, env_id: str) -> tuple[float, float, np.ndarray]:
    """Mean/std return over 100 seeded Gymnasium episodes, and each episode's final cos(theta) (obs 0, or cos of obs 2)."""
    env = gym.make(env_id)
    returns, final_cos = [], []
    for i in range(EPISODES):
        episode, total, _ = run_episode(env, learner.act, seed=i)
        returns.append(total)
        final_cos.append(float(episode.next_obs[-1][0]) if env_id == "Pendulum-v1" else
                         float(np.cos(episode.next_obs[-1][2])))
    env.close()
    return float(np.mean(returns)), float(np.std(returns)), np.array(final_cos)


def pendulum_runs(seeds: int, iterations: int, ceiling: float) -> tuple[list[dict], list[str]]:
    states0 = jnp.asarray(reset_states("Pendulum-v1", EPISODES))
    runs, rows = [], []
    for seed in range(seeds):
        run = train_with_curve("Pendulum-v1", Config(), seed, iterations, states0)
        mean, std, _ = gym_evaluation(run["learner"], "Pendulum-v1")
        reached = run["curve"][run["curve"][:, 2] >= 1.05 * ceiling]
        t_reach = f"{reached[0, 0]:.1f}" if len(reached) else "not reached"
        rows.append(f"| {seed} | {run['train_s']:.1f} | {t_reach} | {int(run['learner'].env_steps):,} | "
                    f"{mean:.1f} ± {std:.1f} | {100 * (mean - ceiling) / abs(ceiling):+.1f}% | "
                    f"{int(run['curve'][:, 3].sum())} |")
        run["gym_return"] = mean
        runs.append(run)
        print(f"pendulum seed {seed}: gym return {mean:.1f}, train {run['train_s']:.1f}s, within 5% at {t_reach}",
              flush=True)
    return runs, rows


ABLATIONS = {
    "carried 50-step windows (default)": {},
    "carried 25-step windows": dict(horizon=25),
    "carried 100-step windows": dict(horizon=100),
    "full 200-step episodes (lecture's plain BPTT)": dict(carry_state=False, horizon=200),
    "full 200-step episodes, truncate_every=50": dict(carry_state=False, horizon=200, truncate_every=50),
    "carried 50-step windows, no clipping": dict(max_grad_norm=0.0),
}


def ablation(iterations: int, ceiling: float) -> list[str]:
    states0 = jnp.asarray(reset_states("Pendulum-v1", EPISODES))
    rows = []
    for name, change in ABLATIONS.items():
        run = train_with_curve("Pendulum-v1", dataclasses.replace(Config(), **change), 0, iterations, states0)
        final = run["curve"][-1, 2]
        rows.append(f"| {name} | {run['train_s']:.1f} | {int(run['learner'].env_steps):,} | {final:.1f} | "
                    f"{100 * (final - ceiling) / abs(ceiling):+.1f}% | {int(run['curve'][:, 3].sum())} |")
        print(f"ablation {name}: {final:.1f} in {run['train_s']:.1f}s", flush=True)
    return rows


# The working swing-up config (also pathwise/presets/bptt.toml, ["pathwise/CartPoleSwingUp-v0"]): 100-step
# carried windows, Adam 3e-3 cosine-decayed over 3000 updates, and training episodes that start anywhere in
# a broad box (every pole angle, |x| <= 1, |x_dot| <= 1, |theta_dot| <= 3) instead of hanging only.
CARTPOLE = Config(horizon=100, learning_rate=3e-3, schedule_updates=3000, start_spread=(1.0, 1.0, 3.1416, 3.0))
CARTPOLE_VARIANTS = {
    "hanging starts only (no start_spread)": dict(start_spread=None),
}
UPRIGHT_COS = 0.95


def cartpole_run(iterations: int, config: Config = CARTPOLE, name: str = "this config") -> tuple[dict, str]:
    system = pw.systems.CartPoleSwingUp()
    states0 = jax.vmap(system.reset)(jax.random.split(jax.random.key(123), EPISODES))
    run = train_with_curve("pathwise/CartPoleSwingUp-v0", config, 0, iterations, states0)
    mean, std, cos = gym_evaluation(run["learner"], "pathwise/CartPoleSwingUp-v0")
    upright = float(np.mean(cos > UPRIGHT_COS))
    t_up = first_upright_time(run["curve"])
    row = (f"| {name} | {run['train_s']:.1f} | {int(run['learner'].env_steps):,} | {mean:.1f} ± {std:.1f} | "
           f"{cos.mean():.3f} | {100 * upright:.0f}% | {t_up} | {int(run['curve'][:, 3].sum())} |")
    print(f"cartpole {name}: return {mean:.1f}, final cos {cos.mean():.3f}, upright {upright:.2f}", flush=True)
    run.update(gym_return=mean, upright=upright)
    return run, row


def first_upright_time(curve: np.ndarray) -> str:
    """Training wall-clock at which >= 90% of the simulated evaluation episodes first ended upright."""
    hit = curve[curve[:, 4] >= 0.9]
    return f"{hit[0, 0]:.1f}" if len(hit) else "never"


def plot(runs: list[dict], ceiling: float, cartpole: dict[str, dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for seed, run in enumerate(runs):
        ax.plot(run["curve"][:, 0], run["curve"][:, 2], label=f"seed {seed}")
    ax.axhline(ceiling, color="k", ls="--", label=f"ceiling {ceiling:.0f}")
    ax.axhline(1.05 * ceiling, color="k", ls=":", label="within 5%")
    ax.set(xlabel="training wall-clock (s, incl. compile)", ylabel="mean return, 100 Gymnasium inits",
           title="BPTT on Pendulum-v1", ylim=(-1300, -100))
    ax.legend()
    fig.tight_layout()
    fig.savefig(FIGURES / "bptt_pendulum_curve.png", dpi=120)
    paths.append("benchmarks/figures/bptt_pendulum_curve.png")
    if cartpole:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for name, run in cartpole.items():
            ax.plot(run["curve"][:, 0], run["curve"][:, 2], label=name)
            ax2.plot(run["curve"][:, 0], 100 * run["curve"][:, 4], label=name)
        ax.set(xlabel="training wall-clock (s, incl. compile)", ylabel="mean return, 100 hanging starts",
               title="BPTT on CartPoleSwingUp (500 steps, max 500)")
        ax2.set(xlabel="training wall-clock (s, incl. compile)", ylabel=f"% episodes ending cos θ > {UPRIGHT_COS}",
                title="ending upright", ylim=(-3, 103))
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(FIGURES / "bptt_cartpole_curve.png", dpi=120)
        paths.append("benchmarks/figures/bptt_cartpole_curve.png")
    plt.close("all")
    return paths


def versions() -> str:
    import equinox
    import optax

    return (f"python {platform.python_version()}, jax {jax.__version__}, equinox {equinox.__version__}, "
            f"optax {optax.__version__}, gymnasium {gym.__version__}, numpy {np.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args()
    seeds = args.seeds or (1 if args.quick else 3)
    load_start = os.getloadavg()
    ceiling, ceiling_source = pendulum_ceiling()
    config = Config()
    iterations = 30  # 30 x 50 = 1500 updates
    runs, rows = pendulum_runs(seeds, iterations, ceiling)
    ablation_rows = [] if args.quick else ablation(12, ceiling)
    cp_iterations = 30 if args.quick else 60  # x 50 updates
    cartpole, row = cartpole_run(cp_iterations, CARTPOLE, "start_spread (this config)")
    cartpole_runs, cartpole_rows = {"start_spread (this config)": cartpole}, [row]
    if not args.quick:
        for name, change in CARTPOLE_VARIANTS.items():
            cartpole_runs[name], row = cartpole_run(cp_iterations, dataclasses.replace(CARTPOLE, **change), name)
            cartpole_rows.append(row)
    figures = plot(runs, ceiling, cartpole_runs)
    load_end = os.getloadavg()
    date = subprocess.run(["date", "-u", "+%F"], capture_output=True, text=True).stdout.strip()
    command = "python benchmarks/bench_bptt.py" + (" --quick" if args.quick else "")
    lines = [
        "## BPTT through known dynamics (`pathwise train bptt`)",
        "",
        f"Command: `{command}` · date {date} · 2-core CPU container, no GPU; shared with other jobs during this run"
        f" (wall-clock numbers are inflated by that: `nproc` = {os.cpu_count()}, 1/5/15-min load average "
        f"{'/'.join(f'{x:.1f}' for x in load_start)} at the start and {'/'.join(f'{x:.1f}' for x in load_end)} at "
        f"the end) · {versions()}.",
        "",
        "Loss (lecture, \"Learning Control Policies through Backpropagation\"): "
        "`min_θ Σ_t c(x_t, π_θ(x_t))`, `x_{t+1} = f(x_t, π_θ(x_t))`, gradients backpropagated through "
        "`lax.scan` rollouts of the true `pw.systems` dynamics. Default config: "
        f"tanh MLP {config.hidden}, batch {config.batch_size} start states, {config.horizon}-step windows that "
        f"carry the state across updates (episodes reset after 200 steps), Adam {config.learning_rate:g} with "
        f"cosine decay over {config.schedule_updates} updates, global-norm clipping {config.max_grad_norm:g}, "
        f"{config.updates_per_iteration} updates per jitted call.",
        "",
        f"### Pendulum-v1: {iterations * config.updates_per_iteration} updates per seed",
        "",
        f"Ceiling: {ceiling:.1f} ({ceiling_source}); target: within 5% (≥ {1.05 * ceiling:.1f}) in under 60 s.",
        "Final return: Gymnasium's own `Pendulum-v1`, 100 episodes `reset(seed=i)`. \"Within 5% at\" is the "
        "training wall-clock (incl. compilation) after which the curve's evaluation first reached the target. "
        "Steps are *simulated* steps through the known model, not environment interactions. The seeds run one "
        "after another in one process: only the first pays the JIT compilation (its curve starts late), later "
        "seeds reuse the compiled program.",
        "",
        "| seed | train wall-clock (s) | within 5% at (s) | simulated steps | Gymnasium return (100 ep.) | vs ceiling"
        " | non-finite updates skipped |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    if ablation_rows:
        lines += [
            "",
            f"### Ablation: what makes Pendulum BPTT work ({12 * config.updates_per_iteration} updates, seed 0)",
            "",
            "Return on the same 100 Gymnasium initial states, simulated (see protocol in the script docstring).",
            "",
            "| variant | train wall-clock (s) | simulated steps | return | vs ceiling | non-finite skipped |",
            "|---|---|---|---|---|---|",
            *ablation_rows,
        ]
    lines += [
        "",
        f"### CartPoleSwingUp (continuous force, pole starts down): {cp_iterations * CARTPOLE.updates_per_iteration}"
        " updates, seed 0",
        "",
        f"Config: {CARTPOLE.horizon}-step carried windows, batch {CARTPOLE.batch_size}, Adam "
        f"{CARTPOLE.learning_rate:g} with cosine decay over {CARTPOLE.schedule_updates} updates, clipping "
        f"{CARTPOLE.max_grad_norm:g}, policy input (x, ẋ, cos θ, sin θ, θ̇), and `start_spread = "
        f"{tuple(round(w, 4) for w in CARTPOLE.start_spread)}`: training episodes start from the hanging "
        "state plus uniform noise of these half-widths on (x, ẋ, θ, θ̇), i.e. at every pole angle. Evaluation "
        "always starts hanging (θ = π ± 0.05).",
        "",
        "Return and final cos θ over 100 episodes of Gymnasium's `gymnasium.make(\"pathwise/CartPoleSwingUp-v0\")`"
        " (`reset(seed=i)`, 500 steps, no termination); reward per step `cos θ − 0.1 x² − 0.01 u²` (at most 500, "
        "and less from a hanging start: cos θ < 0 while swinging up). \"Upright\" counts episodes ending with "
        f"cos θ > {UPRIGHT_COS}. \"≥ 90% upright at\" is the training wall-clock (incl. compilation) after which "
        "the learning curve's evaluation (100 simulated hanging starts) first ended ≥ 90% upright.",
        "",
        "| variant | train wall-clock (s) | simulated steps | return (100 ep.) | mean final cos θ | upright at the end"
        " | ≥ 90% upright at (s) | non-finite skipped |",
        "|---|---|---|---|---|---|---|---|",
        *cartpole_rows,
        "",
        "Figures: " + ", ".join(f"`{p}`" for p in figures),
        "",
    ]
    SECTION.parent.mkdir(parents=True, exist_ok=True)
    SECTION.write_text("\n".join(lines))
    print(f"wrote {SECTION}")


if __name__ == "__main__":
    main()
