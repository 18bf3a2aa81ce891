"""Gumbel-softmax SVG(0): the relaxation, the expected SARSA target, the learner contract, (slow) CartPole."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise.algorithms import gumbel as gb

TINY = gb.Config(hidden=(8,), critic_hidden=(8,), batch_size=8, buffer_size=2000, learning_starts=20)


def test_gumbel_max_samples_follow_the_policy():
    """Frequencies of argmax(logits + ε) match softmax(logits) within 5 standard errors."""
    actor = gb.CategoricalPolicy(2, 3, (8,), key=jax.random.key(0))
    actor = jax.tree.map(lambda x: 20 * x, actor)
    obs, n = jnp.array([0.5, -0.2]), 20000
    eps = jax.random.gumbel(jax.random.key(1), (n, 3))
    freq = np.asarray(jax.vmap(lambda e: gb.sample_one_hot(actor, obs, e))(eps).mean(0))
    p = np.asarray(jax.nn.softmax(actor(obs).logits))
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n))
    assert p.min() < 0.3  # a non-uniform policy, so the check has teeth


def test_straight_through_actor_gradient_points_uphill_on_a_bandit():
    """Q(s, y) = w·y: the Monte Carlo ST gradient has cosine > 0.9 with the exact ∇ Σ_a π(a) w_a."""
    logits, w = jnp.array([0.5, -0.3, 0.1]), jnp.array([1.0, -1.0, 0.3])
    eps = jax.random.gumbel(jax.random.key(2), (4000, 3))
    st = jax.vmap(jax.grad(lambda l, e: gb.gumbel_softmax(e, l, 1.0, True) @ w), (None, 0))(logits, eps).mean(0)
    exact = jax.grad(lambda l: jax.nn.softmax(l) @ w)(logits)
    cos = float(st @ exact / jnp.linalg.norm(st) / jnp.linalg.norm(exact))
    assert cos > 0.9


def test_expected_sarsa_target_matches_a_loop():
    actor = gb.CategoricalPolicy(3, 2, (4,), key=jax.random.key(0))
    critics = gb.make_critics(jax.random.key(1), 3, 2, TINY)
    k = jax.random.split(jax.random.key(2), 2)
    batch = gb.Transition(jnp.zeros((4, 3)), jnp.eye(2)[jnp.array([0, 1, 1, 0])],
                          jnp.arange(4.0), jax.random.normal(k[0], (4, 3)),
                          jnp.array([False, True, False, False]), jnp.array([False, False, True, False]))
    got = gb.expected_sarsa_target(actor, critics, batch, 0.9)
    for b in range(4):
        s = batch.next_obs[b]
        p = jax.nn.softmax(actor(s).logits)
        q = [min(float(c(s, jnp.eye(2)[a])) for c in [jax.tree.map(lambda x: x[i], critics) for i in range(2)])
             for a in range(2)]
        want = float(batch.reward[b]) + (0.0 if batch.terminated[b] else 0.9 * float(p @ jnp.array(q)))
        assert float(got[b]) == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def learner():
    return gb.GumbelSVG0("CartPole-v1", TINY, seed=1)


def test_tiny_run_compiles_once(learner):
    while learner.env_steps < TINY.learning_starts:
        learner.train_iteration()
    m = learner.train_iteration()
    assert m["updates"] == m["episode_length"] > 0
    assert all(np.isfinite(v) for v in m.values())
    size = gb.learn._cache_size()
    learner.train_iteration()
    assert gb.learn._cache_size() == size


def test_get_set_state_roundtrip_is_exact(learner):
    saved = learner.get_state()
    m1 = learner.train_iteration()
    leaves1 = jax.tree.leaves(learner.get_state().actor)
    learner.set_state(saved)
    m2 = learner.train_iteration()
    assert m1 == m2
    for a, b in zip(leaves1, jax.tree.leaves(learner.get_state().actor)):
        np.testing.assert_array_equal(a, b)


def test_act_returns_valid_actions(learner):
    obs = np.zeros(4, np.float32)
    assert learner.act(obs) in (0, 1) and learner.act(obs, deterministic=False) in (0, 1)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="needs a Discrete action space"):
        gb.GumbelSVG0("Pendulum-v1", TINY)
    with pytest.raises(ValueError, match="temperature=0.0 must be > 0"):
        gb.GumbelSVG0("CartPole-v1", dataclasses.replace(TINY, temperature=0.0))


@pytest.mark.slow
def test_gumbel_svg0_solves_cartpole():
    from test_reinforce import evaluate_mean

    learner = gb.GumbelSVG0("CartPole-v1", seed=0)
    best = 0.0
    while learner.env_steps < 100_000 and best < 475:
        if learner.train_iteration()["episode_return"] > 300:
            best = max(best, evaluate_mean(learner))
    assert best >= 475
