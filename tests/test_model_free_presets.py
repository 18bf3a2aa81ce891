"""The shipped presets of the model-free learners parse into valid configs for the environments benchmarked."""

import dataclasses

import pytest

from pathwise import presets
from pathwise.algorithms import get
from pathwise.train import build_config

CASES = [("ddpg", "Pendulum-v1"), ("svg0", "Pendulum-v1"), ("reinforce", "CartPole-v1"), ("qac", "CartPole-v1"),
         ("svg0-discrete", "CartPole-v1")]


@pytest.mark.parametrize("algo,env_id", CASES)
def test_preset_is_listed_and_builds_a_valid_config(algo, env_id):
    assert env_id in presets.available()[algo]
    cls = get(algo)
    values, run = presets.load(algo, env_id)
    config, run_settings = build_config(cls, env_id)
    assert isinstance(config, cls.Config)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    assert set(values) <= fields, f"preset keys not in {cls.__name__}.Config: {set(values) - fields}"
    for key, value in values.items():
        got = getattr(config, key)
        assert (tuple(value) if isinstance(value, list) else value) == got, key
    assert run_settings["steps"] > 0 and run_settings["eval_episodes"] == 10


def test_override_beats_preset():
    config, _ = build_config(get("ddpg"), "Pendulum-v1", overrides={"exploration_std": 0.3})
    assert config.exploration_std == 0.3
