"""SVG(∞): the replay is the real episode, its gradient equals the pathwise gradient under the true noises,
the learner loop (compile once, exact resume) and NaN safety."""

from __future__ import annotations

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import rewards
from pathwise.algorithms.svg_inf import SVGInf, SVGInfConfig, replayed_return, sample_segments
from pathwise.distributions import GaussianPolicy
from pathwise.rollout import discounted_return, rollout
from pathwise.systems import LinearSystem, Pendulum, SystemEnv
from pathwise.types import Transition

T, GAMMA = 25, 0.95
TINY = SVGInfConfig(hidden=(8,), model_hidden=(16,), model_steps_per_epoch=5, model_max_epochs=2, model_batch=32,
                    grad_steps=3, recent_episodes=2, buffer_size=1000, segment_length=10, num_segments=4,
                    learn_std=False, policy_noise_clip=3.0, mean_penalty=1e-3)  # the preset's code path


def real_episode(system, policy, key):
    """An episode of a noisy system recorded as observations (state = observation here)."""
    k0, k1, k2 = jax.random.split(key, 3)
    xis = jax.random.normal(k1, (T, policy.action_dim))
    traj = rollout(system, policy.act, system.reset(k0), T, key=k2, policy_noise=xis)
    episode = Transition(traj.observations, traj.actions, traj.rewards,
                         jnp.concatenate([traj.observations[1:], traj.final_state[None]]),
                         jnp.zeros(T, bool), jnp.zeros(T, bool))
    return traj, episode


@pytest.fixture(scope="module")
def linear_case():
    system = LinearSystem(np.array([[1.0, 0.1], [-0.1, 0.98]]), np.array([[0.0], [0.1]]), noise_std=0.05)
    policy = GaussianPolicy(2, 1, (8,), key=jax.random.key(0), low=-3.0, high=3.0, init_log_std=-1.0)
    traj, episode = real_episode(system, policy, jax.random.key(1))
    return system, policy, traj, episode


def test_replay_value_is_the_real_return(linear_case):
    system, policy, traj, episode = linear_case
    value = replayed_return(policy, system, episode, jnp.asarray(T), GAMMA)
    np.testing.assert_allclose(value, discounted_return(traj.rewards, GAMMA), rtol=1e-5)
    # Padding: only the first `length` steps count.
    short = replayed_return(policy, system, episode, jnp.asarray(10), GAMMA)
    np.testing.assert_allclose(short, discounted_return(traj.rewards[:10], GAMMA), rtol=1e-5)


