"""Bring your own differentiable system: define it in JAX, plan on it with iLQR, train a BPTT policy through
it (``pw.make(..., system=...)`` and ``pathwise train bptt --system own_system:PointMass``), and hand it to
Gymnasium.

    python examples/own_system.py            # ~30 s on 2 CPU cores; the BPTT policy nears the iLQR plan
    python examples/own_system.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.utils.env_checker import check_env

import pathwise as pw
from pathwise.cli import main as cli
from pathwise.rollout import rollout


class PointMass(pw.systems.System):
    """A unit mass on a line, pushed by a bounded force, that should come to rest at the origin."""

    name: ClassVar[str] = "PointMass"
    state_dim: ClassVar[int] = 2  # position, velocity
    obs_dim: ClassVar[int] = 2
    action_dim: ClassVar[int] = 1
    episode_length: ClassVar[int] = 100
    dt: float = 0.05  # numeric fields are pytree leaves: differentiable physics
    friction: float = 0.1

    def initial_state(self, key):
        return jax.random.uniform(key, (2,), minval=jnp.array([-2.0, -0.5]), maxval=jnp.array([2.0, 0.5]))

    def dynamics(self, state, action):
        x, v = state
        force = jnp.clip(action[0], -1.0, 1.0)
        v = v + self.dt * (force - self.friction * v)
        return jnp.stack([x + self.dt * v, v])

    def reward(self, state, action, next_state=None):
        return -(state[0] ** 2 + 0.1 * state[1] ** 2 + 0.01 * action[0] ** 2)

    def observe(self, state):
        return state

    def state_from_obs(self, obs):
        return obs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    system = PointMass()
    x0 = jnp.array([2.0, 0.0])

    # 1. Trajectory optimization: the optimal open-loop plan from x0.
    sol = pw.control.ilqr(system, x0, system.episode_length, max_iterations=10 if args.quick else 100)
    print(f"iLQR from x = 2: return {-float(sol.cost):.2f}, final position {float(sol.states[-1, 0]):+.3f}")

    # 2. A feedback policy trained by backpropagating through the dynamics (BPTT), with a run directory: the
    #    System itself is the problem (pw.make(..., system=...)); an instance runs in this process only.
    updates = 3 if args.quick else args.updates
    options = dict(hidden=(8,) if args.quick else (32, 32), horizon=system.episode_length, carry_state=False,
                   batch_size=8 if args.quick else 64, schedule="constant", updates_per_iteration=updates)
    agent = pw.make("bptt", system=system, seed=0, out=Path("runs") / "own_system", overwrite=True, quiet=True,
                    eval_episodes=5, **options)
    agent.learn(updates * options["batch_size"] * system.episode_length)  # simulated steps: one iteration
    policy = agent.run.carry.algo.policy
    traj = rollout(system, policy, x0, system.episode_length)
    print(f"BPTT policy from x = 2: return {float(traj.rewards.sum()):.2f} "
          f"(iLQR plan {-float(sol.cost):.2f}), final position {float(traj.states[-1, 0]):+.3f}; "
          f"evaluated on its Gymnasium wrapper: {agent.evaluate(episodes=5)['eval_return_mean']:.2f}")

    # The command line takes the class by importable name (this file is the module `own_system`), and such a run
    # resumes in any process: `pathwise train bptt --system own_system:PointMass` from this folder.
    if str(Path(__file__).resolve().parent) not in sys.path:  # as when run as `python examples/own_system.py`
        sys.path.insert(0, str(Path(__file__).resolve().parent))
    sets = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in options.items()]
    run, steps = Path("runs") / "own_system_cli", options["batch_size"] * system.episode_length * updates
    code = cli(["train", "bptt", "--system", "own_system:PointMass", "--steps", str(steps), "--out", str(run),
                "--eval-episodes", "5", "--quiet", "--overwrite", "--set", *sets])
    if code or cli(["train", "--resume", str(run), "--steps", str(2 * steps), "--quiet"]):
        return 1

    # 3. The same system as a Gymnasium environment (passes Gymnasium's checker).
    env = pw.systems.to_gymnasium(system)
    with warnings.catch_warnings():  # Gymnasium notes that the observation box is unbounded, as intended here
        warnings.simplefilter("ignore", UserWarning)
        check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(np.array([0.5], np.float32))
    print(f"as a Gymnasium env: obs {np.round(obs, 3)}, reward {reward:.3f}")

    # 4. Gradients with respect to the physics: how the return depends on friction.
    def ret(friction):
        sys_f = dataclasses.replace(system, friction=friction)
        return rollout(sys_f, policy, x0, system.episode_length).rewards.sum()

    print(f"d return / d friction = {float(jax.grad(ret)(0.1)):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
