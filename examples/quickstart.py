"""Train, evaluate, save, load and predict with the facade (Stable-Baselines3 style).

    python examples/quickstart.py                    # mbrl on Pendulum-v1, 2,000 real steps
    python examples/quickstart.py --algo ddpg --steps 5000
    python examples/quickstart.py --quick            # a smoke run (tiny networks, 60 steps)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np

import pathwise as pw

#: --quick: tiny networks and budgets per algorithm (a smoke run, not a result).
QUICK = {
    "mbrl": {"hidden": (8,), "model_hidden": (8,), "model_steps_per_epoch": 2, "model_max_epochs": 1,
             "model_batch": 8, "horizon": 4, "num_starts": 4, "policy_steps": 2, "max_episode_steps": 30,
             "buffer_size": 500},
    "svg-inf": {"hidden": (8,), "model_hidden": (8,), "model_steps_per_epoch": 2, "model_max_epochs": 1,
                "model_batch": 8, "grad_steps": 2, "max_episode_steps": 30, "buffer_size": 500,
                "segment_length": 10, "num_segments": 4},
    "ddpg": {"hidden": (8,), "critic_hidden": (8,), "batch_size": 8, "learning_starts": 20, "max_episode_steps": 30},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="mbrl")
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--out", default="runs/quickstart")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    overrides = QUICK.get(args.algo, {"hidden": (8,)}) if args.quick else {}
    steps = 60 if args.quick else args.steps

    agent = pw.make(args.algo, env=args.env, seed=0, out=args.out, eval_episodes=2 if args.quick else 10,
                    **overrides)
    agent.learn(steps, progress_bar=not args.quick)
    print("evaluation:", agent.evaluate(episodes=2 if args.quick else 10))
    path = agent.save(Path(args.out) / "agent.npz")

    loaded = pw.load(path)
    env = gym.make(args.env)
    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:  # the loaded agent drives a plain Gymnasium env
        action, _ = loaded.predict(obs, deterministic=True)
        assert np.array_equal(action, agent.predict(obs, deterministic=True)[0])  # save -> load is exact
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    print(f"one Gymnasium episode with the loaded agent: return {total:.1f}")
    print(f"run directory: {args.out} (learning_curve.png, metrics.csv, summary.json, checkpoints/)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
