"""The shipped presets of the model-free learners parse into valid configs for the environments benchmarked."""

import dataclasses

import pytest

from pathwise import presets, registry
from pathwise import config as cfg_mod
from pathwise.algorithms import get
from pathwise.train import make_run

CASES = [("ddpg", "Pendulum-v1"), ("svg0", "Pendulum-v1"), ("reinforce", "CartPole-v1"), ("qac", "CartPole-v1"),
         ("svg0-discrete", "CartPole-v1")]


@pytest.mark.parametrize("algo,env_id", CASES)
def test_preset_is_listed_and_builds_a_valid_config(algo, env_id):
    assert env_id in presets.available()[algo]
    algorithm = get(algo)
    values, run_settings = registry.record(env_id).preset(algo)
    assert (values, run_settings) == presets.load(algo, env_id)
    config = cfg_mod.build(algorithm.Config, algo, values)
    fields = {f.name for f in dataclasses.fields(algorithm.Config)}
    assert set(values) <= fields, f"preset keys not in {algo}'s Config: {set(values) - fields}"
    for key, value in values.items():
        got = getattr(config, key)
        assert (tuple(value) if isinstance(value, list) else value) == got, key
    assert run_settings["steps"] > 0 and run_settings["eval_episodes"] == 10


def test_override_beats_preset():
    run, _ = make_run("ddpg", "Pendulum-v1", overrides={"exploration_std": 0.3})
    assert run.config.exploration_std == 0.3 and run.config.tau == registry.record("Pendulum-v1").preset("ddpg")[0]["tau"]
    run.loop.close()
