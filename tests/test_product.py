"""The product surface: the examples run, and an agent saved with ``agent.save`` comes back from ``pw.load``
predicting bit-identical actions. (The README's and docs' code blocks run in tests/test_docs.py.)"""

from pathlib import Path

import numpy as np
import pytest

import pathwise as pw
from pathwise.config import parse_set

from test_cli import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_examples_run_quick(script, tmp_path, monkeypatch, capsys):
    import runpy
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [script, "--quick"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip()


# --------------------------------------------------------------------------- save -> load -> predict

SAVE_LOAD = {"reinforce": "CartPole-v1", "svg0-discrete": "CartPole-v1", "ddpg": "Pendulum-v1",
             "bptt": "pathwise/Pendulum-v1", "svg-inf": "Pendulum-v1"}


@pytest.mark.parametrize("algo", list(SAVE_LOAD))
def test_save_load_predict_is_bit_identical(algo, tmp_path):
    import gymnasium as gym

    env_id, steps, sets = TINY[algo]
    assert env_id == SAVE_LOAD[algo]
    agent = pw.make(algo, env=env_id, seed=2, use_preset=False, eval_episodes=1, quiet=True, **parse_set(sets))
    agent.learn(steps)
    space = gym.make(env_id).observation_space
    space.seed(0)
    obs = np.stack([space.sample() for _ in range(16)]).astype(np.float32)
    before, _ = agent.predict(obs, deterministic=True)
    single = [agent.predict(o, deterministic=True)[0] for o in obs[:3]]
    path = agent.save(tmp_path / "agent")
    assert path.name == "agent.npz"
    loaded = pw.load(path, quiet=True)
    assert loaded.run.algorithm == agent.run.algorithm and loaded.config == agent.config
    assert loaded.num_timesteps == agent.num_timesteps and loaded.env_id == env_id
    after, _ = loaded.predict(obs, deterministic=True)
    assert np.asarray(after).dtype == np.asarray(before).dtype
    np.testing.assert_array_equal(after, before)
    for o, a in zip(obs[:3], single):
        np.testing.assert_array_equal(loaded.predict(o, deterministic=True)[0], a)
    if isinstance(gym.make(env_id).action_space, gym.spaces.Box):
        assert np.asarray(before).shape == (16, *gym.make(env_id).action_space.shape)
    else:
        assert np.asarray(before).shape == (16,) and set(np.unique(before)) <= {0, 1}
    bad = np.zeros(obs.shape[1] + 1, np.float32)
    with pytest.raises(ValueError, match=rf"observation has shape \({obs.shape[1] + 1},\), expected \({obs.shape[1]},\)"):
        loaded.predict(bad)
