"""SVG(1)-ER: inferred noises replay the transition, the k = 1 objective, importance weights, the first-update
normalizer fit, the replay loop (behaviour densities, exact resume, compile-once), (slow) Pendulum."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_ddpg import check_compiles_once, check_exact_resume, make_loop
from trees import arrays, same

from pathwise import algorithms, loops, replay
from pathwise import spec as spec_mod
from pathwise.algorithms import svg1
from pathwise.loops.replay import ReplayItem
from pathwise.models import Normalizer
from pathwise.networks import soft_update
from pathwise.rewards import pendulum_reward
from pathwise.types import Transition

TINY = svg1.Config(hidden=(8,), critic_hidden=(16,), model_hidden=(16,), batch_size=8, buffer_size=1000,
                   learning_starts=200, updates_per_step=0.05)


def spins_past_2(obs):
    """The tests' registered termination: the angular velocity above 2 (row 5 of ``setup``'s batch only)."""
    return obs[2] > 2.0


SPEC = spec_mod.EnvSpec("Pendulum-v1", 3, 1, False, (-2.0,), (2.0,), 200, None, reward=pendulum_reward,
                        terminated=spins_past_2)


@pytest.fixture(scope="module")
def setup():
    state = svg1.init(jax.random.key(0), SPEC, TINY)
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    theta = jax.random.uniform(k1, (6,), minval=-3, maxval=3)
    spin = jnp.clip(jax.random.normal(k2, (6,)), -1.0, 1.0).at[5].set(3.0)
    obs = jnp.stack([jnp.cos(theta), jnp.sin(theta), spin], axis=1)
    action = jax.random.uniform(k3, (6, 1), minval=-1.9, maxval=1.9)
    next_obs = obs + 0.1
    reward = jax.vmap(pendulum_reward)(obs, action, next_obs)
    ends = jax.vmap(spins_past_2)(next_obs)  # the replayed flags agree with the registered rule
    np.testing.assert_array_equal(ends, [False] * 5 + [True])
    batch = Transition(obs, action, reward, next_obs, ends, jnp.zeros(6, bool))
    return state, batch


def filled_buffer(batch, log_probs, capacity=64):
    buffer = replay.init(jax.tree.map(lambda x: x[0], ReplayItem(batch, log_probs)), capacity)
    return replay.add_batch(buffer, ReplayItem(batch, log_probs))


def test_registry_and_info():
    algorithm = algorithms.get("svg1")
    assert algorithm.module is svg1
    assert algorithm.hook("behaviour_log_prob") is svg1.behaviour_log_prob


def test_state_keeps_the_known_reward_as_a_static_field(setup):
    state, batch = setup
    assert state.model.reward_fn is pendulum_reward
    assert not any(leaf is pendulum_reward for leaf in jax.tree.leaves(state))  # not a pytree leaf
    np.testing.assert_allclose(jax.vmap(state.model.reward)(batch.obs, batch.action, batch.next_obs), batch.reward,
                               rtol=1e-6)


def test_inferred_noise_replays_the_transition(setup):
    state, batch = setup
    xi, zeta = svg1.inferred_noise(state.policy, state.model, batch)
    actions = jax.vmap(state.policy.act)(batch.obs, xi)
    np.testing.assert_allclose(actions, batch.action, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(jax.vmap(state.model.step)(batch.obs, actions, zeta), batch.next_obs, atol=1e-4)


def test_actor_loss_is_weighted_reward_plus_discounted_value(setup):
    """At the inferred noise the k = 1 objective is r(s, a) + gamma (1 - d) V(s') on the recorded transition."""
    state, batch = setup
    weights = jnp.array([1.0, 2.0, 0.5, 0.0, 1.0, 3.0])
    loss = svg1.actor_loss(state.policy, state.value, state.model, batch, weights, 0.9)
    j1 = batch.reward + 0.9 * (1.0 - batch.terminated) * jax.vmap(state.value)(batch.next_obs)
    np.testing.assert_allclose(loss, -jnp.sum(weights * j1) / weights.sum(), rtol=1e-4)


def test_actor_gradient_flows_through_model_and_value_but_not_into_them(setup):
    state, batch = setup
    system, weights = jax.lax.stop_gradient(state.model), jnp.ones(6)
    g_pi = eqx.filter_grad(svg1.actor_loss)(state.policy, state.value, system, batch, weights, 0.9)
    assert float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(g_pi))) > 0
    g_v = eqx.filter_grad(lambda v: svg1.actor_loss(state.policy, v, system, batch, weights, 0.9))(state.value)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(g_v))
    g_m = eqx.filter_grad(lambda m: svg1.actor_loss(state.policy, state.value, jax.lax.stop_gradient(m), batch,
                                                    weights, 0.9))(state.model)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(g_m))


