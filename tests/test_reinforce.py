"""REINFORCE: the estimator against closed forms, the on-policy loop (lockstep episodes, segments, compile once,
exact resume through a checkpoint), configs, and (slow) CartPole."""

import dataclasses

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal

from pathwise import algorithms, envs, loops
from pathwise import checkpoint as ckpt
from pathwise import spec as spec_mod
from pathwise.algorithms import reinforce as rf
from pathwise.distributions import CategoricalPolicy, GaussianPolicy
from pathwise.loops.on_policy import Segment, lockstep, log_probs, stack

TINY = rf.Config(num_envs=2, hidden=(8,), value_hidden=(8,), value_steps=2)


# -- helpers shared with test_qac -------------------------------------------------------------------------


def make_loop(algo, env_id, config, seed=0):
    """The algorithm's loop on ``env_id`` and a fresh carry from ``seed``."""
    loop = loops.make(algorithms.get(algo), spec_mod.from_env(env_id), config)
    return loop, loop.init(jax.random.key(seed))


def through_checkpoint(carry, template, tmp_path):
    """``carry`` written to and read back from a checkpoint file into ``template``, as the driver resumes."""
    ckpt.save(tmp_path / "carry.npz", carry, {"algorithm": "test"})
    meta, arrays = ckpt.read(tmp_path / "carry.npz")
    return ckpt.restore(template, meta, arrays)


def evaluate_mean(act, env_id="CartPole-v1", episodes=10):
    """Mean return of ``episodes`` episodes of ``act(obs)``, episode i reset with seed 1000 + i."""
    return float(envs.evaluate(act, env_id, episodes=episodes, seed=1000).mean)


# -- the estimator ------------------------------------------------------------------------------------------


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


def _segment(rewards, mask, truncated, obs_dim=2):
    """A [T, m] segment with observation t*10 + i at step t of env i (next_obs: the one after)."""
    T, m = rewards.shape
    obs = np.broadcast_to((np.arange(T)[:, None] * 10 + np.arange(m))[..., None], (T, m, obs_dim)).astype(np.float32)
    return Segment(jnp.asarray(obs), jnp.zeros((T, m), jnp.int32), jnp.asarray(rewards, jnp.float32),
                   jnp.asarray(obs + 10), jnp.zeros((T, m)), jnp.asarray(truncated, jnp.float32),
                   jnp.asarray(mask, jnp.float32))


def test_final_step_reads_each_episodes_last_real_step():
    mask = np.array([[1, 1], [1, 1], [1, 0], [0, 0]])
    truncated = np.array([[0, 0], [0, 0], [1, 0], [0, 0]])  # env 0 cut by the time limit, env 1 terminated
    seg = _segment(np.ones((4, 2)), mask, truncated)
    final_obs, trunc = rf.final_step(seg)
    np.testing.assert_array_equal(final_obs[:, 0], [30.0, 21.0])  # after steps 2 and 1
    np.testing.assert_array_equal(trunc, [1.0, 0.0])


