"""QAC: n-step SARSA targets against a loop, the actor weights and critic loss in closed form, the on-policy loop
(segments of n_steps, compile once, exact resume through a checkpoint), configs, and (slow) CartPole."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_reinforce import make_loop, through_checkpoint
from trees import assert_trees_equal

from pathwise import loops
from pathwise import spec as spec_mod
from pathwise.algorithms import get, qac
from pathwise.loops.on_policy import Segment

TINY = qac.Config(num_envs=2, n_steps=4, hidden=(8,), critic_hidden=(8,))


def _loop_targets(r, term, trunc, q_next, gamma):
    g = np.zeros_like(r)
    for t in reversed(range(len(r))):
        if term[t]:
            g[t] = r[t]
        elif trunc[t] or t == len(r) - 1:
            g[t] = r[t] + gamma * q_next[t]
        else:
            g[t] = r[t] + gamma * g[t + 1]
    return g


@pytest.mark.parametrize("case", ["running", "terminated", "truncated"])
def test_sarsa_targets_match_loop(case):
    rng = np.random.default_rng(1)
    r, q_next = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    term, trunc = np.zeros(5, np.float32), np.zeros(5, np.float32)
    if case == "terminated":
        term[2] = 1
    if case == "truncated":
        trunc[2] = 1
    got = qac.sarsa_targets(*map(jnp.asarray, (r, term, trunc, q_next)), 0.9)
    want = _loop_targets(r, term, trunc, q_next, 0.9)
    np.testing.assert_allclose(got[:3], want[:3], rtol=1e-5)  # steps after an episode's end are padding
    if case == "running":
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_one_step_target_is_the_lecture_delta():
    """n = 1: G = r + γ Q(s', a') unless terminated."""
    g = qac.sarsa_targets(jnp.array([2.0]), jnp.array([0.0]), jnp.array([0.0]), jnp.array([5.0]), 0.5)
    assert float(g[0]) == pytest.approx(4.5)
    g = qac.sarsa_targets(jnp.array([2.0]), jnp.array([1.0]), jnp.array([0.0]), jnp.array([5.0]), 0.5)
    assert float(g[0]) == pytest.approx(2.0)


def test_critic_loss_is_mean_squared_td_error():
    critic = qac.DiscreteQ(3, 2, (4,), key=jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (2, 3, 3))
    actions = jnp.array([[0, 1, 1], [1, 0, 0]])
    targets = jnp.arange(6.0).reshape(2, 3)
    mask = jnp.array([[1.0, 1, 1], [1, 1, 0]])
    q = np.array([[critic(obs[i, j])[actions[i, j]] for j in range(3)] for i in range(2)])
    want = np.sum(np.asarray(mask) * (q - np.asarray(targets)) ** 2) / 5
    assert float(qac.critic_loss(critic, obs, actions, targets, mask)) == pytest.approx(want, rel=1e-5)


def _random_segment(n=3, m=2, obs_dim=4):
    k = jax.random.split(jax.random.key(7), 3)
    obs = jax.random.normal(k[0], (n, m, obs_dim))
    actions, next_obs = jax.random.randint(k[1], (n, m), 0, 2), jax.random.normal(k[2], (n, m, obs_dim))
    return Segment(obs, actions, jnp.ones((n, m)), next_obs, jnp.zeros((n, m)), jnp.zeros((n, m)), jnp.ones((n, m)))


@pytest.mark.parametrize("advantage", ["q", "q_minus_v", "td"])
def test_actor_weights_in_closed_form(advantage):
    """Q(s,a); Q(s,a) − Σ_b π(b|s) Q(s,b); G − Σ_b π(b|s) Q(s,b), at every step of the segment."""
    config = dataclasses.replace(TINY, advantage=advantage)
    state = qac.init(jax.random.key(0), spec_mod.from_env("CartPole-v1"), config)
    seg = _random_segment()
    targets = jnp.arange(6.0).reshape(3, 2)
    got = qac.actor_weights(state, seg, targets, config)
    for t in range(3):
        for i in range(2):
            q = state.critic(seg.obs[t, i])
            v = jnp.sum(state.policy(seg.obs[t, i]).probs * q)
            q_sa = q[seg.actions[t, i]]
            want = {"q": q_sa, "q_minus_v": q_sa - v, "td": targets[t, i] - v}[advantage]
            assert float(got[t, i]) == pytest.approx(float(want), rel=1e-5, abs=1e-6)


def test_segment_targets_bootstrap_with_the_policys_next_action():
    """With a near-deterministic policy a' is its mode, so a one-step target is r + γ Q(s', mode)."""
    config = dataclasses.replace(TINY, gamma=0.9)
    state = qac.init(jax.random.key(0), spec_mod.from_env("CartPole-v1"), config)
    sharp = state._replace(policy=jax.tree.map(lambda x: 1e4 * x, state.policy))
    seg = _random_segment(n=1)
    got = qac.segment_targets(sharp, seg, jax.random.key(3), config.gamma)
    for i in range(2):
        mode = sharp.policy(seg.next_obs[0, i]).mode()
        want = 1.0 + 0.9 * sharp.critic(seg.next_obs[0, i])[mode]
        assert float(got[0, i]) == pytest.approx(float(want), rel=1e-5)


def test_clipped_surrogate_equals_the_plain_one_at_the_old_policy_and_stops_past_the_clip():
    """ρ = 1: the clipped loss's gradient equals the plain one's; once the policy has moved an action's probability
    past 1 + ε where its weight is positive (or past 1 − ε where it is negative), that step gives no gradient."""
    policy = qac.CategoricalPolicy(4, 2, (8,), key=jax.random.key(0))
    seg = _random_segment()
    w = jax.random.normal(jax.random.key(5), (3, 2))
    logp = jax.vmap(jax.vmap(lambda o, a: policy(o).log_prob(a)))(seg.obs, seg.actions)
    lp, gp = jax.value_and_grad(qac.actor_loss)(policy, seg.obs, seg.actions, w, seg.mask, 0.01)
    lc, gc = jax.value_and_grad(qac.actor_loss)(policy, seg.obs, seg.actions, w, seg.mask, 0.01, logp, 0.2)
    assert float(lc - lp) == pytest.approx(float(jnp.sum(logp * w - w)) / 6, rel=1e-4)
    for x, y in zip(jax.tree.leaves(gp), jax.tree.leaves(gc)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-7)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(gp))
    # old log-probs 0.5 lower: ρ = e^0.5 > 1.2 at every step, so positive weights give no gradient; with
    # negative weights the unclipped term is the smaller one and the gradient comes back
    for sign, zero in ((1.0, True), (-1.0, False)):
        g = jax.grad(qac.actor_loss)(policy, seg.obs, seg.actions, sign * jnp.abs(w), seg.mask, 0.0, logp - 0.5, 0.2)
        assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree.leaves(g)) == zero


def test_normalized_weights_have_zero_mean_and_unit_variance_on_real_steps():
    config = dataclasses.replace(TINY, normalize_advantages=True)
    state = qac.init(jax.random.key(0), spec_mod.from_env("CartPole-v1"), config)
    seg = _random_segment()._replace(mask=jnp.array([[1.0, 1], [1, 1], [1, 0]]))
    w = qac.actor_weights(state, seg, jnp.arange(6.0).reshape(3, 2), config)
    real = np.asarray(w)[np.asarray(seg.mask) > 0]
    assert abs(real.mean()) < 1e-5 and real.std() == pytest.approx(1.0, rel=1e-4)
    assert float(w[2, 1]) == 0.0


def _moved(a, b) -> float:
    return sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_epochs_reuse_the_segment_and_need_a_trust_region():
    config = dataclasses.replace(TINY, epochs=3, clip_ratio=0.2)
    state = qac.init(jax.random.key(0), spec_mod.from_env("CartPole-v1"), config)
    seg = _random_segment()
    three, metrics = qac.update(state, seg, jax.random.key(1), config)
    one, _ = qac.update(state, seg, jax.random.key(1), dataclasses.replace(config, epochs=1))
    assert _moved(three.critic, state.critic) > _moved(one.critic, state.critic) > 0
    assert all(np.isfinite(float(v)) for v in metrics.values())
    with pytest.raises(ValueError, match="set clip_ratio > 0"):
        dataclasses.replace(TINY, epochs=2)


def test_reward_scale_is_the_same_update_as_scaled_rewards():
    """``reward_scale = 0.1`` on rewards r updates exactly as ``reward_scale = 1`` on rewards 0.1·r."""
    config = dataclasses.replace(TINY, reward_scale=0.1)
    state = qac.init(jax.random.key(0), spec_mod.from_env("CartPole-v1"), config)
    seg = _random_segment()._replace(rewards=jnp.arange(6.0).reshape(3, 2))
    scaled, m_scaled = qac.update(state, seg, jax.random.key(1), config)
    by_hand, m_hand = qac.update(state, seg._replace(rewards=0.1 * seg.rewards), jax.random.key(1),
                                 dataclasses.replace(config, reward_scale=1.0))
    _, m_unscaled = qac.update(state, seg, jax.random.key(1), dataclasses.replace(config, reward_scale=1.0))
    assert float(m_scaled["target_mean"]) == pytest.approx(float(m_hand["target_mean"]), rel=1e-6)
    assert float(m_unscaled["target_mean"]) > 5 * float(m_scaled["target_mean"]) > 0
    assert _moved(scaled.critic, by_hand.critic) < 1e-12 and _moved(scaled.policy, by_hand.policy) < 1e-12


@pytest.fixture(scope="module")
def cartpole():
    loop, carry = make_loop("qac", "CartPole-v1", TINY, seed=2)
    carry, metrics = loop.iteration(carry)
    return loop, carry, metrics


def test_tiny_run_compiles_once(cartpole, compilations):
    loop, carry, first = cartpole
    assert loop.segment_length == 4  # an update every n_steps lockstep steps
    assert all(np.isfinite(v) for v in first.values())
    assert set(first) >= {"actor_loss", "critic_loss", "target_mean", "episode_return"}
    assert int(carry.env_steps) == pytest.approx(2 * first["episode_return"])
    with compilations() as n:
        loop.iteration(carry)
    assert n[0] == 0


def test_resume_through_a_checkpoint_is_exact(cartpole, tmp_path):
    loop, carry, _ = cartpole
    restored = through_checkpoint(carry, loop.init(jax.random.key(99)), tmp_path)
    a, ma = loop.iteration(carry)
    b, mb = loop.iteration(restored)
    assert ma == mb
    assert_trees_equal(a, b)


def test_act_is_an_integer_index(cartpole):
    _, carry, _ = cartpole
    for deterministic in (True, False):
        a = qac.act(carry.algo, jnp.zeros(4), jax.random.key(0), deterministic)
        assert a.shape == () and jnp.issubdtype(a.dtype, jnp.integer) and int(a) in (0, 1)


@pytest.mark.parametrize("advantage", ["q", "q_minus_v"])
def test_other_advantages_run(advantage):
    loop, carry = make_loop("qac", "CartPole-v1", dataclasses.replace(TINY, advantage=advantage))
    assert np.isfinite(loop.iteration(carry)[1]["actor_loss"])


def test_bad_input_errors():
    with pytest.raises(ValueError, match="qac needs discrete actions"):
        loops.make(get("qac"), spec_mod.from_env("Pendulum-v1"), TINY)
    with pytest.raises(ValueError, match="advantage='v' must be one of"):
        dataclasses.replace(TINY, advantage="v")
    with pytest.raises(ValueError, match="n_steps=0 must be >= 1"):
        dataclasses.replace(TINY, n_steps=0)


@pytest.mark.slow
def test_qac_solves_cartpole():
    """The shipped preset reaches 475 (10 evaluation episodes) within 100k steps."""
    from pathwise.train import train

    solved = lambda info: info.get("eval_return_mean", 0.0) < 475  # noqa: E731  (False stops training)
    _, summary = train("qac", "CartPole-v1", 100_000, seed=0, eval_every=2500, quiet=True, callback=solved)
    assert summary["steps_to_solve"] is not None, summary