def test_mean_penalty_adds_the_squared_pre_squash_mean_and_its_gradient(setup):
    """``mean_penalty`` λ adds λ · mean_b ||μ(s_b)||² to the actor's loss, and to the gradient of the output bias
    (which shifts μ one for one) 2λ · mean_b μ(s_b): descent pulls a mean far in tanh's tail (μ ≈ 10) back."""
    state, batch = setup
    policy = eqx.tree_at(lambda p: p.net.layers[-1].bias, state.policy, jnp.array([10.0]))
    system, weights = jax.lax.stop_gradient(state.model), jnp.ones(6)

    def loss_and_bias_grad(lam):
        loss, grads = eqx.filter_value_and_grad(svg1.actor_loss)(policy, state.value, system, batch, weights, 0.9,
                                                                 lam)
        return float(loss), float(grads.net.layers[-1].bias[0])

    plain, plain_grad = loss_and_bias_grad(0.0)
    penalized, penalized_grad = loss_and_bias_grad(1e-2)
    means = jax.vmap(lambda o: policy.mean_and_log_std(o)[0])(batch.obs)
    assert float(means.min()) > 5
    np.testing.assert_allclose(penalized - plain, 1e-2 * float(jnp.mean(jnp.sum(means ** 2, axis=-1))), rtol=1e-4)
    np.testing.assert_allclose(penalized_grad - plain_grad, 2e-2 * float(jnp.mean(means)), rtol=1e-4)
    with pytest.raises(ValueError, match="mean_penalty"):
        dataclasses.replace(TINY, mean_penalty=-1.0)


def test_importance_weights_are_truncated_density_ratios(setup):
    state, batch = setup
    log_pi = jax.vmap(lambda o, a: svg1.behaviour_log_prob(state, o, a))(batch.obs, batch.action)
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
    y_model = svg1.model_critic_targets(state.target_value, state.policy, state.model, batch, xi, 0.9)
    np.testing.assert_allclose(y_model, svg1.critic_targets(state.target_value, batch, 0.9), rtol=1e-4, atol=1e-4)
    y_other = svg1.model_critic_targets(state.target_value, state.policy, state.model, batch, xi + 1.0, 0.9)
    assert float(jnp.abs(y_other - y_model).max()) > 1e-4
    np.testing.assert_allclose(y_other[5], pendulum_reward(batch.obs[5], state.policy.act(batch.obs[5], xi[5] + 1.0),
                                                           batch.next_obs[5]), rtol=1e-5)  # terminal: no bootstrap


def fast_spin(obs):
    """A termination on observations for the tests: the angular velocity above 1."""
    return obs[2] > 1.0


def test_imagined_step_ends_where_its_own_next_state_terminates(setup):
    """With a registered termination the k = 1 objective and the model critic target mask V where the *imagined*
    next state terminates, whatever the replayed flag says (before, the replayed flag masked it: an action that
    tipped the imagined state past the limit kept V there, and InvertedPendulum-v5 never balanced)."""
    _, batch = setup
    state = svg1.init(jax.random.key(0), dataclasses.replace(SPEC, terminated=fast_spin), TINY)
    assert state.model.terminal_fn is fast_spin
    spin = jnp.array([0.0, 0.0, 2.0])  # rows 0-2 land past the limit, rows 3-5 not; the replayed flags differ
    batch = batch._replace(next_obs=batch.obs.at[:, 2].set(0.0) + jnp.where(jnp.arange(6)[:, None] < 3, spin, 0.0))
    ends = jnp.array([True, True, True, False, False, False])
    assert not np.array_equal(batch.terminated, ends)
    weights = jnp.ones(6)
    loss = svg1.actor_loss(state.policy, state.value, state.model, batch, weights, 0.9)
    j1 = jax.vmap(state.model.reward)(batch.obs, batch.action, batch.next_obs) + \
        0.9 * (1.0 - ends) * jax.vmap(state.value)(batch.next_obs)
    np.testing.assert_allclose(loss, -j1.mean(), rtol=1e-4)
    xi, _ = svg1.inferred_noise(state.policy, state.model, batch)
    y = svg1.model_critic_targets(state.target_value, state.policy, state.model, batch, xi, 0.9)
    np.testing.assert_allclose(y, j1, rtol=1e-4, atol=1e-4)  # V' = V at init: the replay target, masked alike


