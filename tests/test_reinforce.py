"""REINFORCE: the estimator against closed forms, the learner contract, and (slow) CartPole."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise.algorithms import reinforce as rf

TINY = rf.Config(num_envs=2, hidden=(8,), value_hidden=(8,), value_steps=2)


def test_reward_to_go_matches_loop_with_truncation_bootstrap():
    rng = np.random.default_rng(0)
    r = rng.normal(size=6).astype(np.float32)
    mask = np.array([1, 1, 1, 1, 0, 0], np.float32)
    gamma, boot = 0.9, 3.0
    expected, g = np.zeros(6), boot
    for t in reversed(range(4)):
        g = r[t] + gamma * g
        expected[t] = g
    got = rf.padded_reward_to_go(jnp.asarray(r), jnp.asarray(mask), jnp.float32(boot), gamma)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_lockstep_episodes_cut_at_max_steps_as_truncation():
    envs = rf.make_envs("CartPole-v1", 3)
    steps = list(rf.lockstep_episodes(envs, np.arange(3), lambda obs, t: np.full(len(obs), t % 2), 4))
    assert len(steps) <= 4
    ended = np.zeros(3, bool)
    for s in steps:
        assert not np.any(s.active & ended)  # a finished env is never stepped again
        ended |= s.terminated | s.truncated
    assert ended.all() and steps[-1].truncated[steps[-1].active].all()


def _per_sample_grads(loss_fn, policy, n):
    flat = jax.vmap(lambda i: jax.flatten_util.ravel_pytree(jax.grad(loss_fn)(policy, i))[0])(jnp.arange(n))
    return np.asarray(flat)


def test_categorical_bandit_gradient_equals_closed_form_in_expectation():
    """E[∇ log π(a) r(a)] = ∇ Σ_a π(a) r(a) on a one-step, three-armed bandit (5 standard errors)."""
    import jax.flatten_util  # noqa: F401

    policy = rf.CategoricalPolicy(2, 3, (8,), key=jax.random.key(0))
    policy = jax.tree.map(lambda x: x * 30.0, policy)  # non-uniform π so every coordinate matters
    s = jnp.array([0.3, -0.7])
    r = jnp.array([1.0, -2.0, 0.5])
    n = 20000
    acts = jax.vmap(lambda k: policy(s).sample(k))(jax.random.split(jax.random.key(1), n))

    def one(p, i):  # the lecture's ĝ for m = 1, as minus the loss
        return -rf.reinforce_loss(p, s[None, None], acts[i][None, None], r[acts[i]][None, None], jnp.ones((1, 1)))

    g = _per_sample_grads(one, policy, n)
    exact = jax.flatten_util.ravel_pytree(
        jax.grad(lambda p: jnp.sum(jax.nn.softmax(p(s).logits) * r))(policy))[0]
    se = g.std(0) / np.sqrt(n)
    assert np.all(np.abs(g.mean(0) - exact) <= 5 * se + 1e-6)
    assert np.abs(exact).max() > 0.01  # the check is not vacuous


def test_gaussian_bandit_gradient_equals_closed_form_in_expectation():
    """r(a) = −(a−2)²: E[r] = −(μ−2)² − σ², so ∇μ = −2(μ−2), ∇log σ = −2σ² (5 standard errors)."""
    import jax.flatten_util  # noqa: F401

    policy = rf.GaussianPolicy(2, 1, (8,), key=jax.random.key(0), init_log_std=-0.5)
    s = jnp.array([0.3, -0.7])
    n = 20000
    acts = jax.vmap(lambda k: policy(s).sample(k))(jax.random.split(jax.random.key(1), n))
    rew = -((acts[:, 0] - 2.0) ** 2)

    def one(p, i):
        return -rf.reinforce_loss(p, s[None, None], acts[i][None, None], rew[i][None, None], jnp.ones((1, 1)))

    g = _per_sample_grads(one, policy, n)
    exact = jax.flatten_util.ravel_pytree(jax.grad(
        lambda p: -jnp.sum((p.net(s) - 2.0) ** 2) - jnp.sum(jnp.exp(2 * p.log_std)))(policy))[0]
    se = g.std(0) / np.sqrt(n)
    assert np.all(np.abs(g.mean(0) - exact) <= 5 * se + 1e-6)
    assert np.abs(exact).max() > 0.5


@pytest.fixture(scope="module")
def cartpole():
    return rf.REINFORCE("CartPole-v1", TINY, seed=3)


def test_tiny_run_counts_real_steps_and_compiles_once(cartpole):
    before = cartpole.env_steps
    m = cartpole.train_iteration()
    assert all(np.isfinite(v) for v in m.values())
    assert cartpole.env_steps > before
    # two episodes of CartPole: the steps counted are the returns (reward 1 per step)
    assert cartpole.env_steps - before == pytest.approx(2 * m["episode_return"])
    size = rf.update_jit._cache_size()
    cartpole.train_iteration()
    cartpole.train_iteration()
    assert rf.update_jit._cache_size() == size


def test_get_set_state_roundtrip_is_exact(cartpole):
    saved = cartpole.get_state()
    m1 = cartpole.train_iteration()
    p1 = jax.tree.leaves(cartpole.get_state().policy)
    cartpole.set_state(saved)
    m2 = cartpole.train_iteration()
    p2 = jax.tree.leaves(cartpole.get_state().policy)
    assert m1 == m2
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)


def test_act_is_a_valid_action(cartpole):
    obs = np.zeros(4, np.float32)
    assert cartpole.act(obs) in (0, 1)
    assert cartpole.act(obs, deterministic=False) in (0, 1)


@pytest.mark.parametrize("baseline", ["none", "mean"])
def test_other_baselines_run(baseline):
    learner = rf.REINFORCE("CartPole-v1", dataclasses.replace(TINY, baseline=baseline), seed=0)
    m = learner.train_iteration()
    assert np.isfinite(m["policy_loss"])


def test_continuous_actions_on_pendulum():
    learner = rf.REINFORCE("Pendulum-v1", dataclasses.replace(TINY, num_envs=1), seed=0)
    learner.train_iteration()
    assert learner.env_steps == 200  # Pendulum-v1 is truncated at 200 steps
    a = learner.act(np.zeros(3, np.float32), deterministic=False)
    assert a.shape == (1,) and -2.0 <= a[0] <= 2.0


def test_bad_config_errors():
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        rf.REINFORCE("CartPole-v1", dataclasses.replace(TINY, num_envs=0))
    with pytest.raises(ValueError, match="Unknown baseline 'median'"):
        rf.REINFORCE("CartPole-v1", dataclasses.replace(TINY, baseline="median"))


def evaluate_mean(learner, env_id="CartPole-v1", episodes=10):
    """Mean return of ``episodes`` deterministic episodes, episode i reset with seed 1000 + i."""
    import gymnasium as gym

    env, returns = gym.make(env_id), []
    for i in range(episodes):
        obs, _ = env.reset(seed=1000 + i)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(learner.act(obs))
            total, done = total + r, term or trunc
        returns.append(total)
    return float(np.mean(returns))


@pytest.mark.slow
def test_reinforce_with_value_baseline_solves_cartpole():
    learner = rf.REINFORCE("CartPole-v1", seed=0)
    best = 0.0
    while learner.env_steps < 300_000 and best < 475:
        if learner.train_iteration()["episode_return"] > 300:
            best = max(best, evaluate_mean(learner))
    assert best >= 475
