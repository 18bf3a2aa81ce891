"""Bring your own Gymnasium environment: a small env class, trained through ``pw.make`` and through the CLI.

    python examples/own_env.py            # ~1 min on 2 CPU cores; runs in runs/own_env/
    python examples/own_env.py --quick    # a smoke run

From this folder the command line takes the same environment by its importable name (a class or a function that
builds the env with no arguments; the current folder is searched as `python -m` would):

    pathwise train reinforce --env own_env:Reach --steps 20000 --out runs/reach
    pathwise train --resume runs/reach --steps 40000     # works in any process that can import own_env
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

import pathwise as pw
from pathwise.cli import main as cli


class Reach(gym.Env):
    """A point on a line that should move to a target and stop there; 50 steps per episode."""

    metadata = {"render_modes": []}

    def __init__(self, target: float = 0.5, max_steps: int = 50):
        self.target, self.max_steps = target, max_steps
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)  # offset to the target, velocity
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)  # finite bounds: every algorithm can act
        self.x = self.v = 0.0
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.x - self.target, self.v], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)  # seeds self.np_random: reset(seed=s) is reproducible, so runs resume exactly
        self.x, self.v, self.t = float(self.np_random.uniform(-1.0, 1.0)), 0.0, 0
        return self._obs(), {}

    def step(self, action):
        force = float(np.clip(action[0], -1.0, 1.0))
        self.v += 0.1 * force
        self.x += 0.1 * self.v
        self.t += 1
        reward = -((self.x - self.target) ** 2) - 0.1 * self.v**2 - 0.01 * force**2
        return self._obs(), reward, False, self.t >= self.max_steps, {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    steps = 200 if args.quick else 20_000
    small = {"hidden": (8,), "num_envs": 2, "value_hidden": (8,), "value_steps": 1} if args.quick else {}
    out = Path("runs") / "own_env"

    # 1. Python: the env class itself (or an instance, or a function that builds one) is the environment.
    agent = pw.make("reinforce", env=Reach, seed=0, out=out / "python", eval_every=steps // 2, eval_episodes=5,
                    quiet=True, overwrite=True, **small)
    agent.learn(steps)
    print(f"pw.make: {agent.env_id} after {agent.num_timesteps} steps: {agent.evaluate(episodes=5)}")

    # 2. The command line, by importable name; this file is the module `own_env`.
    if str(Path(__file__).resolve().parent) not in sys.path:  # as when run as `python examples/own_env.py`
        sys.path.insert(0, str(Path(__file__).resolve().parent))
    sets = ["--set", "hidden=8", "num_envs=2", "value_hidden=8", "value_steps=1"] if args.quick else []
    run = out / "cli"
    code = cli(["train", "reinforce", "--env", "own_env:Reach", "--steps", str(steps // 2), "--out", str(run),
                "--quiet", "--eval-episodes", "5", "--overwrite", *sets])
    code = code or cli(["train", "--resume", str(run), "--steps", str(steps), "--quiet"])  # continue the run
    print(f"run directory: {run} ({', '.join(sorted(p.name for p in run.iterdir()))})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