def test_policy_delay_and_model_target(setup):
    """With policy_delay = 2 the actor steps on every second update only; model and critic step every time."""
    state, batch = setup
    cfg = dataclasses.replace(TINY, critic_target="model", batch_size=4, policy_delay=2)
    buffer = filled_buffer(batch, jnp.zeros(6))
    state = state._replace(model=eqx.tree_at(lambda s: s.model, state.model,
                                             svg1.fit_normalizers(state.model.model, buffer)))
    step = jax.jit(lambda s: svg1.update(s, buffer, jax.random.key(3), cfg))
    off, m_off = step(state._replace(updates=jnp.int32(2)))  # updates 2 % 2 != 1: no actor step
    on, m_on = step(state._replace(updates=jnp.int32(3)))
    assert same(off.policy, state.policy) and not same(on.policy, state.policy)
    assert same(off.value, on.value) and not same(off.value, state.value)  # the same critic step
    assert same(off.model, on.model) and not same(off.model, state.model)  # the same model step
    assert int(off.updates) == 3 and int(on.updates) == 4
    assert np.isfinite(float(m_on["critic_loss"])) and 0.0 < float(m_on["weight_ess"]) <= 1.0


def test_act_with_target_acts_with_a_polyak_average_of_the_policies(setup):
    state, batch = setup
    buffer = filled_buffer(batch, jnp.zeros(6))
    obs, key = batch.obs[0], jax.random.key(0)
    acting = {}
    for with_target in (True, False):
        cfg = dataclasses.replace(TINY, batch_size=4, act_with_target=with_target)
        new, _ = jax.jit(lambda s: svg1.update(s, buffer, jax.random.key(3), cfg))(state)
        want = soft_update(state.acting_policy, new.policy, cfg.tau) if with_target else new.policy
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), arrays(new.acting_policy),
                     arrays(want))
        np.testing.assert_allclose(svg1.act(new, obs, key, True), want(obs).mode(), rtol=1e-6)
        sample = new.policy.act(obs, jax.random.normal(key, (1,), obs.dtype))
        np.testing.assert_array_equal(svg1.act(new, obs, key, False), sample)  # exploration: the latest policy
        acting[with_target] = new.acting_policy
    assert same(acting[False], new.policy) and not same(acting[True], new.policy)  # the average lags the policy


def test_actor_learning_rate_decays_to_its_final_fraction(setup):
    state, batch = setup
    buffer = filled_buffer(batch, jnp.zeros(6))
    cfg = dataclasses.replace(TINY, batch_size=4, actor_lr_decay_steps=2, actor_lr_final_fraction=0.0)
    state = svg1.init(jax.random.key(0), SPEC, cfg)
    step = jax.jit(lambda s, k: svg1.update(s, buffer, k, cfg)[0])
    for i in range(2):
        before, state = state, step(state, jax.random.key(i))
        assert not same(before.policy, state.policy)  # a step while the rate is above 0
    after = step(state, jax.random.key(9))  # past the decay: the rate is 0, the value still learns
    assert same(after.policy, state.policy) and not same(after.value, state.value)
    with pytest.raises(ValueError, match="actor_lr_final_fraction"):
        dataclasses.replace(TINY, actor_lr_final_fraction=1.5)


def test_first_update_fits_the_normalizers_once_and_pretrains(setup):
    state, batch = setup
    buffer = filled_buffer(batch, jnp.zeros(6))
    update = eqx.filter_jit(svg1.update)
    first, _ = update(state, buffer, jax.random.key(0), TINY)
    t = buffer.storage.transition
    np.testing.assert_allclose(first.model.model.in_norm.mean,
                               jnp.concatenate([t.obs, t.action], -1)[:6].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first.model.model.out_norm.std, jnp.maximum((t.next_obs - t.obs)[:6].std(0), 1e-6),
                               rtol=1e-4)
    later = filled_buffer(jax.tree.map(lambda x: x * 2 if x.dtype == jnp.float32 else x, batch), jnp.zeros(6))
    second, _ = update(first, later, jax.random.key(1), TINY)  # other data: the normalizers stay
    assert same(second.model.model.in_norm, first.model.model.in_norm)
    pretrained = svg1.first_update(state, buffer, jax.random.key(0), dataclasses.replace(TINY, model_pretrain_steps=3))
    np.testing.assert_allclose(pretrained.model.model.in_norm.std, first.model.model.in_norm.std, rtol=1e-5)
    assert not same(pretrained.model.model.nets, state.model.model.nets) and int(pretrained.updates) == 0


