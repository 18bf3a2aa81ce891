"""SVG(1)-ER: inferred noises replay the transition, the k = 1 objective, importance weights, the learner."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import replay
from pathwise.algorithms import svg1
from pathwise.models import LearnedModel
from pathwise.rewards import pendulum_reward
from pathwise.types import Transition

TINY = svg1.SVG1Config(hidden=(8,), critic_hidden=(16,), model_hidden=(16,), batch_size=8, buffer_size=1000,
                       learning_starts=200, updates_per_step=0.05)


@pytest.fixture(scope="module")
def setup():
    state = svg1.init(jax.random.key(0), 3, 1, jnp.array([-2.0]), jnp.array([2.0]), TINY)
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    theta = jax.random.uniform(k1, (6,), minval=-3, maxval=3)
    obs = jnp.stack([jnp.cos(theta), jnp.sin(theta), jax.random.normal(k2, (6,))], axis=1)
    action = jax.random.uniform(k3, (6, 1), minval=-1.9, maxval=1.9)
    next_obs = obs + 0.1
    reward = jax.vmap(pendulum_reward)(obs, action, next_obs)
    batch = Transition(obs, action, reward, next_obs, jnp.array([False] * 5 + [True]), jnp.zeros(6, bool))
    return state, batch


def test_inferred_noise_replays_the_transition(setup):
    state, batch = setup
    xi, zeta = svg1.inferred_noise(state.policy, state.model, batch)
    actions = jax.vmap(state.policy.act)(batch.obs, xi)
    np.testing.assert_allclose(actions, batch.action, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(jax.vmap(state.model)(batch.obs, actions) + zeta, batch.next_obs, atol=1e-4)


def test_actor_loss_is_weighted_reward_plus_discounted_value(setup):
    """At the inferred noise the k = 1 objective is r(s, a) + gamma (1 - d) V(s') on the recorded transition."""
    state, batch = setup
    system = LearnedModel(state.model, pendulum_reward, action_low=[-2.0], action_high=[2.0])
    weights = jnp.array([1.0, 2.0, 0.5, 0.0, 1.0, 3.0])
    loss = svg1.actor_loss(state.policy, state.value, system, batch, weights, 0.9)
    j1 = batch.reward + 0.9 * (1.0 - batch.terminated) * jax.vmap(state.value)(batch.next_obs)
    np.testing.assert_allclose(loss, -jnp.sum(weights * j1) / weights.sum(), rtol=1e-4)


def test_actor_gradient_flows_through_model_and_value_but_not_into_them(setup):
    state, batch = setup
    system = LearnedModel(state.model, pendulum_reward, action_low=[-2.0], action_high=[2.0])
    weights = jnp.ones(6)
    g_pi = eqx.filter_grad(svg1.actor_loss)(state.policy, state.value, system, batch, weights, 0.9)
    assert float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(g_pi))) > 0
    g_v = eqx.filter_grad(lambda v: svg1.actor_loss(state.policy, v, system, batch, weights, 0.9))(state.value)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(g_v))


def test_importance_weights_are_truncated_density_ratios(setup):
    state, batch = setup
    log_pi = jax.vmap(lambda o, a: state.policy(o).log_prob(a))(batch.obs, batch.action)
    behaviour = log_pi - jnp.log(jnp.array([1.0, 2.0, 10.0, 0.5, 1.0, 1.0]))  # ratios 1, 2, 10, 0.5, 1, 1
    w = svg1.importance_weights(state.policy, batch.obs, batch.action, behaviour, 5.0)
    np.testing.assert_allclose(w, [1.0, 2.0, 5.0, 0.5, 1.0, 1.0], rtol=1e-5)


def test_critic_target_does_not_bootstrap_past_terminal(setup):
    state, batch = setup
    y = svg1.critic_targets(state.target_value, batch, 0.9)
    v = jax.vmap(state.target_value)(batch.next_obs)
    np.testing.assert_allclose(y[:5], batch.reward[:5] + 0.9 * v[:5], rtol=1e-6)
    np.testing.assert_allclose(y[5], batch.reward[5], rtol=1e-6)


def test_model_critic_target_replays_the_transition_at_the_inferred_noise(setup):
    """At xi = pi^{-1}(s, a_old) the one-model-step target is the replay target; another xi moves it."""
    state, batch = setup
    xi, _ = svg1.inferred_noise(state.policy, state.model, batch)
    y_model = svg1.model_critic_targets(state.target_value, state.policy, state.model, pendulum_reward, batch, xi, 0.9)
    np.testing.assert_allclose(y_model, svg1.critic_targets(state.target_value, batch, 0.9), rtol=1e-4, atol=1e-4)
    y_other = svg1.model_critic_targets(state.target_value, state.policy, state.model, pendulum_reward, batch,
                                        xi + 1.0, 0.9)
    assert float(jnp.abs(y_other - y_model).max()) > 1e-4
    np.testing.assert_allclose(y_other[5], pendulum_reward(batch.obs[5], state.policy.act(batch.obs[5], xi[5] + 1.0),
                                                           batch.next_obs[5]), rtol=1e-5)  # terminal: no bootstrap


