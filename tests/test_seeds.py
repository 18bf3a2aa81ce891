"""Many seeds at once: vmapped training equals separate runs (bptt, svgk on a System); the sharded path equals
the unsharded one on 2 forced host devices; the CLI splits the host CPU into devices before JAX starts."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import pathwise as pw
from pathwise import seeds as pw_seeds
from pathwise.algorithms import bptt, svgk

TINY = bptt.Config(hidden=(8,), horizon=10, batch_size=4, learning_rate=1e-2, schedule="constant")


def test_vmapped_seeds_equal_separate_runs():
    system = pw.systems.Pendulum()
    states, metrics = bptt.train_seeds(system, TINY, seeds=3, num_updates=4, shard=False)
    assert metrics["loss"].shape == (3, 4)
    assert states.updates.shape == (3,)
    for seed in (0, 2):
        alone, alone_metrics = bptt.run_updates(bptt.init(jax.random.key(seed), system, TINY), system, TINY, 4)
        np.testing.assert_allclose(metrics["loss"][seed], alone_metrics["loss"], rtol=1e-5)
        ours = jax.tree.leaves(jax.tree.map(lambda x: x[seed], states.policy))
        for a, b in zip(ours, jax.tree.leaves(alone.policy)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # different seeds really are different runs
    assert not np.allclose(metrics["loss"][0], metrics["loss"][1])


SVGK_TINY = svgk.SVGKConfig(hidden=(8,), critic_hidden=(8,), horizon=4, n_envs=4, critic_iterations=1,
                            critic_minibatches=2)


def test_vmapped_svgk_seeds_equal_separate_runs():
    system = pw.systems.Pendulum()
    states, metrics = svgk.train_seeds(system, SVGK_TINY, seeds=2, num_updates=3, shard=False, first_seed=5)
    assert metrics["actor_loss"].shape == (2, 3)
    np.testing.assert_array_equal(states.env_steps, [3 * svgk.steps_per_update(SVGK_TINY)] * 2)
    for row, seed in enumerate((5, 6)):
        alone, alone_metrics = svgk.train_seed(system, SVGK_TINY, seed, 3)
        np.testing.assert_allclose(metrics["actor_loss"][row], alone_metrics["actor_loss"], rtol=1e-5)
        ours = jax.tree.leaves(jax.tree.map(lambda x: x[row], states.agent.policy))
        for a, b in zip(ours, jax.tree.leaves(alone.agent.policy)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # the scanned updates are the learner's: 2 iterations of shac_train from init_shac give the same policy
    state = svgk.init_shac(jax.random.key(5), system, SVGK_TINY)
    state, _ = svgk.shac_train(state, system, dataclasses.replace(SVGK_TINY, updates_per_iteration=3))
    first = jax.tree.map(lambda x: x[0], states.agent.policy)
    for a, b in zip(jax.tree.leaves(state.agent.policy), jax.tree.leaves(first)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
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
    system = pw.systems.Pendulum()
    with pytest.raises(ValueError, match="seeds >= 1"):
        bptt.train_seeds(system, TINY, seeds=0, num_updates=1)
    with pytest.raises(ValueError, match="num_updates >= 1"):
        bptt.train_seeds(system, TINY, seeds=2, num_updates=0)


SHARDED = textwrap.dedent("""
    import jax, numpy as np
    import pathwise as pw
    from pathwise.algorithms import bptt
    assert len(jax.devices()) == 2, jax.devices()
    config = bptt.Config(hidden=(8,), horizon=10, batch_size=4, learning_rate=1e-2, schedule="constant")
    system = pw.systems.Pendulum()
    sharded, m_sharded = bptt.train_seeds(system, config, seeds=4, num_updates=3)  # shards by default
    plain, m_plain = bptt.train_seeds(system, config, seeds=4, num_updates=3, shard=False)
    assert len(m_sharded["loss"].sharding.device_set) == 2, m_sharded["loss"].sharding
    assert len(m_plain["loss"].sharding.device_set) == 1
    np.testing.assert_allclose(m_sharded["loss"], m_plain["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(sharded.policy), jax.tree.leaves(plain.policy)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    try:
        bptt.seed_keys(3, shard=True)
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