def test_normalizers_are_masked_buffer_statistics(setup):
    x = jnp.concatenate([jnp.arange(8.0).reshape(4, 2), 100 * jnp.ones((3, 2))])
    norm = Normalizer.from_data(x, count=jnp.asarray(4))
    np.testing.assert_allclose(norm.mean, np.arange(8.0).reshape(4, 2).mean(0))
    np.testing.assert_allclose(norm.std, np.arange(8.0).reshape(4, 2).std(0), rtol=1e-6)
    _, batch = setup  # the learned heads' normalizers too: over the 6 filled rows of a 64-row buffer
    spec = dataclasses.replace(SPEC, reward=None, terminated=None)
    dynamics = svg1.init(jax.random.key(0), spec, TINY).model.model
    model = svg1.fit_normalizers(dynamics, filled_buffer(batch, jnp.zeros(6)))
    np.testing.assert_allclose(model.reward_head.out_norm.mean, [batch.reward.mean()], rtol=1e-5)
    np.testing.assert_allclose(model.termination_head.in_norm.std, batch.next_obs.std(0), rtol=1e-4)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="critic_target"):
        dataclasses.replace(TINY, critic_target="td")
    with pytest.raises(ValueError, match="policy_delay"):
        dataclasses.replace(TINY, policy_delay=0)
    with pytest.raises(ValueError, match="model_pretrain_steps"):
        dataclasses.replace(TINY, model_pretrain_steps=-1)
    with pytest.raises(ValueError, match="log_std_min"):
        dataclasses.replace(TINY, log_std_min=10.0)
    with pytest.raises(ValueError, match="n_critics=2: svg1 learns one state value V"):  # it would be ignored
        dataclasses.replace(TINY, n_critics=2)


def test_learns_a_reward_none_registers_and_needs_box_actions():
    no_reward = dataclasses.replace(SPEC, reward=None)
    loops.check(algorithms.get("svg1"), no_reward, "replay")  # no refusal: the model learns it
    state = svg1.init(jax.random.key(0), no_reward, TINY)
    assert state.model.reward_fn is None and state.model.reward_model is state.model.model.reward_head
    assert state.model.terminal_fn is SPEC.terminated and state.model.termination_model is None  # registered
    with pytest.raises(ValueError, match="reward_source='known' but no reward"):
        svg1.init(jax.random.key(0), no_reward, dataclasses.replace(TINY, reward_source="known"))
    with pytest.raises(ValueError, match="continuous"):
        make_loop("svg1", "CartPole-v1", TINY)


def pendulum_transitions(key, n):
    """``n`` Pendulum-v1 transitions of random states and actions, terminated where the velocity exceeds 4."""
    from pathwise.systems import Pendulum

    system = Pendulum()
    k1, k2, k3 = jax.random.split(key, 3)
    states = jnp.stack([jax.random.uniform(k1, (n,), minval=-np.pi, maxval=np.pi),
                        jax.random.uniform(k2, (n,), minval=-8.0, maxval=8.0)], axis=1)
    actions = jax.random.uniform(k3, (n, 1), minval=-2.0, maxval=2.0)
    nexts = jax.vmap(system.dynamics)(states, actions)
    obs, next_obs = jax.vmap(system.observe)(states), jax.vmap(system.observe)(nexts)
    reward = jax.vmap(pendulum_reward)(obs, actions, next_obs)
    return Transition(obs, actions, reward, next_obs, jnp.abs(next_obs[:, 2]) > 4.0, jnp.zeros(n, bool))


