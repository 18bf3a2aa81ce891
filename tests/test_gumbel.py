"""Gumbel-softmax SVG(0): the relaxation, the expected SARSA target, integer actions seen one-hot, the replay loop,
exact resume, compile-once, (slow) CartPole."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_ddpg import check_compiles_once, check_exact_resume, make_loop

from pathwise import algorithms, replay
from pathwise.algorithms import critics as ac
from pathwise.algorithms import gumbel as gb
from pathwise.distributions import CategoricalPolicy
from pathwise.estimators.relaxed import gumbel_softmax
from pathwise.loops.replay import ReplayItem
from pathwise.spec import EnvSpec
from pathwise.types import Transition

TINY = gb.Config(hidden=(8,), critic_hidden=(8,), batch_size=8, buffer_size=2000, learning_starts=20)
SPEC = EnvSpec("CartPole-v1", 4, 2, True, (), (), 500, None)


def test_registry_maps_cli_name():
    algorithm = algorithms.get("svg0-discrete")
    assert algorithm.module is gb and algorithm.info.discrete and not algorithm.info.continuous


def test_gumbel_max_samples_follow_the_policy():
    """Frequencies of act(deterministic=False) = argmax(logits + ε) match softmax(logits) within 5 standard errors."""
    state = gb.init(jax.random.key(0), dataclasses.replace(SPEC, obs_dim=2, action_dim=3), TINY)
    state = state._replace(actor=jax.tree.map(lambda x: 20 * x, CategoricalPolicy(2, 3, (8,), key=jax.random.key(0))))
    obs, n = jnp.array([0.5, -0.2]), 20000
    actions = jax.vmap(lambda k: gb.act(state, obs, k, False))(jax.random.split(jax.random.key(1), n))
    assert actions.dtype == jnp.int32 and actions.shape == (n,)
    freq = np.bincount(np.asarray(actions), minlength=3) / n
    p = np.asarray(jax.nn.softmax(state.actor(obs).logits))
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n))
    assert p.min() < 0.3  # a non-uniform policy, so the check has teeth
    assert int(gb.act(state, obs, jax.random.key(2), True)) == int(np.argmax(p))  # deterministic: the mode


def test_straight_through_actor_gradient_points_uphill_on_a_bandit():
    """Q(s, y) = w·y: the Monte Carlo ST gradient has cosine > 0.9 with the exact ∇ Σ_a π(a) w_a."""
    logits, w = jnp.array([0.5, -0.3, 0.1]), jnp.array([1.0, -1.0, 0.3])
    eps = jax.random.gumbel(jax.random.key(2), (4000, 3))
    st = jax.vmap(jax.grad(lambda l, e: gumbel_softmax(e, l, 1.0, True) @ w), (None, 0))(logits, eps).mean(0)
    exact = jax.grad(lambda l: jax.nn.softmax(l) @ w)(logits)
    cos = float(st @ exact / jnp.linalg.norm(st) / jnp.linalg.norm(exact))
    assert cos > 0.9


def test_expected_sarsa_target_matches_a_loop():
    actor = CategoricalPolicy(3, 2, (4,), key=jax.random.key(0))
    critics = ac.make_critics(jax.random.key(1), 3, 2, TINY)
    k = jax.random.split(jax.random.key(2), 2)
    batch = Transition(jnp.zeros((4, 3)), jnp.eye(2)[jnp.array([0, 1, 1, 0])],
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


def test_expected_actor_loss_matches_a_loop_and_leaves_the_critics_alone():
    """actor_gradient="expected": −mean_s[Σ_a π(a|s) min_i Q_i(s, e_a) + α H(π(·|s))], no gradient to the critics,
    and one step on the actor raises the probability of the action the critics value more."""
    actor = CategoricalPolicy(3, 2, (4,), key=jax.random.key(0))
    critics = ac.make_critics(jax.random.key(1), 3, 2, TINY)
    obs, alpha = jax.random.normal(jax.random.key(2), (5, 3)), jnp.float32(0.2)
    loss, (g_actor, g_critics) = jax.value_and_grad(gb.expected_actor_loss, argnums=(0, 1))(actor, critics, obs, alpha)
    want = 0.0
    for s in obs:
        p = jax.nn.softmax(actor(s).logits)
        q = jnp.array([min(float(c(s, jnp.eye(2)[a])) for c in [jax.tree.map(lambda x: x[i], critics)
                                                                   for i in range(2)]) for a in range(2)])
        want -= (float(p @ q) - 0.2 * float(p @ jnp.log(p))) / len(obs)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(g_critics))
    q = gb.every_action_q(critics, obs, 2)
    better = jnp.argmax(q, -1)
    step = jax.tree.map(lambda w, g: w - 0.1 * g, actor,
                        jax.grad(gb.expected_actor_loss)(actor, critics, obs, jnp.float32(0.0)))
    before = jax.vmap(lambda s, a: jax.nn.softmax(actor(s).logits)[a])(obs, better)
    after = jax.vmap(lambda s, a: jax.nn.softmax(step(s).logits)[a])(obs, better)
    assert float(jnp.mean(after - before)) > 0


def test_update_feeds_stored_action_indices_to_the_critics_one_hot():
    """A buffer of one repeated transition with action index 1: the critic loss of ``update`` is the loss at
    ``one_hot(1)`` (whatever rows the minibatch draws), with the reward scaled by ``reward_scale``."""
    state = gb.init(jax.random.key(0), SPEC, TINY)
    obs, next_obs = jnp.array([0.1, -0.2, 0.3, 0.0]), jnp.array([0.2, 0.1, -0.1, 0.4])
    item = ReplayItem(Transition(obs, jnp.int32(1), jnp.float32(1.0), next_obs, jnp.bool_(False), jnp.bool_(False)),
                      jnp.float32(0.0))
    buffer = replay.add_batch(replay.init(item, 16), jax.tree.map(lambda x: jnp.stack([x] * 16), item))
    for scale in (1.0, 0.1):  # reward_scale: the critics' target is that of the reward scale · r
        config = dataclasses.replace(TINY, reward_scale=scale)
        _, metrics = gb.update(state, buffer, jax.random.key(1), config)
        batch = Transition(*(jnp.stack([x] * TINY.batch_size) for x in (obs, jnp.array([0.0, 1.0]),
                                                                         jnp.float32(scale), next_obs,
                                                                         jnp.bool_(False), jnp.bool_(False))))
        target = gb.expected_sarsa_target(state.actor, state.target_critics, batch, TINY.gamma)
        want = ac.critic_loss(state.critics, batch.obs, batch.action, target)
        np.testing.assert_allclose(metrics["critic_loss"], want, rtol=1e-5)
    # actor_gradient="expected": the actor's loss is the exact expectation through the updated critics
    new, metrics = gb.update(state, buffer, jax.random.key(1), dataclasses.replace(TINY, actor_gradient="expected"))
    batch_obs = jnp.stack([obs] * TINY.batch_size)
    want = gb.expected_actor_loss(state.actor, new.critics, batch_obs, jnp.exp(state.log_alpha))
    np.testing.assert_allclose(metrics["actor_loss"], want, rtol=1e-5)


def test_alpha_rises_when_entropy_is_below_target():
    below = jax.grad(gb.alpha_loss)(jnp.float32(0.0), jnp.float32(0.1), 0.2)
    above = jax.grad(gb.alpha_loss)(jnp.float32(0.0), jnp.float32(0.5), 0.2)
    assert float(below) < 0 < float(above)  # descent raises / lowers log alpha


@pytest.fixture(scope="module")
def warm():
    """A loop and its carry once the warm-up is over (the last iteration ran updates)."""
    loop = make_loop("svg0-discrete", "CartPole-v1", TINY)
    carry = loop.init(jax.random.key(1))
    while int(carry.env_steps) < TINY.learning_starts:
        carry, metrics = loop.iteration(carry)
    return loop, carry, metrics


def test_tiny_run_stores_indices_and_updates(warm):
    _, carry, m = warm
    assert m["updates"] == m["episode_length"] > 0
    assert all(np.isfinite(v) for v in m.values())
    stored = carry.buffer.storage.transition.action[: int(carry.buffer.size)]
    assert stored.dtype == jnp.int32 and set(np.unique(np.asarray(stored))) <= {0, 1}


def test_carry_roundtrip_reproduces_next_iteration_exactly(warm, tmp_path):
    loop, carry, _ = warm
    check_exact_resume(loop, carry, tmp_path)


def test_update_compiles_once_across_iterations(warm, compilations):
    loop, carry, _ = warm
    check_compiles_once(loop, carry, compilations)


def test_act_returns_valid_actions(warm):
    _, carry, _ = warm
    obs = jnp.zeros(4)
    for deterministic in (True, False):
        a = gb.act(carry.algo, obs, jax.random.key(0), deterministic)
        assert a.shape == () and a.dtype == jnp.int32 and int(a) in (0, 1)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="needs discrete actions"):
        make_loop("svg0-discrete", "Pendulum-v1", TINY)
    with pytest.raises(ValueError, match="temperature=0.0 must be > 0"):
        dataclasses.replace(TINY, temperature=0.0)
    with pytest.raises(ValueError, match="target_entropy_ratio"):
        dataclasses.replace(TINY, target_entropy_ratio=1.5)
    with pytest.raises(ValueError, match="actor_gradient='exact': choose one of gumbel, expected"):
        dataclasses.replace(TINY, actor_gradient="exact")


@pytest.mark.slow
def test_gumbel_svg0_solves_cartpole():
    from pathwise.train import train

    _, summary = train("svg0-discrete", "CartPole-v1", 100_000, seed=0, eval_every=2500, quiet=True,
                       callback=lambda info: info.get("eval_return_mean", 0.0) < 475)
    assert summary["steps_to_solve"] is not None, summary
