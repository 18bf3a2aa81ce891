"""Many seeds at once: vmapped training equals separate runs; the sharded path equals the unsharded one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import pathwise as pw
from pathwise.algorithms import bptt

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
