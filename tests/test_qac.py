"""QAC: n-step SARSA targets against a loop, the learner contract, and (slow) CartPole."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise.algorithms import qac

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


@pytest.fixture(scope="module")
def learner():
    return qac.QAC("CartPole-v1", TINY, seed=2)


def test_tiny_run_compiles_once(learner):
    m = learner.train_iteration()
    assert all(np.isfinite(v) for v in m.values())
    assert learner.env_steps == pytest.approx(2 * m["episode_return"])
    size = qac.update_jit._cache_size()
    learner.train_iteration()
    assert qac.update_jit._cache_size() == size


def test_get_set_state_roundtrip_is_exact(learner):
    saved = learner.get_state()
    m1 = learner.train_iteration()
    p1 = jax.tree.leaves(learner.get_state())
    learner.set_state(saved)
    m2 = learner.train_iteration()
    assert m1 == m2
    for a, b in zip(p1, jax.tree.leaves(learner.get_state())):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("advantage", ["q", "q_minus_v"])
def test_other_advantages_run(advantage):
    learner = qac.QAC("CartPole-v1", dataclasses.replace(TINY, advantage=advantage), seed=0)
    assert np.isfinite(learner.train_iteration()["actor_loss"])


def test_bad_input_errors():
    with pytest.raises(ValueError, match="qac needs a Discrete action space"):
        qac.QAC("Pendulum-v1", TINY)
    with pytest.raises(ValueError, match="Unknown advantage 'v'"):
        qac.QAC("CartPole-v1", dataclasses.replace(TINY, advantage="v"))
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        qac.QAC("CartPole-v1", dataclasses.replace(TINY, n_steps=0))


@pytest.mark.slow
def test_qac_solves_cartpole():
    from test_reinforce import evaluate_mean

    learner = qac.QAC("CartPole-v1", seed=0)
    best = 0.0
    while learner.env_steps < 300_000 and best < 475:
        if learner.train_iteration()["episode_return"] > 300:
            best = max(best, evaluate_mean(learner))
    assert best >= 475