def test_mean_penalty_is_subtracted_along_the_replay(linear_case):
    """At the inferred noises the replay is the real episode: J_λ = real return − λ Σ γ^t ‖μ(s_t)‖²."""
    system, policy, traj, episode = linear_case
    lam = 0.3
    value = replayed_return(policy, system, episode, jnp.asarray(T), GAMMA, mean_penalty=lam)
    means = jax.vmap(lambda o: policy.mean_and_log_std(o)[0])(traj.observations)
    expected = discounted_return(traj.rewards, GAMMA) - lam * (GAMMA ** jnp.arange(T) * (means ** 2).sum(-1)).sum()
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_gradient_equals_pathwise_gradient_under_true_noises(linear_case):
    """With the true model, SVG(∞) with inferred noises = ∇θ of the return with the noises that generated it."""
    system, policy, traj, episode = linear_case
    g_svg = jax.grad(lambda p: replayed_return(p, system, episode, jnp.asarray(T), GAMMA))(policy)
    g_ref = jax.grad(lambda p: discounted_return(rollout(system, p.act, traj.states[0], T, noises=traj.noises,
                                                          policy_noise=traj.policy_noises).rewards, GAMMA))(policy)
    for a, b in zip(jax.tree.leaves(g_svg), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert any(np.abs(a).max() > 1e-3 for a in jax.tree.leaves(g_svg))


SHORT = "pathwise_test/ShortPendulumSVG-v0"  # 50-step episodes keep the test fast


@pytest.fixture(scope="module")
def learner_run():
    if SHORT not in gym.registry:
        gym.register(SHORT, entry_point=lambda: SystemEnv(Pendulum()), max_episode_steps=50)
    if not rewards.has(SHORT):
        rewards.register(SHORT, rewards.get("pathwise/Pendulum-v1"))
    learner = SVGInf(SHORT, TINY, seed=1)
    learner.train_iteration()
    snapshot = learner.get_state()
    metrics = learner.train_iteration()
    return learner, snapshot, metrics


def test_learner_loop_compiles_once_and_resumes_exactly(learner_run):
    learner, snapshot, metrics = learner_run
    assert learner.env_steps == 100 and learner.traces == 1
    assert np.isfinite(metrics["replayed_return"]) and metrics["skipped_updates"] == 0
    # learn_std=False: the exploration std stays at its initial value while the mean moves
    np.testing.assert_array_equal(learner.get_state().policy.log_std, snapshot.policy.log_std)
    np.testing.assert_allclose(snapshot.policy.log_std, TINY.init_log_std)
    assert not np.allclose(learner.get_state().policy.net.layers[-1].weight, snapshot.policy.net.layers[-1].weight)
    other = SVGInf(SHORT, TINY, seed=5)
    other.set_state(snapshot)
    other.train_iteration()
    for a, b in zip(jax.tree.leaves(other.get_state().policy), jax.tree.leaves(learner.get_state().policy)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_nonfinite_model_skips_every_update(learner_run):
    learner, _, _ = learner_run
    state = learner.get_state()
    broken = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan) if eqx.is_inexact_array(x) else x, state.model.nets)
    new, _ = learner.improve(state._replace(model=eqx.tree_at(lambda m: m.nets, state.model, broken)),
                             jax.random.key(0))
    assert int(new.skipped_updates) == int(state.skipped_updates) + TINY.grad_steps
    for a, b in zip(jax.tree.leaves(new.policy), jax.tree.leaves(state.policy)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svg_inf_swings_up_pendulum_within_2000_steps(seed):
    """The shipped preset (what `pathwise train svg-inf --env Pendulum-v1` uses) reaches -200 on the real env."""
    from pathwise.envs import evaluate
    from pathwise.train import build_config

    config, run = build_config(SVGInf, "Pendulum-v1")
    learner = SVGInf("Pendulum-v1", config, seed=seed)
    best = -np.inf
    while learner.env_steps < run.get("steps", 2000) and best < -200:
        learner.train_iteration()
        best = max(best, evaluate(lambda o: learner.act(o), "Pendulum-v1", episodes=10, seed=1000).mean)
    assert learner.env_steps <= 2000 and best >= -200


def test_segments_stay_inside_filled_recorded_episodes():
    """Windows start at a recorded step of a filled slot, copy consecutive rows, and are cut at the episode end."""
    E, Tmax, H = 3, 20, 8
    lengths = jnp.array([20, 5, 0])
    obs = jnp.broadcast_to((jnp.arange(E)[:, None] * 100 + jnp.arange(Tmax))[:, :, None], (E, Tmax, 3)).astype(float)
    episodes = Transition(obs, jnp.zeros((E, Tmax, 1)), jnp.zeros((E, Tmax)), obs + 1, jnp.zeros((E, Tmax), bool),
                          jnp.zeros((E, Tmax), bool))
    windows, n = sample_segments(episodes, lengths, lengths > 0, jax.random.key(3), 500, H)
    first = np.asarray(windows.obs[:, 0, 0])
    ep, start = first // 100, first % 100
    assert set(ep.astype(int)) == {0, 1}  # the empty slot is never drawn
    assert np.all(start < np.asarray(lengths)[ep.astype(int)])
    np.testing.assert_array_equal(n, np.minimum(np.asarray(lengths)[ep.astype(int)] - start, H))
    valid = np.arange(H)[None] < np.asarray(n)[:, None]
    np.testing.assert_array_equal(np.asarray(windows.obs[:, :, 0])[valid],
                                  (first[:, None] + np.arange(H)[None])[valid])
