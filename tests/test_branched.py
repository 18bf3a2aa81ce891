"""MBPO-style branched model rollouts in the replay loop (pathwise.loops.branched, pathwise.replay.MixedReplay)."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_ddpg import check_compiles_once, check_exact_resume, make_loop
from trees import assert_trees_equal

from pathwise import replay
from pathwise.algorithms import ddpg, svg0
from pathwise.loops.branched import branch_transitions
from pathwise.models import DynamicsModel, LearnedModel
from pathwise.rollout import rollout

#: svg0 with 4 branched 3-step rollouts per real step, kept small (updates_per_step < 1: few updates per episode)
TINY = svg0.Config(hidden=(8,), critic_hidden=(16,), batch_size=16, buffer_size=1000, learning_starts=150,
                   updates_per_step=0.1, model_rollouts_per_step=4, model_horizon=3, real_ratio=0.25,
                   model_hidden=(16,), model_max_epochs=2, model_steps_per_epoch=5, model_buffer_size=5000)


def linear_model(terminal_fn=None) -> LearnedModel:
    """An untrained 1-d model (its prediction is some smooth function) with reward -o², as a System."""
    model = DynamicsModel(1, 1, (8,), key=jax.random.key(0))
    return LearnedModel(model, lambda o, a, o2: -jnp.sum(o ** 2), action_low=np.array([-1.0]),
                        action_high=np.array([1.0]), terminal_fn=terminal_fn, horizon=50)


@pytest.fixture(scope="module")
def branched_once():
    """The svg0 loop with model rollouts and its carry after the first branched iteration."""
    loop = make_loop("svg0", "Pendulum-v1", TINY)
    carry, metrics = loop.iteration(loop.init(jax.random.key(5)))
    return loop, carry, metrics


def test_mixed_replay_draws_the_stated_fraction_from_each_buffer():
    real = replay.add_batch(replay.init(jnp.zeros(()), 100), jnp.ones(50))
    model = replay.init(jnp.zeros(()), 100)
    mixed = replay.MixedReplay(real, model, 0.3)
    assert np.all(replay.sample(mixed, jax.random.key(0), 20) == 1.0)  # model buffer empty: all real
    mixed = replay.MixedReplay(real, replay.add_batch(model, 2 * jnp.ones(10)), 0.3)
    batch = jax.jit(lambda b, k: replay.sample(b, k, 20))(mixed, jax.random.key(1))
    assert int(jnp.sum(batch == 1.0)) == 6 and int(jnp.sum(batch == 2.0)) == 14  # ceil(0.3 * 20) real rows
    assert int(mixed.size) == 50 and mixed.capacity == 100  # statistics of the data set see the real rows


def test_branches_are_rollouts_of_the_model_with_the_policy():
    system = linear_model()
    starts = jnp.array([[0.5], [-0.2]])
    policy = lambda o, k: jnp.tanh(o) + 0.1 * jax.random.normal(k, (1,))  # noqa: E731
    key = jax.random.key(3)
    t, alive = branch_transitions(system, policy, starts, key, 4)
    assert t.obs.shape == (8, 1) and bool(jnp.all(alive)) and not bool(jnp.any(t.truncated))
    np.testing.assert_allclose(t.next_obs[:3], t.obs[1:4])  # a branch continues from its own predictions
    np.testing.assert_allclose(t.next_obs[0], system.dynamics(t.obs[0], t.action[0]), rtol=1e-5)
    np.testing.assert_allclose(t.reward, -t.obs[:, 0] ** 2, rtol=1e-6)
    k_member, k_noise, k_policy = jax.random.split(jax.random.split(key, 2)[1], 3)
    ref = rollout(system, policy, starts[1], 4, key=k_noise, policy_noise=jax.random.split(k_policy, 4))
    np.testing.assert_allclose(t.action[4:], ref.actions, rtol=1e-6)  # the shared rollout, branch by branch


def test_each_branch_follows_its_own_ensemble_member():
    model = DynamicsModel(1, 1, (8,), key=jax.random.key(0), ensemble_size=4)  # members differ by their init
    system = LearnedModel(model, lambda o, a, o2: -jnp.sum(o ** 2), action_low=np.array([-1.0]),
                          action_high=np.array([1.0]), sampling="ts-inf")
    key, policy = jax.random.key(4), (lambda o, k: 0.5 * jnp.tanh(o))
    t, _ = branch_transitions(system, policy, jnp.full((10, 1), 0.3), key, 3)
    for i, k in enumerate(jax.random.split(key, 10)):
        member = system.sample(jax.random.split(k, 3)[0]).member
        x = jnp.array([0.3])
        for step in range(3):
            x = model.member_prediction(x, policy(x, None), member)
            np.testing.assert_allclose(t.next_obs[3 * i + step], x, rtol=1e-5, atol=1e-6)
    assert len({round(float(x), 5) for x in t.next_obs[2::3, 0]}) > 1


def test_branches_through_an_ensemble_do_not_copy_a_members_parameters_per_branch():
    """MBPO branches tens of thousands of rollouts at once. A member indexed per branch under vmap would copy its
    parameters per branch: 2,048 branches through 5 members of 4 layers of 200 took 1 GB of temporary memory (and
    50,000 branches ran out of memory on Hopper-v5); every member on the whole batch takes a few MB."""
    model = DynamicsModel(11, 3, (200,) * 4, key=jax.random.key(0), ensemble_size=5, gaussian=True)
    system = LearnedModel(model, lambda o, a, o2: o2[0], action_low=-np.ones(3), action_high=np.ones(3),
                          sampling="ts-inf")
    params, static = eqx.partition(system, eqx.is_array)
    branches = jax.jit(lambda p, x, k: branch_transitions(eqx.combine(p, static), lambda o, _: jnp.tanh(o[:3]), x,
                                                          k, 1))
    memory = branches.lower(params, jnp.zeros((2048, 11)), jax.random.key(1)).compile().memory_analysis()
    if memory is None:
        pytest.skip("this JAX backend reports no memory analysis of a compiled program")
    member_bytes = 4 * sum(x.size for x in jax.tree.leaves(eqx.filter(model.nets, eqx.is_array))) // 5
    assert memory.temp_size_in_bytes < 2048 * member_bytes / 20, memory.temp_size_in_bytes


def test_branches_stop_at_the_models_termination():
    system = linear_model(terminal_fn=lambda o: jnp.abs(o[0]) > -1.0)  # every next state is terminal
    t, alive = branch_transitions(system, lambda o, k: jnp.zeros(1), jnp.zeros((3, 1)), jax.random.key(0), 4)
    assert alive.reshape(3, 4).tolist() == [[True, False, False, False]] * 3
    assert bool(jnp.all(t.terminated.reshape(3, 4)[:, 0]))


def test_model_rollouts_feed_the_replay_and_the_updates(branched_once):
    loop, carry, metrics = branched_once
    assert metrics["updates"] == 20 and int(carry.buffer.size) == 200
    assert int(carry.model_buffer.size) == 4 * 200 * 3  # Pendulum never terminates: every branched step is kept
    assert metrics["model_buffer_size"] == 2400 and metrics["model_branch_length"] == 3.0
    assert np.isfinite(metrics["model_one_step_mse"]) and metrics["model_branch_reward"] < 0
    stored = carry.model_buffer.storage.transition
    assert bool(jnp.all(jnp.abs(stored.action[:2400]) <= 2.0)) and not bool(jnp.any(stored.truncated))
    assert "model_one_step_mse" in loop.describe(carry)


def test_model_rollouts_do_not_recompile_as_the_buffers_grow(branched_once, compilations):
    loop, carry, _ = branched_once
    carry, metrics = check_compiles_once(loop, carry, compilations)
    # 4 x 2,400 branched steps in a ring of 5,000: full, and the newest overwrote the oldest
    assert int(carry.model_buffer.size) == 5000 and int(carry.model_buffer.ptr) == 4 * 2400 % 5000
    assert metrics["model_buffer_size"] == 5000


def test_a_run_with_model_rollouts_resumes_exactly(branched_once, tmp_path):
    loop, carry, _ = branched_once
    after, _ = check_exact_resume(loop, carry, tmp_path)
    assert int(after.model_buffer.size) == 2 * 2400


def test_model_fit_every_refits_once_per_that_many_real_steps(tmp_path):
    """With ``model_fit_every`` 500 and Pendulum's 200-step episodes: a fit after the first episode past the random
    steps, none after the second (real step 400: the branches go on through the same model), one after the third
    (600 passes 500); a resumed run refits where the uninterrupted one does."""
    loop = make_loop("svg0", "Pendulum-v1", dataclasses.replace(TINY, model_fit_every=500))
    first, m1 = loop.iteration(loop.init(jax.random.key(5)))
    second, m2 = check_exact_resume(loop, first, tmp_path)
    third, m3 = loop.iteration(second)
    assert [m["model_refit"] for m in (m1, m2, m3)] == [1.0, 0.0, 1.0]
    assert_trees_equal(first.model, second.model)
    assert not all(bool(jnp.all(a == b)) for a, b in zip(jax.tree.leaves(eqx.filter(second.model, eqx.is_array)),
                                                         jax.tree.leaves(eqx.filter(third.model, eqx.is_array))))
    assert int(second.model_buffer.size) == 2 * 2400 and m2["model_branch_length"] == 3.0
    with pytest.raises(ValueError, match="model_fit_every"):
        svg0.Config(model_fit_every=-1)


def test_model_rollouts_off_keep_the_carry_and_key_stream_of_a_plain_run():
    config = ddpg.Config(hidden=(8,), critic_hidden=(16,), batch_size=8, buffer_size=500, learning_starts=150)
    carry = make_loop("ddpg", "Pendulum-v1", config).init(jax.random.key(3))
    assert carry.model is None and carry.model_buffer is None
    np.testing.assert_array_equal(jax.random.key_data(carry.key),
                                  jax.random.key_data(jax.random.split(jax.random.key(3))[1]))


def test_bad_model_rollout_options_raise_clear_errors():
    with pytest.raises(ValueError, match="real_ratio"):
        svg0.Config(real_ratio=1.5)
    with pytest.raises(ValueError, match="model_horizon"):
        svg0.Config(model_horizon=0)
    with pytest.raises(ValueError, match="raise model_buffer_size"):
        make_loop("svg0", "Pendulum-v1", svg0.Config(model_rollouts_per_step=400, model_horizon=5,
                                                     model_buffer_size=100_000))
    from pathwise.algorithms import gumbel
    with pytest.raises(ValueError, match="discrete actions"):
        make_loop("svg0-discrete", "CartPole-v1", gumbel.Config(model_rollouts_per_step=1))
