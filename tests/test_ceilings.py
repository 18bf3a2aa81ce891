"""Per-episode optimal-control ceilings: the table, its lookup, and runs compared on the same episodes."""

from __future__ import annotations

import numpy as np
import pytest

from pathwise import ceilings, registry
from pathwise.ceilings import EVALUATION_SEED
from pathwise.train import Trainer, make_run


@pytest.fixture(scope="module")
def pendulum():
    found = ceilings.entry("Pendulum-v1")
    assert found is not None, "no measured ceiling: run python benchmarks/bench_ceiling.py"
    return found


def test_the_shipped_table_covers_100_evaluation_episodes(pendulum):
    returns = np.asarray(pendulum["returns"])
    assert pendulum["seed"] == EVALUATION_SEED and pendulum["episodes"] == returns.size == 100
    assert np.all(np.isfinite(returns)) and np.all(returns <= 0.0)  # Pendulum's rewards are never positive
    np.testing.assert_allclose(pendulum["mean"], returns.mean(), atol=1e-3)
    assert "multi-start" in pendulum["method"]


def test_episode_ceilings_are_the_same_episodes_or_none(pendulum):
    returns = np.asarray(pendulum["returns"])
    np.testing.assert_array_equal(ceilings.episode_ceilings("Pendulum-v1", EVALUATION_SEED, 10), returns[:10])
    np.testing.assert_array_equal(ceilings.episode_ceilings("Pendulum-v1", EVALUATION_SEED + 95, 5), returns[95:])
    assert ceilings.episode_ceilings("Pendulum-v1", EVALUATION_SEED + 95, 6) is None  # past the measured ones
    assert ceilings.episode_ceilings("Pendulum-v1", 0, 10) is None  # other episodes: not comparable
    assert ceilings.episode_ceilings("CartPole-v1", EVALUATION_SEED, 10) is None  # never measured
    # not the simulated twin's: the same seed resets it to another start state
    assert registry.record("pathwise/Pendulum-v1").episode_ceilings(EVALUATION_SEED, 3) is None
    np.testing.assert_array_equal(registry.record("Pendulum-v1").episode_ceilings(EVALUATION_SEED, 3), returns[:3])


def test_a_run_compares_with_the_ceiling_of_its_own_evaluation_episodes(pendulum):
    run, _ = make_run("ddpg", "Pendulum-v1", overrides={"hidden": (8,), "critic_hidden": (8,)})
    returns = np.asarray(pendulum["returns"])
    default = Trainer(run, eval_episodes=10, quiet=True)
    assert default.eval_seed == EVALUATION_SEED  # every run's evaluation: the ceiling's episodes
    assert default.ceiling() == pytest.approx(returns[:10].mean())
    shifted = Trainer(run, eval_episodes=4, eval_seed=EVALUATION_SEED + 20, quiet=True)
    assert shifted.ceiling() == pytest.approx(returns[20:24].mean())
    assert Trainer(run, eval_episodes=10, eval_seed=7, quiet=True).ceiling() is None
    assert default.summary()["ceiling"] == pytest.approx(returns[:10].mean())
