"""SVG(∞): the replay is the real episode, its gradient equals the pathwise gradient under the true noises,
the model-based loop (compile once, exact resume through a checkpoint) and NaN safety."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import checkpoint as ckpt
from pathwise import loops, optim, registry
from pathwise.algorithms import get, svg_inf
from pathwise.distributions import GaussianPolicy
from pathwise.loops.model_based import ModelData, learned_system
from pathwise.rollout import discounted_return, rollout
from pathwise.spec import from_env
from pathwise.systems import LinearSystem, Pendulum, SystemEnv
from pathwise.types import Transition

T, GAMMA = 25, 0.95
TINY = svg_inf.Config(hidden=(8,), model_hidden=(16,), model_steps_per_epoch=5, model_max_epochs=2, model_batch=32,
                      grad_steps=3, recent_episodes=2, buffer_size=1000, segment_length=10, num_segments=4,
                      learn_std=False, policy_noise_clip=3.0, mean_penalty=1e-3)  # the preset's code path
ALGO = get("svg-inf")
SHORT = "pathwise_test/ShortPendulumSVG-v0"  # 50-step episodes keep the test fast


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
    value = svg_inf.replayed_return(policy, system, episode, jnp.asarray(T), GAMMA)
    np.testing.assert_allclose(value, discounted_return(traj.rewards, GAMMA), rtol=1e-5)
    # Padding: only the first `length` steps count.
    short = svg_inf.replayed_return(policy, system, episode, jnp.asarray(10), GAMMA)
    np.testing.assert_allclose(short, discounted_return(traj.rewards[:10], GAMMA), rtol=1e-5)


def test_mean_penalty_is_subtracted_along_the_replay(linear_case):
    """At the inferred noises the replay is the real episode: J_λ = real return − λ Σ γ^t ‖μ(s_t)‖²."""
    system, policy, traj, episode = linear_case
    lam = 0.3
    value = svg_inf.replayed_return(policy, system, episode, jnp.asarray(T), GAMMA, mean_penalty=lam)
    means = jax.vmap(lambda o: policy.mean_and_log_std(o)[0])(traj.observations)
    expected = discounted_return(traj.rewards, GAMMA) - lam * (GAMMA ** jnp.arange(T) * (means ** 2).sum(-1)).sum()
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def reference_gradient(system, traj, T_cut: int, lam: float = 0.0):
    """∇θ of Σ_{t<T_cut} γ^t (r_t − λ‖μ(s_t)‖²) with the noises that generated the episode (a plain rollout)."""

    def J(p):
        replay = rollout(system, p.act, traj.states[0], T, noises=traj.noises, policy_noise=traj.policy_noises)
        means = jax.vmap(lambda o: p.mean_and_log_std(o)[0])(replay.observations)
        per_step = replay.rewards - lam * (means ** 2).sum(-1)
        return discounted_return(per_step[:T_cut], GAMMA)

    return J


def test_gradient_equals_pathwise_gradient_under_true_noises(linear_case):
    """With the true model, SVG(∞) with inferred noises = ∇θ of the return with the noises that generated it
    (mean penalty included: the penalty on the replayed observations has the gradient of one inside the scan)."""
    system, policy, traj, episode = linear_case
    for lam in (0.0, 0.3):
        g_svg = jax.grad(lambda p: svg_inf.replayed_return(p, system, episode, jnp.asarray(T), GAMMA,
                                                           mean_penalty=lam))(policy)
        g_ref = jax.grad(reference_gradient(system, traj, T, lam))(policy)
        for a, b in zip(jax.tree.leaves(g_svg), jax.tree.leaves(g_ref)):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
        assert any(np.abs(a).max() > 1e-3 for a in jax.tree.leaves(g_svg))


def test_padded_rows_restart_from_the_record_and_carry_no_gradient(linear_case):
    """A 10-step episode padded with zeros: the gradient is that of its first 10 steps, and finite."""
    system, policy, traj, episode = linear_case
    padded = jax.tree.map(lambda x: x.at[10:].set(jnp.zeros((), x.dtype)), episode)
    g_pad = jax.grad(lambda p: svg_inf.replayed_return(p, system, padded, jnp.asarray(10), GAMMA))(policy)
    g_ref = jax.grad(reference_gradient(system, traj, 10))(policy)
    for a, b in zip(jax.tree.leaves(g_pad), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_truncation_keeps_the_value_and_cuts_the_gradient(linear_case):
    system, policy, traj, episode = linear_case
    full = lambda p, k: svg_inf.replayed_return(p, system, episode, jnp.asarray(T), GAMMA, truncate_every=k)  # noqa: E731
    np.testing.assert_allclose(full(policy, 5), full(policy, 0), rtol=1e-6)
    g_cut, g_full = jax.grad(lambda p: full(p, 5))(policy), jax.grad(lambda p: full(p, 0))(policy)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(g_cut))
    assert not all(np.allclose(a, b, rtol=1e-3) for a, b in zip(jax.tree.leaves(g_cut), jax.tree.leaves(g_full)))


def short_pendulum() -> str:
    if SHORT not in gym.registry:
        gym.register(SHORT, entry_point=lambda: SystemEnv(Pendulum()), max_episode_steps=50)
    if registry.record(SHORT).reward is None:
        registry.register(SHORT, reward=registry.record("pathwise/Pendulum-v1").reward)
    return SHORT


@pytest.fixture(scope="module")
def loop_run():
    loop = loops.make(ALGO, from_env(short_pendulum()), TINY)
    snapshot, _ = loop.iteration(loop.init(jax.random.key(1)))
    carry, metrics = loop.iteration(snapshot)
    return loop, snapshot, carry, metrics


def test_loop_learns_the_mean_keeps_the_std_and_compiles_once(loop_run, compilations):
    loop, snapshot, carry, metrics = loop_run
    assert int(carry.env_steps) == 100 and int(carry.recent.size) == 2
    assert np.isfinite(metrics["replayed_return"]) and metrics["skipped_total"] == 0
    # learn_std=False: the exploration std stays at its initial value while the mean moves
    np.testing.assert_array_equal(carry.algo.policy.log_std, snapshot.algo.policy.log_std)
    np.testing.assert_allclose(snapshot.algo.policy.log_std, TINY.init_log_std)
    assert not np.allclose(carry.algo.policy.net.layers[-1].weight, snapshot.algo.policy.net.layers[-1].weight)
    with compilations() as n:  # a third episode: the ring of recent episodes wraps, nothing recompiles
        carry, _ = loop.iteration(carry)
    assert n[0] == 0 and int(carry.recent.size) == 2


def test_resume_through_a_checkpoint_is_exact(loop_run, tmp_path):
    _, snapshot, carry, metrics = loop_run
    ckpt.save(tmp_path / "last.npz", snapshot, {"algorithm": "svg-inf"})
    other = loops.make(ALGO, from_env(short_pendulum()), TINY)
    meta, arrays = ckpt.read(tmp_path / "last.npz")
    resumed, m = other.iteration(ckpt.restore(other.init(jax.random.key(5)), meta, arrays))
    assert m == metrics
    jax.tree.map(np.testing.assert_array_equal, eqx.filter(resumed.algo, eqx.is_array),
                 eqx.filter(carry.algo, eqx.is_array))


def test_nonfinite_model_skips_every_update(loop_run):
    loop, _, carry, _ = loop_run
    model = carry.model
    broken = eqx.tree_at(lambda m: m.nets, model, jax.tree.map(
        lambda x: jnp.full_like(x, jnp.nan) if eqx.is_inexact_array(x) else x, model.nets))
    data = ModelData(learned_system(broken, loop.spec, loop.limit), carry.buffer, carry.recent)
    before = int(optim.skipped(carry.algo.opt_state))
    new, metrics = svg_inf.update(carry.algo, data, jax.random.key(0), TINY)
    assert int(metrics["skipped_total"]) == before + TINY.grad_steps
    jax.tree.map(np.testing.assert_array_equal, eqx.filter(new.policy, eqx.is_array),
                 eqx.filter(carry.algo.policy, eqx.is_array))


def test_whole_episodes_and_reinferred_noise_run(loop_run):
    """segment_length = 0 replays every stored episode; reinfer_noise infers ξ at each step's policy."""
    loop, _, carry, _ = loop_run
    data = ModelData(learned_system(carry.model, loop.spec, loop.limit), carry.buffer, carry.recent)
    for change in (dict(segment_length=0), dict(reinfer_noise=True)):
        _, metrics = svg_inf.update(carry.algo, data, jax.random.key(0), dataclasses.replace(TINY, **change))
        assert np.isfinite(float(metrics["replayed_return"])) and int(metrics["skipped_total"]) == 0