def test_update_step_actor_delay_and_model_target(setup):
    state, batch = setup
    cfg = dataclasses.replace(TINY, critic_target="model", batch_size=4)
    buffer = replay.add_batch(state.buffer, svg1.SVG1Item(batch, jnp.zeros(6)), jnp.asarray(6))
    state = state._replace(buffer=buffer, model=svg1.fit_normalizers(state.model, buffer))
    step = jax.jit(lambda s, on: svg1.update_step(s, jax.random.key(3), pendulum_reward, cfg, on))
    off, m_off = step(state, False)
    on, m_on = step(state, True)
    leaves = lambda m: jax.tree.leaves(eqx.filter(m, eqx.is_array))
    assert all(np.array_equal(x, y) for x, y in zip(leaves(off.policy), leaves(state.policy)))
    assert not all(np.array_equal(x, y) for x, y in zip(leaves(on.policy), leaves(state.policy)))
    assert all(np.array_equal(x, y) for x, y in zip(leaves(off.value), leaves(on.value)))  # same critic step
    assert np.isfinite(float(m_on["critic_loss"])) and 0.0 < float(m_on["weight_ess"]) <= 1.0


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="critic_target"):
        svg1.SVG1("Pendulum-v1", dataclasses.replace(TINY, critic_target="td"))
    with pytest.raises(ValueError, match="policy_delay"):
        svg1.SVG1("Pendulum-v1", dataclasses.replace(TINY, policy_delay=0))


def test_behaviour_log_probs_uniform_during_warmup(setup):
    state, batch = setup
    state = state._replace(env_steps=jnp.asarray(197, jnp.int32))  # rows 0..2 are random (learning_starts=200)
    lp = svg1.behaviour_log_probs(state, batch, TINY)
    np.testing.assert_allclose(lp[:3], -np.log(4.0), rtol=1e-6)
    np.testing.assert_allclose(lp[3:], jax.vmap(lambda o, a: state.policy(o).log_prob(a))(batch.obs[3:],
                                                                                       batch.action[3:]), rtol=1e-6)


def test_normalizers_are_masked_buffer_statistics():
    x = jnp.concatenate([jnp.arange(8.0).reshape(4, 2), 100 * jnp.ones((3, 2))])
    norm = svg1.masked_normalizer(x, jnp.asarray(4))
    np.testing.assert_allclose(norm.mean, np.arange(8.0).reshape(4, 2).mean(0))
    np.testing.assert_allclose(norm.std, np.arange(8.0).reshape(4, 2).std(0), rtol=1e-6)


def test_learner_api_compile_once_and_resume():
    a = svg1.SVG1("Pendulum-v1", TINY, seed=0)
    a.train_iteration()  # warm-up episode: normalizers fitted, 10 updates
    traces = svg1.TRACE_COUNT["learn"]
    m = a.train_iteration()
    assert svg1.TRACE_COUNT["learn"] == traces
    assert a.env_steps == 400 and m["updates"] == 10 and np.isfinite(m["actor_loss"])
    assert float(jnp.abs(a.state.model.in_norm.mean).sum()) > 0  # normalizers were fitted
    b = svg1.SVG1("Pendulum-v1", TINY, seed=5)
    b.set_state(jax.tree.map(lambda x: x, a.get_state()))
    ma, mb = a.train_iteration(), b.train_iteration()
    assert ma == mb and a.env_steps == b.env_steps == 600
    np.testing.assert_array_equal(a.act(np.ones(3, np.float32)), b.act(np.ones(3, np.float32)))
    assert a.act(np.ones(3, np.float32), deterministic=False).shape == (1,)


def test_needs_a_known_reward_and_box_actions():
    with pytest.raises(ValueError, match="reward"):
        svg1.SVG1("LunarLanderContinuous-v3", TINY)
    with pytest.raises(ValueError, match="continuous"):
        svg1.SVG1("CartPole-v1", TINY)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svg1_swings_up_pendulum_within_5000_steps(seed):
    from pathwise.envs import evaluate
    from pathwise.train import build_config

    # The shipped preset (model critic target, 4 updates per step) reached -200 at 1,600 / 1,600 / 2,200 steps
    # on seeds 0 / 1 / 2 when it was tuned; stop at the first evaluation (every 200 steps) that passes.
    config, _ = build_config(svg1.SVG1, "Pendulum-v1")
    learner = svg1.SVG1("Pendulum-v1", config, seed=seed)
    best = -np.inf
    while learner.env_steps < 5000 and best < -200:
        learner.train_iteration()
        if learner.env_steps >= 1000:
            best = max(best, evaluate(lambda o: learner.act(o), "Pendulum-v1", episodes=10, seed=1000).mean)
    assert best >= -200.0, f"seed {seed}: best evaluation {best:.0f} after {learner.env_steps} steps"
