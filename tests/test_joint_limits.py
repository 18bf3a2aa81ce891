"""``joint_limits``: a learned model that is told a joint's limits keeps its imagined rollouts within them. Torque
that pushes a joint at its limit further in does nothing (no value, no gradient), a predicted position past the
limit is held at it with the outward velocity removed, and inside the range the model is unchanged. Every way a
rollout reads the model (the mean, a member per rollout, a member per step, every member at once) applies them;
groups that name entries the task lacks, or limits out of order, are refused with the fix."""

from __future__ import annotations


import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import loops
from pathwise.algorithms import get, svgk
from pathwise.loops.model_based import ModelOptions, learned_system
from pathwise.models import DynamicsModel, LearnedModel
from pathwise.spec import from_env

HI = 1.0
#: the joint's position is entry 0, its velocity entry 1, its motor action 0; entry 2 is where it puts a fingertip
LIMIT = (0, 1, 0, -HI, HI)


class FreeJoint(eqx.Module):
    """A model that knows no limit: ``v' = v + a``, ``p' = p + 0.1 v'``, fingertip ``x' = p'``."""

    obs_dim: int = eqx.field(static=True, default=3)
    action_dim: int = eqx.field(static=True, default=1)

    def __call__(self, obs, action):
        v = obs[1] + action[0]
        p = obs[0] + 0.1 * v
        return jnp.stack([p, v, p])


def system(limits=(LIMIT,)) -> LearnedModel:
    return LearnedModel(FreeJoint(), lambda o, a, n: -n[2] ** 2, action_low=-1.0, action_high=1.0, limits=limits)


def step_and_grad(sys: LearnedModel, obs, action):
    obs, action = jnp.asarray(obs, jnp.float32), jnp.asarray(action, jnp.float32)
    return np.asarray(sys.dynamics(obs, action)), np.asarray(jax.jacobian(sys.dynamics, argnums=1)(obs, action))


def test_torque_into_a_limit_the_joint_sits_at_does_nothing():
    nxt, jac = step_and_grad(system(), [HI, 0.0, HI], [1.0])
    np.testing.assert_allclose(nxt, [HI, 0.0, HI])  # the fingertip stays too: the model was asked with no torque
    np.testing.assert_array_equal(jac, 0.0)
    free, free_jac = step_and_grad(system(()), [HI, 0.0, HI], [1.0])
    assert free[0] > HI and free_jac[0, 0] > 0  # the model alone moves it through the stop


def test_a_position_predicted_past_the_limit_is_held_there_without_its_outward_velocity():
    nxt, jac = step_and_grad(system(), [HI - 0.05, 1.0, HI - 0.05], [1.0])
    assert nxt[0] == pytest.approx(HI) and nxt[1] == 0.0
    assert nxt[2] == pytest.approx(HI - 0.05 + 0.2)  # entries the limit does not name are the model's
    np.testing.assert_array_equal(jac[:2], 0.0)
    low, _ = step_and_grad(system(), [-HI + 0.05, -1.0, 0.0], [-1.0])
    assert low[0] == pytest.approx(-HI) and low[1] == 0.0


def test_inside_the_range_and_away_from_the_limit_the_model_is_unchanged():
    for obs, action in (([0.2, 0.3, 0.2], [0.7]), ([HI, 0.0, HI], [-0.5]), ([-HI, 0.0, -HI], [0.5])):
        limited, free = step_and_grad(system(), obs, action), step_and_grad(system(()), obs, action)
        np.testing.assert_allclose(limited[0], free[0], rtol=1e-6)
        np.testing.assert_allclose(limited[1], free[1], rtol=1e-6)


def test_a_soft_stop_already_passed_is_not_pushed_back_in_one_step():
    """The real stop is soft (reacher's wrist reaches 165° against its 160°): a state past the limit may stay
    there, but the model may not carry it further out."""
    nxt, _ = step_and_grad(system(), [HI + 0.05, 0.5, 0.0], [1.0])
    assert nxt[0] == pytest.approx(HI + 0.05) and nxt[1] == 0.0


def test_an_imagined_rollout_pushing_into_the_stop_stays_within_it():
    def positions(sys):
        def body(obs, _):
            nxt = sys.dynamics(obs, jnp.ones(1))
            return nxt, nxt[0]
        return np.asarray(jax.lax.scan(body, jnp.zeros(3), None, length=40)[1])

    assert positions(system()).max() <= HI + 1e-6 and positions(system(())).max() > 10 * HI


@pytest.fixture(scope="module")
def ensemble():
    return DynamicsModel(3, 1, (8,), key=jax.random.key(0), ensemble_size=3)


@pytest.mark.parametrize("sampling", ["mean", "ts-inf", "ts-1", "all"])
def test_every_way_of_reading_the_ensemble_keeps_the_limits(ensemble, sampling):
    """A limit of ±2⁻¹⁰ around a position of 0: whatever the untrained members predict, it stays within."""
    sys = LearnedModel(ensemble, lambda o, a, n: n[0], action_low=-1.0, action_high=1.0,
                       sampling="mean" if sampling == "all" else sampling, limits=((1, 2, 0, -2.0 ** -10, 2.0 ** -10),))
    sys = sys.sample(jax.random.key(1))
    if sampling == "all":
        sys = eqx.tree_at(lambda s: s.member, sys.batched_members(), jnp.asarray(2), is_leaf=lambda x: x is None)
    obs = jax.random.normal(jax.random.key(2), (64, 3)).at[:, 1].set(0.0) * 5.0
    nxt = jax.vmap(sys.dynamics)(obs, jnp.ones((64, 1)))
    assert float(jnp.abs(nxt[:, 1]).max()) <= 2.0 ** -10 and float(jnp.abs(nxt[:, 1]).max()) > 0


def test_learned_system_takes_the_limits_of_the_options():
    spec = from_env("Pendulum-v1")
    options = ModelOptions(joint_limits=(0.0, 2.0, 0.0, -0.5, 0.5))
    model = options.new_model(spec, jax.random.key(0))
    assert learned_system(model, spec, 10, options).limits == ((0, 2, 0, -0.5, 0.5),)
    assert learned_system(model, spec, 10, ModelOptions()).limits == ()


@pytest.mark.parametrize("limits, says", [((0.0, 2.0, 0.0, -0.5), "five numbers per joint"),
                                          ((0.0, 3.0, 0.0, -0.5, 0.5), "outside the observation"),
                                          ((0.0, 2.0, 1.0, -0.5, 0.5), "outside the observation"),
                                          ((0.5, 2.0, 0.0, -0.5, 0.5), "outside the observation"),
                                          ((0.0, 2.0, 0.0, 0.5, -0.5), "below high")])
def test_bad_limits_are_refused_as_the_loop_is_built(limits, says):
    """A count that is no multiple of five is refused by the config itself, the rest as the loop meets the task."""
    with pytest.raises(ValueError, match=says):
        loops.make(get("svgk"), from_env("Pendulum-v1"), svgk.Config(joint_limits=limits))


def test_limits_are_refused_where_no_learned_model_reads_them():
    with pytest.raises(ValueError, match="joint_limits"):
        loops.make(get("svgk"), from_env("pathwise/Pendulum-v1"), svgk.Config(joint_limits=LIMIT))


def test_limits_are_refused_where_the_replay_loop_fits_no_model():
    from pathwise.algorithms import svg0
    with pytest.raises(ValueError, match=r"joint_limits=.*model rollouts \(MBPO\), which are off here"):
        loops.make(get("svg0"), from_env("Pendulum-v1"), svg0.Config(joint_limits=(0.0, 2.0, 0.0, -0.5, 0.5)))