def test_act():
    spec = from_env(short_pendulum())
    state = svg_inf.init(jax.random.key(0), spec, TINY)
    obs = jnp.array([1.0, 0.0, 0.0])
    mode = svg_inf.act(state, obs, jax.random.key(1), True)
    np.testing.assert_allclose(mode, state.policy(obs).mode())
    samples = jax.vmap(lambda k: svg_inf.act(state, obs, k, False))(jax.random.split(jax.random.key(2), 500))
    assert samples.shape == (500, 1) and float(jnp.abs(samples).max()) <= 2.0 and float(jnp.std(samples)) > 0.05


@pytest.mark.parametrize("change, match", [
    (dict(grad_steps=0), "grad_steps"),
    (dict(gamma=0.0), "gamma"),
    (dict(policy_noise_clip=-1.0), "policy_noise_clip"),
    (dict(recent_episodes=0), "recent_episodes"),
])
def test_bad_config_is_a_clear_error(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **change)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_svg_inf_swings_up_pendulum_within_2000_steps(seed):
    """The shipped preset (what `pathwise train svg-inf --env Pendulum-v1` uses) reaches -200 on the real env."""
    from pathwise.train import train

    _, summary = train("svg-inf", "Pendulum-v1", 2000, seed=seed, eval_every=200, eval_episodes=10, quiet=True,
                       callback=lambda info: "eval_return_mean" not in info or info["eval_return_mean"] < -200)
    assert summary["steps_to_solve"] is not None and summary["steps_to_solve"] <= 2000


