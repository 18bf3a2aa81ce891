"""A model-based run's imagined reward may be a function of the user's own (``reward_source="package.module:fn"``):
a planning objective that differs from the task's reward, which still scores the real episodes and evaluations."""

from __future__ import annotations

import re
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import loops, rewards
from pathwise.algorithms import get, mbrl
from pathwise.loops.model_based import learned_system
from pathwise.models import DynamicsModel
from pathwise.spec import from_env

SHAPED = "pathwise.rewards:inverted_pendulum_centred_reward"


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    """A module of the user's in the working folder: a good reward, one of the wrong shape and a constant."""
    (tmp_path / "my_rewards_pw.py").write_text(textwrap.dedent("""
        import jax.numpy as jnp

        def upright(obs, action, next_obs):
            return next_obs[0] - 0.1 * jnp.sum(action ** 2)

        def per_entry(obs, action, next_obs):
            return next_obs

        WEIGHT = 3.0
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_rewards_pw"


def test_the_named_function_is_what_the_model_imagines(own_module):
    spec = from_env("Pendulum-v1")
    config = mbrl.Config(reward_source=f"{own_module}:upright", model_hidden=(8,))
    assert config.learns(spec) == (False, False)  # neither head: the reward is given, the task never terminates
    assert config.resolved(spec).reward_source == f"{own_module}:upright"  # kept as named for a resume
    model = DynamicsModel(spec.obs_dim, spec.action_dim, (8,), key=jax.random.key(0))
    assert model.reward_head is None
    system = learned_system(model, spec, 200, config)
    obs, action, next_obs = jnp.array([0.5, 0.1, 0.2]), jnp.array([2.0]), jnp.array([0.8, 0.3, -1.0])
    assert float(system.reward(obs, action, next_obs)) == pytest.approx(0.8 - 0.4)
    task = float(spec.reward(obs, action, next_obs))  # Pendulum-v1's own reward differs: the objective replaced it
    assert task != pytest.approx(0.4)


def test_a_function_that_is_missing_not_callable_or_not_scalar_is_refused_naming_it(own_module):
    spec = from_env("Pendulum-v1")
    for name, words in (("nothing", "has no attribute 'nothing'"), ("WEIGHT", "names a float, not a function"),
                        ("per_entry", re.escape("returns shape (3,)"))):
        config = mbrl.Config(reward_source=f"{own_module}:{name}")
        with pytest.raises(ValueError, match=words) as info:
            loops.make(get("mbrl"), spec, config)
        assert f"{own_module}:{name}" in str(info.value)
    with pytest.raises(ValueError, match="cannot import 'no_such_module_pw'"):
        loops.make(get("mbrl"), spec, mbrl.Config(reward_source="no_such_module_pw:fn"))
    with pytest.raises(ValueError, match=r"reward_source='knwon' must be one of 'auto', 'known', 'learned' or a "
                                         r"reward function of your own, 'package.module:function'"):
        mbrl.Config(reward_source="knwon")


def test_inverted_pendulum_centred_reward_is_the_task_reward_times_the_rails_margin():
    cases = ((0.0, 0.1, 1.0), (0.5, 0.1, 0.75), (-0.9, -0.19, 1 - 0.81), (0.5, 0.25, 0.0), (1.0, 0.0, 0.0))
    for x, theta, expected in cases:
        next_obs = jnp.array([x, theta, 0.0, 0.0])
        value = rewards.inverted_pendulum_centred_reward(next_obs, jnp.zeros(1), next_obs)
        assert float(value) == pytest.approx(expected, abs=1e-6)
        task = rewards.inverted_pendulum_reward(next_obs, jnp.zeros(1), next_obs)
        assert float(value) <= float(task)  # never above the task's: a price on the cart's distance only
    # its gradient pulls the cart to the centre and (through the task reward's surrogate) the pole upright
    at = jnp.array([0.5, 0.1, 0.0, 0.0])
    grad = jax.grad(lambda o: rewards.inverted_pendulum_centred_reward(o, jnp.zeros(1), o))(at)
    assert float(grad[0]) < 0 and float(grad[1]) < 0
    assert np.all(np.isfinite(np.asarray(grad)))
    assert f"{SHAPED.split(':')[1]}" in rewards.__all__