def test_learned_reward_and_termination_heads_fit_the_replayed_data():
    """With nothing registered, svg1's model learns the reward and the termination from replayed transitions in
    its own update steps: after 1,000 updates the heads' held-out errors are a few percent (the reward's RMS error
    under 10% of its std, the termination right on at least 95% of the transitions), and the System the actor
    differentiates holds the same trained heads as the dynamics model."""
    spec = dataclasses.replace(SPEC, reward=None, terminated=None)
    cfg = dataclasses.replace(TINY, model_hidden=(64, 64), batch_size=128, model_lr=3e-3)
    data = pendulum_transitions(jax.random.key(3), 4096)
    buffer = filled_buffer(data, jnp.zeros(4096), capacity=4096)
    state = svg1.init(jax.random.key(0), spec, cfg)
    assert state.model.reward_fn is None and state.model.terminal_fn is None

    @jax.jit
    def train(state):
        return jax.lax.fori_loop(0, 1000, lambda i, s: svg1.update(s, buffer, jax.random.key(i), cfg)[0], state)

    state = train(state)
    heads = state.model.model
    assert same(state.model.reward_model, heads.reward_head) and same(state.model.termination_model,
                                                                       heads.termination_head)
    held = pendulum_transitions(jax.random.key(4), 2048)
    predicted = jax.vmap(state.model.reward)(held.obs, held.action, held.next_obs)
    assert float(jnp.sqrt(jnp.mean((predicted - held.reward) ** 2))) < 0.1 * float(held.reward.std())
    ends = jax.vmap(state.model.terminated)(held.next_obs)
    assert float(jnp.mean(ends == held.terminated)) >= 0.95 and 0.1 < float(held.terminated.mean()) < 0.9


@pytest.fixture(scope="module")
def two_iterations():
    """The loop with a 300-step warm-up: episode 1 random, episode 2 random for 100 steps, then the policy's."""
    loop = make_loop("svg1", "Pendulum-v1", dataclasses.replace(TINY, learning_starts=300))
    carry1, m1 = loop.iteration(loop.init(jax.random.key(0)))
    carry2, m2 = loop.iteration(carry1)
    return loop, carry1, carry2, (m1, m2)


def test_loop_stores_uniform_then_policy_densities(two_iterations):
    _, carry1, carry2, (m1, m2) = two_iterations
    assert m1["updates"] == 0 and m2["updates"] == 10 and int(carry2.env_steps) == 400
    stored = carry2.buffer.storage
    np.testing.assert_allclose(stored.behaviour_log_prob[:300], -np.log(4.0), rtol=1e-6)
    t = stored.transition
    acted = jax.vmap(lambda o, a: svg1.behaviour_log_prob(carry1.algo, o, a))(t.obs[300:400], t.action[300:400])
    np.testing.assert_allclose(stored.behaviour_log_prob[300:400], acted, rtol=1e-5, atol=1e-5)


def test_loop_fits_normalizers_resumes_exactly_and_compiles_once(two_iterations, tmp_path, compilations):
    loop, _, carry, _ = two_iterations
    assert int(carry.algo.updates) == 10
    assert float(jnp.abs(carry.algo.model.model.in_norm.mean).sum()) > 0  # fitted at the first update
    after, m = check_exact_resume(loop, carry, tmp_path)
    assert int(after.env_steps) == 600 and m["updates"] == 10 and np.isfinite(m["actor_loss"])
    check_compiles_once(loop, after, compilations)
    obs = jnp.ones(3)
    assert svg1.act(after.algo, obs, jax.random.key(0), False).shape == (1,)
    np.testing.assert_array_equal(svg1.act(after.algo, obs, jax.random.key(0), True),
                                  svg1.act(after.algo, obs, jax.random.key(1), True))


def test_loop_with_learned_reward_and_termination_resumes_exactly(tmp_path):
    """The heads and their optimizer state go through a checkpoint by key path and resume to the same carry."""
    cfg = dataclasses.replace(TINY, learning_starts=300, reward_source="learned", termination_source="learned")
    loop = make_loop("svg1", "Pendulum-v1", cfg)
    carry, _ = loop.iteration(loop.iteration(loop.init(jax.random.key(0)))[0])
    assert carry.algo.model.reward_fn is None and carry.algo.model.terminal_fn is None
    after, m = check_exact_resume(loop, carry, tmp_path)
    assert int(after.env_steps) == 600 and np.isfinite(m["model_loss"]) and np.isfinite(m["actor_loss"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svg1_swings_up_pendulum_within_5000_steps(seed):
    from pathwise.train import train

    # the shipped preset (model critic target, 4 updates per step); stop at the first evaluation that passes
    _, summary = train("svg1", "Pendulum-v1", 5000, seed=seed, eval_every=200, quiet=True,
                       callback=lambda info: info.get("eval_return_mean", -np.inf) < -200)
    assert summary["steps_to_solve"] is not None, summary