def test_segments_stay_inside_filled_recorded_episodes():
    """Windows start at a recorded step of a filled slot, copy consecutive rows, and are cut at the episode end."""
    E, Tmax, H = 3, 20, 8
    lengths = jnp.array([20, 5, 0])
    obs = jnp.broadcast_to((jnp.arange(E)[:, None] * 100 + jnp.arange(Tmax))[:, :, None], (E, Tmax, 3)).astype(float)
    episodes = Transition(obs, jnp.zeros((E, Tmax, 1)), jnp.zeros((E, Tmax)), obs + 1, jnp.zeros((E, Tmax), bool),
                          jnp.zeros((E, Tmax), bool))
    windows, n = svg_inf.sample_segments(episodes, lengths, lengths > 0, jax.random.key(3), 500, H)
    first = np.asarray(windows.obs[:, 0, 0])
    ep, start = first // 100, first % 100
    assert set(ep.astype(int)) == {0, 1}  # the empty slot is never drawn
    assert np.all(start < np.asarray(lengths)[ep.astype(int)])
    np.testing.assert_array_equal(n, np.minimum(np.asarray(lengths)[ep.astype(int)] - start, H))
    valid = np.arange(H)[None] < np.asarray(n)[:, None]
    np.testing.assert_array_equal(np.asarray(windows.obs[:, :, 0])[valid],
                                  (first[:, None] + np.arange(H)[None])[valid])
