"""Is SVG(1)'s update the same before and after the redesign? One check, on identical data and noise.

The redesign (algorithm contract, replay loop) changed how random keys are split, so the two versions draw
different minibatches, exploration noise and episode seeds, and their steps to -200 differ run by run
(benchmarks/bench_learners.py). This script separates the update from the random streams: both versions
start from the same parameters (written by the old version, read by the new), hold the same 600 Pendulum-v1
transitions (uniformly random actions, resets with seeds 0-2), and take ``UPDATES`` updates in which every
minibatch index and every standard-normal draw comes from NumPy generators seeded by the update's number
(``replay.sample`` and ``jax.random.normal`` replaced in both processes). If the update is unchanged, the final
parameters agree to float32 rounding.

    git worktree add ../pathwise-old bbe9baf
    python benchmarks/ab_svg1_update.py --old ../pathwise-old

Prints the largest absolute difference over all parameters of the policy, the value function and the model.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

N, BATCH, UPDATES = 600, 256, 60


def data():
    import gymnasium as gym
    import numpy as np

    env, rng, rows = gym.make("Pendulum-v1"), np.random.default_rng(0), []
    for episode in range(N // 200):
        obs, _ = env.reset(seed=episode)
        for _ in range(200):
            action = rng.uniform(-2, 2, 1).astype(np.float32)
            nxt, reward, *_ = env.step(action)
            rows.append((obs, action, reward, nxt))
            obs = nxt
    return [np.asarray(x, np.float32) for x in zip(*rows)]


def fix_randomness():
    """Minibatch i: indices from default_rng(1000 + i); normal draw j: default_rng(5000 + j)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pathwise import replay

    calls = {"sample": 0, "normal": 0}

    def sample(buffer, key, batch_size):
        idx = np.random.default_rng(1000 + calls["sample"]).integers(0, N, batch_size)
        calls["sample"] += 1
        return jax.tree.map(lambda x: x[idx], buffer.storage)

    def normal(key, shape=(), dtype=jnp.float32):
        calls["normal"] += 1
        return jnp.asarray(np.random.default_rng(5000 + calls["normal"]).standard_normal(shape), dtype)

    replay.sample, jax.random.normal = sample, normal


def leaves(*modules):
    import jax
    import numpy as np

    return [np.asarray(x) for x in jax.tree.leaves(modules)]


def run_old(folder: Path):
    """The pre-redesign module API: svg1.init(key, obs_dim, action_dim, low, high, config), update_step."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pathwise import replay, rewards
    from pathwise.algorithms import svg1
    from pathwise.train import build_config
    from pathwise.types import Transition

    obs, action, reward, nxt = data()
    fix_randomness()
    svg1.replay.sample = replay.sample
    config = build_config(svg1.SVG1, "Pendulum-v1")
    config = config[0] if isinstance(config, tuple) else config
    state = svg1.init(jax.random.PRNGKey(0), 3, 1, jnp.array([-2.0]), jnp.array([2.0]), config)
    no = np.zeros(N, bool)
    item = svg1.SVG1Item(Transition(obs, action, reward, nxt, no, no), np.full(N, -np.log(4.0), np.float32))
    buffer = replay.add_batch(state.buffer, item, N)
    state = state._replace(buffer=buffer, model=svg1.fit_normalizers(state.model, buffer))
    np.savez(folder / "init.npz", *leaves(state.policy.net, state.policy.log_std, state.value, state.model))
    for i in range(UPDATES):
        state, _ = svg1.update_step(state, jax.random.PRNGKey(i), rewards.get("Pendulum-v1"), config, True)
    np.savez(folder / "old.npz", *leaves(state.policy.net, state.policy.log_std, state.value, state.model))


def run_new(folder: Path):
    """This checkout: svg1.init(key, spec, config), update(state, buffer, key, config)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    from pathwise import replay, spec as spec_mod, train
    from pathwise.algorithms import svg1
    from pathwise.loops.replay import ReplayItem
    from pathwise.types import Transition

    obs, action, reward, nxt = data()
    fix_randomness()
    # the first update fits the normalizers (as the old version did before its first update); its model
    # pre-training loop has 0 steps in the preset but would draw a minibatch while being traced
    svg1.first_update = lambda s, buf, k, c: s._replace(
        model=eqx.tree_at(lambda m: m.model, s.model, svg1.fit_normalizers(s.model.model, buf)))
    config = train.make_run("svg1", "Pendulum-v1", 0)[0].config
    state = svg1.init(jax.random.PRNGKey(0), spec_mod.from_env("Pendulum-v1"), config)
    saved = np.load(folder / "init.npz")
    like = (state.policy.net, state.policy.log_std, state.value, state.model.model)
    net, log_std, value, model = jax.tree.unflatten(jax.tree.structure(like),
                                                    [jnp.asarray(saved[f"arr_{i}"]) for i in range(len(saved.files))])
    state = state._replace(policy=eqx.tree_at(lambda p: (p.net, p.log_std), state.policy, (net, log_std)),
                           value=value, target_value=value, model=eqx.tree_at(lambda s: s.model, state.model, model))
    no = np.zeros(N, bool)
    item = ReplayItem(Transition(obs, action, reward, nxt, no, no), np.full(N, -np.log(4.0), np.float32))
    buffer = replay.add_batch(replay.init(jax.tree.map(lambda x: x[0], item), 200_000), item, N)
    for i in range(UPDATES):
        state, _ = svg1.update(state, buffer, jax.random.PRNGKey(i), config)
    old = np.load(folder / "old.npz")
    new = leaves(state.policy.net, state.policy.log_std, state.value, state.model.model)
    diff = max(float(np.max(np.abs(a - old[f"arr_{i}"]))) for i, a in enumerate(new))
    print(f"{UPDATES} updates on identical data and noise: largest parameter difference old vs new {diff:.2e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="a checkout of pathwise before the redesign (e.g. bbe9baf)")
    parser.add_argument("--part", choices=("old", "new"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        (run_old if args.part == "old" else run_new)(Path(args.folder))
        return
    here = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as folder:
        for part, path in (("old", str(Path(args.old).resolve())), ("new", str(here.parents[1]))):
            env = {**os.environ, "PYTHONPATH": path}
            subprocess.run([sys.executable, str(here), "--old", args.old, "--part", part, "--folder", folder],
                           env=env, check=True)


if __name__ == "__main__":
    main()