def test_value_baseline_bootstraps_only_truncated_episodes():
    """G_t of a truncated episode ends in V(s_T); of a terminated one in 0; advantages are G − V(s_t)."""
    config = dataclasses.replace(TINY, gamma=0.5, normalize_advantages=False)
    state = rf.init(jax.random.key(0), spec_mod.from_env("CartPole-v1"), config)
    mask = np.array([[1, 1], [1, 1], [1, 0]])
    seg = _segment(np.ones((3, 2)), mask, np.array([[0, 0], [0, 0], [1, 0]]), obs_dim=4)
    g, adv = rf.returns_and_advantages(state, seg, config)
    v = jax.vmap(jax.vmap(state.value))(seg.obs)
    v_final = state.value(seg.next_obs[2, 0])
    np.testing.assert_allclose(g[:, 0], [1 + 0.5 + 0.25 + 0.125 * v_final, 1 + 0.5 + 0.25 * v_final,
                                         1 + 0.5 * v_final], rtol=1e-5)
    np.testing.assert_allclose(g[:, 1], [1.5, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(adv, (g - v) * mask, rtol=1e-5, atol=1e-6)


def test_reward_scale_scales_the_returns_not_the_bootstrap():
    """With ``reward_scale = c`` the rewards enter G as c·r; the value (which learns those units) is the bootstrap
    and the baseline unchanged, so G is the scaled rewards' discounted sum plus the same V(s_T) term."""
    config = dataclasses.replace(TINY, gamma=0.5, normalize_advantages=False, reward_scale=0.1)
    state = rf.init(jax.random.key(0), spec_mod.from_env("CartPole-v1"), config)
    mask = np.array([[1, 1], [1, 1], [1, 0]])
    seg = _segment(np.ones((3, 2)), mask, np.array([[0, 0], [0, 0], [1, 0]]), obs_dim=4)
    g, adv = rf.returns_and_advantages(state, seg, config)
    v_final = state.value(seg.next_obs[2, 0])
    np.testing.assert_allclose(g[:, 0], [0.175 + 0.125 * v_final, 0.15 + 0.25 * v_final, 0.1 + 0.5 * v_final],
                               rtol=1e-5)
    np.testing.assert_allclose(g[:, 1], [0.15, 0.1, 0.0], rtol=1e-5)
    with pytest.raises(ValueError, match="reward_scale=0.0 must be > 0"):
        dataclasses.replace(TINY, reward_scale=0.0)


def test_running_mean_baseline_per_time_index():
    g = jnp.array([[2.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    mask = jnp.array([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    b = rf.running_mean(jnp.array([1.0, 1.0, 5.0]), g, mask, 0.9)
    np.testing.assert_allclose(b, [0.9 + 0.1 * 3.0, 0.9 + 0.1 * 1.0, 5.0], rtol=1e-6)  # t=2: nobody got there


def _per_sample_grads(loss_fn, policy, n):
    flat = jax.vmap(lambda i: jax.flatten_util.ravel_pytree(jax.grad(loss_fn)(policy, i))[0])(jnp.arange(n))
    return np.asarray(flat)


def test_categorical_bandit_gradient_equals_closed_form_in_expectation():
    """E[∇ log π(a) r(a)] = ∇ Σ_a π(a) r(a) on a one-step, three-armed bandit (5 standard errors)."""
    policy = CategoricalPolicy(2, 3, (8,), key=jax.random.key(0))
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
    policy = GaussianPolicy(2, 1, (8,), key=jax.random.key(0), init_log_std=-0.5)
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


def test_loss_averages_over_episodes_not_steps():
    """The 1/m of ĝ: two identical episodes give the gradient of one."""
    policy = CategoricalPolicy(2, 2, (8,), key=jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (3, 1, 2))
    actions, adv, mask = jnp.array([[0], [1], [1]]), jnp.array([[1.0], [-0.5], [2.0]]), jnp.ones((3, 1))
    one = rf.reinforce_loss(policy, obs, actions, adv, mask)
    two = rf.reinforce_loss(policy, jnp.tile(obs, (1, 2, 1)), jnp.tile(actions, (1, 2)), jnp.tile(adv, (1, 2)),
                            jnp.ones((3, 2)))
    np.testing.assert_allclose(one, two, rtol=1e-6)


def test_clipped_loss_steps_like_the_plain_one_from_the_old_policy():
    """Trust region: at the policy that collected the episodes (ρ = 1) the clipped loss's gradient is REINFORCE's."""
    policy = CategoricalPolicy(2, 2, (8,), key=jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (3, 2, 2))
    actions, adv = jnp.array([[0, 1], [1, 1], [1, 0]]), jax.random.normal(jax.random.key(2), (3, 2))
    mask = jnp.array([[1.0, 1], [1, 1], [1, 0]])
    old = log_probs(policy, obs, actions)
    plain = jax.grad(rf.reinforce_loss)(policy, obs, actions, adv, mask)
    clipped = jax.grad(rf.reinforce_loss)(policy, obs, actions, adv, mask, 0.0, old, 0.2)
    for x, y in zip(jax.tree.leaves(plain), jax.tree.leaves(clipped)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-7)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(plain))
    # every ratio past 1 + ε with positive advantages: no gradient
    far = jax.grad(rf.reinforce_loss)(policy, obs, actions, jnp.abs(adv), mask, 0.0, old - 0.5, 0.2)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(far))


def test_epochs_reuse_the_episodes_and_need_a_trust_region():
    config = dataclasses.replace(TINY, epochs=3, clip_ratio=0.2)
    state = rf.init(jax.random.key(0), spec_mod.from_env("CartPole-v1"), config)
    mask = np.zeros((500, 2))  # padded to CartPole-v1's episode limit, as the loop pads
    mask[:3, 0], mask[:2, 1] = 1, 1
    seg = _segment(np.ones((500, 2)), mask, np.zeros((500, 2)), obs_dim=4)
    seg = seg._replace(obs=seg.obs / 1000, actions=jnp.asarray(np.arange(1000).reshape(500, 2) % 2, jnp.int32))

    def moved(new):
        return sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(jax.tree.leaves(new.policy),
                                                                 jax.tree.leaves(state.policy)))

    three, metrics = rf.update(state, seg, jax.random.key(1), config)
    one, first = rf.update(state, seg, jax.random.key(1), dataclasses.replace(config, epochs=1))
    plain, _ = rf.update(state, seg, jax.random.key(1), dataclasses.replace(config, epochs=1, clip_ratio=0.0))
    assert moved(three) > moved(one) > 0
    assert moved(one) == pytest.approx(moved(plain), rel=1e-4)  # the first clipped step is the plain one
    assert float(metrics["policy_loss"]) == pytest.approx(float(first["policy_loss"]), rel=1e-5)
    with pytest.raises(ValueError, match="set clip_ratio > 0"):
        dataclasses.replace(TINY, epochs=2)


# -- the on-policy loop ---------------------------------------------------------------------------------------


def test_lockstep_episodes_cut_at_max_steps_as_truncation():
    env_list = [envs.make_env("CartPole-v1") for _ in range(3)]
    steps = list(lockstep(env_list, np.arange(3), lambda obs, t: np.full(len(obs), t % 2), 4))
    assert len(steps) <= 4
    ended = np.zeros(3, bool)
    for _, _, _, _, term, trunc, active in steps:
        assert not np.any(active & ended)  # a finished env is never stepped again
        ended |= term | trunc
    last = steps[-1]
    assert ended.all() and last[5][last[6]].all()
    seg = stack(steps, 6)  # zero padded to 6 rows, mask 0 there
    assert seg.obs.shape == (6, 3, 4) and seg.mask[len(steps):].sum() == 0
    assert np.issubdtype(seg.actions.dtype, np.integer)


@pytest.fixture(scope="module")
def cartpole():
    """A loop and its carry after one iteration."""
    loop, carry = make_loop("reinforce", "CartPole-v1", TINY, seed=3)
    carry, metrics = loop.iteration(carry)
    return loop, carry, metrics


def test_tiny_run_counts_real_steps_and_compiles_once(cartpole, compilations):
    loop, carry, first = cartpole
    assert all(np.isfinite(v) for v in first.values()) and set(first) >= {"policy_loss", "value_loss"}
    # two episodes of CartPole: the steps counted are the returns (reward 1 per step)
    assert int(carry.env_steps) == pytest.approx(2 * first["episode_return"])
    assert carry.algo.mean_baseline.shape == (500,)  # one entry per time index up to the episode limit
    assert loop.segment_length == 500  # whole episodes
    with compilations() as n:
        before = int(carry.env_steps)
        carry, m = loop.iteration(carry)
        carry, m = loop.iteration(carry)
    assert n[0] == 0
    assert int(carry.env_steps) > before


def test_resume_through_a_checkpoint_is_exact(cartpole, tmp_path):
    loop, carry, _ = cartpole
    template = loop.init(jax.random.key(99))  # another seed: everything must come from the file
    restored = through_checkpoint(carry, template, tmp_path)
    a, ma = loop.iteration(carry)
    b, mb = loop.iteration(restored)
    assert ma == mb
    assert_trees_equal(a, b)


def test_act_is_a_valid_action(cartpole):
    _, carry, _ = cartpole
    obs = jnp.zeros(4)
    for deterministic in (True, False):
        a = rf.act(carry.algo, obs, jax.random.key(0), deterministic)
        assert a.shape == () and jnp.issubdtype(a.dtype, jnp.integer) and int(a) in (0, 1)


@pytest.mark.parametrize("baseline", ["none", "mean"])
def test_other_baselines_run(baseline):
    loop, carry = make_loop("reinforce", "CartPole-v1", dataclasses.replace(TINY, baseline=baseline))
    carry, m = loop.iteration(carry)
    assert np.isfinite(m["policy_loss"]) and m["value_loss"] == 0.0
    moved = np.flatnonzero(np.asarray(carry.algo.mean_baseline))
    assert len(moved) and moved.max() < int(carry.env_steps)  # only time indices some episode reached


def test_continuous_actions_on_pendulum():
    from pathwise.train import make_run

    run, _ = make_run("reinforce", "Pendulum-v1", overrides=dict(num_envs=1, hidden=(8,), value_hidden=(8,)),
                      use_preset=False)
    run.iteration()
    assert run.env_steps == 200  # Pendulum-v1 is truncated at 200 steps
    assert run.carry.algo.mean_baseline.shape == (200,)
    state = run.carry.algo  # std e^2: samples leave the box [-2, 2]
    wide = state._replace(policy=eqx.tree_at(lambda p: p.log_std, state.policy, jnp.full((1,), 2.0)))
    raw = jax.vmap(lambda k: rf.act(wide, jnp.zeros(3), k, False))(jax.random.split(jax.random.key(0), 20))
    assert raw.shape == (20, 1) and np.abs(raw).max() > 2.0  # unsquashed: the loop and the driver clip
    run.carry = run.carry._replace(algo=wide)
    for _ in range(20):
        a = run.act(np.zeros(3, np.float32), deterministic=False)
        assert a.shape == (1,) and -2.0 <= a[0] <= 2.0


def test_bad_config_errors():
    with pytest.raises(ValueError, match="num_envs=0 must be >= 1"):
        dataclasses.replace(TINY, num_envs=0)
    with pytest.raises(ValueError, match="baseline='median' must be one of"):
        dataclasses.replace(TINY, baseline="median")
    with pytest.raises(ValueError, match="gamma"):
        dataclasses.replace(TINY, gamma=1.5)


@pytest.mark.slow
def test_reinforce_with_value_baseline_solves_cartpole():
    """The shipped preset reaches 475 (10 evaluation episodes) within 100k steps."""
    from pathwise.train import train

    solved = lambda info: info.get("eval_return_mean", 0.0) < 475  # noqa: E731  (False stops training)
    _, summary = train("reinforce", "CartPole-v1", 100_000, seed=0, eval_every=2500, quiet=True, callback=solved)
    assert summary["steps_to_solve"] is not None, summary
