"""Many seeds at once (the simulated loop): vmapped training equals separate runs and the loop's own
iterations (bptt, svgk on a System); the sharded path equals the unsharded one on 2 forced host devices;
the CLI splits the host CPU into devices before JAX starts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import pathwise as pw
from pathwise import algorithms
from pathwise import seeds as pw_seeds
from pathwise import spec as spec_mod
from pathwise.loops import simulated

BPTT = algorithms.get("bptt")
SVGK = algorithms.get("svgk")
TINY = BPTT.Config(hidden=(8,), horizon=10, batch_size=4, lr=1e-2, schedule="constant",
                   updates_per_iteration=2)
SPEC = spec_mod.from_system(pw.systems.Pendulum())


def _assert_trees_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_vmapped_seeds_equal_separate_runs():
    carries, metrics = simulated.train_seeds(BPTT, SPEC, TINY, seeds=3, iterations=2, shard=False)
    assert metrics["loss"].shape == (3, 2)
    assert carries.algo.updates.shape == (3,) and list(carries.env_steps) == [2 * 2 * 4 * 10] * 3
    for seed in (0, 2):
        alone, alone_metrics = simulated.train_seed(BPTT, SPEC, TINY, seed, 2)
        np.testing.assert_allclose(metrics["loss"][seed], alone_metrics["loss"], rtol=1e-5)
        _assert_trees_close(jax.tree.map(lambda x: x[seed], carries.algo.policy), alone.algo.policy)
    assert not np.allclose(metrics["loss"][0], metrics["loss"][1])  # different seeds really are different runs


def test_a_vmapped_seed_equals_the_loop_a_run_iterates():
    """Iterating the simulated loop (what `pathwise train` does between evaluations) gives seed i of the program."""
    carries, _ = simulated.train_seeds(BPTT, SPEC, TINY, seeds=2, iterations=3, shard=False, first_seed=5)
    loop = simulated.SimulatedLoop(BPTT, SPEC, TINY)
    carry = loop.init(jax.random.key(6))
    for _ in range(3):
        carry, _ = loop.iteration(carry)
    _assert_trees_close(carry.algo.policy, jax.tree.map(lambda x: x[1], carries.algo.policy))
    assert int(carry.env_steps) == int(carries.env_steps[1])


SVGK_TINY = SVGK.Config(hidden=(8,), critic_hidden=(8,), horizon=4, n_envs=4, critic_iterations=1,
                        critic_minibatches=2, updates_per_iteration=3)


def test_vmapped_svgk_seeds_equal_separate_runs():
    carries, metrics = simulated.train_seeds(SVGK, SPEC, SVGK_TINY, seeds=2, iterations=1, shard=False, first_seed=5)
    assert metrics["actor_loss"].shape == (2, 1)
    np.testing.assert_array_equal(carries.env_steps, [3 * SVGK.hook("steps_per_update")(SPEC, SVGK_TINY)] * 2)
    for row, seed in enumerate((5, 6)):
        alone, alone_metrics = simulated.train_seed(SVGK, SPEC, SVGK_TINY, seed, 1)
        np.testing.assert_allclose(metrics["actor_loss"][row], alone_metrics["actor_loss"], rtol=1e-5)
        _assert_trees_close(jax.tree.map(lambda x: x[row], carries.algo), alone.algo)
    assert not np.allclose(metrics["actor_loss"][0], metrics["actor_loss"][1])


def test_shard_count_is_the_most_devices_that_share_the_seeds_evenly():
    assert pw_seeds.shard_count(8, 2) == 2
    assert pw_seeds.shard_count(3, 2) == 1
    assert pw_seeds.shard_count(6, 4) == 3
    assert pw_seeds.shard_count(8, 16) == 8
    assert pw_seeds.shard_count(1, 4) == 1


def test_seed_keys_start_at_first_and_refuse_bad_counts():
    keys = pw_seeds.seed_keys(3, first=7)
    np.testing.assert_array_equal(jax.random.key_data(keys), jax.random.key_data(
        jax.vmap(jax.random.key)(np.arange(7, 10))))
    with pytest.raises(ValueError, match="seeds >= 1"):
        pw_seeds.seed_keys(0)
    with pytest.raises(ValueError, match="count=0 must be >= 1"):
        pw_seeds.use_host_devices(0)
    # JAX has started in this process: the automatic choice does nothing, an impossible explicit one says why
    assert pw_seeds.jax_started() and pw_seeds.use_host_devices() is False
    with pytest.raises(RuntimeError, match="before any JAX operation"):
        pw_seeds.use_host_devices(len(jax.devices("cpu")) + 1)


def test_train_seeds_rejects_bad_arguments():
    with pytest.raises(ValueError, match="seeds >= 1"):
        simulated.train_seeds(BPTT, SPEC, TINY, seeds=0, iterations=1)
    with pytest.raises(ValueError, match="iterations >= 1"):
        simulated.train_seeds(BPTT, SPEC, TINY, seeds=2, iterations=0)
    with pytest.raises(ValueError, match="ddpg cannot run in the simulated loop"):
        simulated.train_seeds(algorithms.get("ddpg"), SPEC, algorithms.get("ddpg").Config(), seeds=2, iterations=1)


SHARDED = textwrap.dedent("""
    import jax, numpy as np
    import pathwise as pw
    from pathwise import algorithms, seeds, spec
    from pathwise.loops import simulated
    assert len(jax.devices()) == 2, jax.devices()
    bptt = algorithms.get("bptt")
    config = bptt.Config(hidden=(8,), horizon=10, batch_size=4, lr=1e-2, schedule="constant",
                         updates_per_iteration=3)
    s = spec.from_system(pw.systems.Pendulum())
    sharded, m_sharded = simulated.train_seeds(bptt, s, config, seeds=4, iterations=1)  # shards by default
    plain, m_plain = simulated.train_seeds(bptt, s, config, seeds=4, iterations=1, shard=False)
    assert len(m_sharded["loss"].sharding.device_set) == 2, m_sharded["loss"].sharding
    assert len(m_plain["loss"].sharding.device_set) == 1
    np.testing.assert_allclose(m_sharded["loss"], m_plain["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(sharded.algo.policy), jax.tree.leaves(plain.algo.policy)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    try:
        seeds.seed_keys(3, shard=True)
        raise AssertionError("3 seeds on 2 devices must be refused")
    except ValueError as err:
        assert "multiple of 2" in str(err), err
    print("SHARDED-OK")
""")


def test_sharded_seeds_agree_with_unsharded_on_two_host_devices():
    # The device-count flag must be set before JAX starts, hence a fresh interpreter.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SHARDED-OK" in result.stdout


HOST_DEVICES = textwrap.dedent("""
    import os, jax
    from pathwise import seeds
    import pathwise  # importing pathwise must not start JAX, or the device count could not be chosen any more
    assert not seeds.jax_started()
    assert seeds.use_host_devices(2) is True
    assert len(jax.devices()) == 2, jax.devices()
    keys = seeds.seed_keys(8)
    assert seeds.devices_of(keys) == 2
    assert seeds.devices_of(seeds.seed_keys(3)) == 1  # 3 seeds do not split evenly over 2 devices
    print("HOST-OK")
""")


def test_use_host_devices_splits_the_cpu_before_jax_starts():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    result = subprocess.run([sys.executable, "-c", HOST_DEVICES], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HOST-OK" in result.stdout


def test_cli_seeds_are_sharded_over_host_devices(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    argv = ["train", "bptt", "--env", "pathwise/Pendulum-v1", "--steps", "80", "--seeds", "2", "--host-devices", "2",
            "--out", str(tmp_path / "b"), "--quiet", "--eval-episodes", "1", "--no-preset", "--set", "hidden=8",
            "horizon=10", "batch_size=4", "schedule=constant"]
    result = subprocess.run([sys.executable, "-m", "pathwise.cli", *argv], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sharded over 2 devices" in result.stdout, result.stdout
    config = (tmp_path / "b" / "seed_1" / "config.json").read_text()
    assert '"seed_devices": 2' in config
