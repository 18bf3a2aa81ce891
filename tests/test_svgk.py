"""The SVG(k) value-gradient core (k = 0, 1, H special cases, reward weights, restarts, TD(lambda)) and svgk in
both of its loops (SHAC through a System, k imagined steps of a learned model)."""

import dataclasses

import equinox as eqx
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import assert_trees_equal, moved

from pathwise import checkpoint as ckpt
from pathwise import config as cfg_mod
from pathwise import loops, registry, replay
from pathwise.loops import simulated
from pathwise.algorithms import get, svgk
from pathwise.algorithms import svg_core as core
from pathwise.networks import QCritic, VCritic
from pathwise.rollout import rollout
from pathwise.spec import from_env
from pathwise.systems import LinearSystem, Pendulum
from pathwise.systems.base import System
from pathwise.types import Transition

GAMMA = 0.9


class WallSystem(System):
    """1-D point ``x' = x + a`` that terminates once ``x > 1``; reward ``x + 0.1 a``."""

    state_dim = 1
    obs_dim = 1
    action_dim = 1

    def initial_state(self, key):
        return jnp.zeros(1)

    def dynamics(self, state, action):
        return state + action

    def reward(self, state, action, next_state=None):
        return state[0] + 0.1 * action[0]

    def observe(self, state):
        return state

    def terminated(self, state):
        return state[0] > 1.0


def tanh_policy(params):
    return lambda obs, xi: jnp.tanh(params["w"] @ obs + params["b"] + 0.3 * xi)


def manual_return(system, policy, state, xis, zetas, gamma):
    """Independent Python loop: sum_t gamma^t r_t, stopping after the first terminal state."""
    total, alive = 0.0, 1.0
    for t in range(zetas.shape[0]):
        obs = system.observe(state)
        action = policy(obs, xis[t])
        nxt = system.step(state, action, zetas[t])
        total += alive * gamma**t * float(system.reward(state, action, nxt))
        alive *= 0.0 if bool(system.terminated(nxt)) else 1.0
        state = nxt
    return total, state, alive


@pytest.fixture(scope="module")
def pendulum_setup():
    key = jax.random.key(0)
    params = {"w": 0.5 * jax.random.normal(key, (1, 3)), "b": jnp.array([0.1])}
    state0 = jnp.array([2.5, -0.4])
    xis = jax.random.normal(jax.random.key(1), (9, 1))
    zetas = 0.05 * jax.random.normal(jax.random.key(2), (8, 2))
    return Pendulum(), params, state0, xis, zetas


def test_k_equals_h_with_zero_value_is_the_rollout_return(pendulum_setup):
    system, params, s0, xis, zetas = pendulum_setup
    seg = core.value_gradient_objective(system, tanh_policy(params), core.zero_bootstrap, s0, xis, zetas, GAMMA)
    expected, final, _ = manual_return(system, tanh_policy(params), s0, xis, zetas, GAMMA)
    np.testing.assert_allclose(float(seg.objective), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(seg.final_state, final, rtol=1e-5, atol=1e-6)


def test_k_steps_plus_value_bootstrap(pendulum_setup):
    system, params, s0, xis, zetas = pendulum_setup
    value = VCritic(3, (16,), key=jax.random.key(3))
    for k in (1, 3):
        seg = core.value_gradient_objective(system, tanh_policy(params), core.v_bootstrap(value), s0, xis[:k + 1],
                                            zetas[:k], GAMMA)
        ret, final, _ = manual_return(system, tanh_policy(params), s0, xis, zetas[:k], GAMMA)
        expected = ret + GAMMA**k * float(value(system.observe(final)))
        np.testing.assert_allclose(float(seg.objective), expected, rtol=1e-5, atol=1e-5)


def test_k1_is_svg1_reward_plus_discounted_value(pendulum_setup):
    """J_1 = r(s, a) + gamma V(f(s, a) + zeta) with a = pi(s, xi), written out by hand."""
    system, params, s0, xis, zetas = pendulum_setup
    value = VCritic(3, (16,), key=jax.random.key(4))
    policy = tanh_policy(params)
    a = policy(system.observe(s0), xis[0])
    s1 = system.dynamics(s0, a) + zetas[0]
    expected = system.reward(s0, a) + GAMMA * value(system.observe(s1))
    seg = core.value_gradient_objective(system, policy, core.v_bootstrap(value), s0, xis[:2], zetas[:1], GAMMA)
    np.testing.assert_allclose(seg.objective, expected, rtol=1e-6)


def test_k0_with_q_bootstrap_is_the_critic_and_its_policy_gradient(pendulum_setup):
    """k = 0: J_0 = Q(s, pi(s, xi)); d/dtheta J_0 equals dQ/da * da/dtheta (the SVG(0) gradient)."""
    system, params, s0, xis, _ = pendulum_setup
    q = QCritic(3, 1, (16,), key=jax.random.key(5))
    obs = system.observe(s0)

    def j0(p):
        return core.value_gradient_objective(system, tanh_policy(p), core.q_bootstrap(q), s0, xis[:1],
                                             jnp.zeros((0, 2)), GAMMA).objective

    a = tanh_policy(params)(obs, xis[0])
    np.testing.assert_allclose(j0(params), q(obs, a), rtol=1e-6)
    dq_da = jax.grad(lambda act: q(obs, act))(a)
    da_dp = jax.jacobian(lambda p: tanh_policy(p)(obs, xis[0]))(params)
    expected = jax.tree.map(lambda j: jnp.tensordot(dq_da, j, axes=1), da_dp)
    got = jax.grad(j0)(params)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7)


def test_bootstrap_parameters_get_no_gradient(pendulum_setup):
    system, params, s0, xis, zetas = pendulum_setup
    value = VCritic(3, (16,), key=jax.random.key(6))
    grads = eqx.filter_grad(lambda v: core.value_gradient_objective(
        system, tanh_policy(params), core.v_bootstrap(v), s0, xis[:3], zetas[:2], GAMMA).objective)(value)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_policy_gradient_matches_finite_differences_on_linear_system():
    a_mat, b_mat = jnp.array([[1.0, 0.1], [0.0, 1.0]]), jnp.array([[0.0], [0.1]])
    system = LinearSystem(a_mat, b_mat, jnp.eye(2), 0.1 * jnp.eye(1))
    value = VCritic(2, (8,), key=jax.random.key(7))
    s0, xis, zetas = jnp.array([1.0, -0.5]), 0.1 * jnp.ones((6, 1)), 0.01 * jnp.ones((5, 2))

    def j(gain):
        def policy(obs, xi):
            return gain @ obs + xi
        return core.value_gradient_objective(system, policy, core.v_bootstrap(value), s0, xis, zetas, GAMMA).objective

    gain = jnp.array([[-0.3, -0.8]])
    grad = jax.grad(j)(gain)
    eps = 1e-2
    for i in range(2):
        e = jnp.zeros_like(gain).at[0, i].set(eps)
        fd = (j(gain + e) - j(gain - e)) / (2 * eps)
        np.testing.assert_allclose(grad[0, i], fd, rtol=2e-3, atol=2e-4)


def test_termination_masks_rewards_and_bootstrap():
    system, value = WallSystem(), VCritic(1, (8,), key=jax.random.key(8))
    def policy(obs, xi):
        return jnp.array([0.6])  # x: 0, 0.6, 1.2 (terminal), ...
    xis, zetas = jnp.zeros((5, 1)), jnp.zeros((4, 1))
    seg = core.value_gradient_objective(system, policy, core.v_bootstrap(value), jnp.zeros(1), xis, zetas, GAMMA)
    expected, _, alive = manual_return(system, policy, jnp.zeros(1), xis, zetas, GAMMA)
    assert alive == 0.0
    np.testing.assert_allclose(float(seg.objective), expected, rtol=1e-6)  # no bootstrap after the terminal
    np.testing.assert_array_equal(seg.alive, [1, 1, 0, 0])
    np.testing.assert_array_equal(seg.continues, [1, 0, 0, 0])


def test_policy_noise_shape_error():
    system = WallSystem()
    with pytest.raises(ValueError, match="k \\+ 1"):
        core.value_gradient_objective(system, lambda o, x: x, core.zero_bootstrap, jnp.zeros(1), jnp.zeros((2, 1)),
                                      jnp.zeros((2, 1)), GAMMA)


def forward_view_lambda_return(r, v_next, c, gamma, lam):
    """Independent reference: G_t^lambda = (1-lam) sum_n lam^{n-1} G_t^(n) + lam^{T-t-1} G_t^(T-t)."""
    T = len(r)
    out = np.zeros(T)
    for t in range(T):
        def n_step(n):
            g, disc = 0.0, 1.0
            for i in range(t, t + n):
                g += disc * r[i]
                disc *= gamma * c[i]
            return g + disc * v_next[t + n - 1]
        out[t] = (sum((1 - lam) * lam ** (n - 1) * n_step(n) for n in range(1, T - t))
                  + lam ** (T - t - 1) * n_step(T - t))
    return out


@pytest.mark.parametrize("lam", [0.0, 0.7, 1.0])
def test_lambda_returns_match_forward_view(lam):
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=6), rng.normal(size=6)
    c = np.array([1, 1, 1, 0, 0, 0], np.float32)  # terminal after step 3
    got = core.lambda_returns(jnp.asarray(r), jnp.asarray(v), jnp.asarray(c), 0.9, lam)
    np.testing.assert_allclose(got, forward_view_lambda_return(r, v, c, 0.9, lam), rtol=1e-5, atol=1e-5)
    if lam == 0.0:  # the one-step target, from the float32 inputs lambda_returns saw
        r32, v32 = r.astype(np.float32), v.astype(np.float32)
        np.testing.assert_allclose(got, r32 + np.float32(0.9) * c * v32, rtol=1e-6)


def test_value_loss_is_weighted_mse():
    value = VCritic(2, (4,), key=jax.random.key(9))
    obs = jax.random.normal(jax.random.key(10), (3, 2, 2))
    targets, weights = jnp.arange(6.0).reshape(3, 2), jnp.array([[1.0, 0.0], [2.0, 1.0], [0.0, 1.0]])
    pred = jax.vmap(jax.vmap(value))(obs)
    expected = jnp.sum(weights * (pred - targets) ** 2) / weights.sum()
    np.testing.assert_allclose(core.value_loss(value, obs, targets, weights), expected, rtol=1e-6)



def test_value_bounds_are_the_discounted_range_of_the_valid_rewards():
    rewards = jnp.array([-3.0, -0.5, 7.0, -9.0])  # the last two are not filled in (ring buffer past its size)
    valid = jnp.array([True, True, False, False])
    np.testing.assert_allclose(core.value_bounds(rewards, valid, 0.9, 0.1), [-3.0, -0.5], rtol=1e-6)
    np.testing.assert_allclose(core.value_bounds(rewards, valid, 0.9, -1.0), [5.0, 30.0], rtol=1e-6)  # sorted


def test_bounded_bootstrap_clips_and_gives_no_gradient_beyond_the_range():
    def b(obs, action):
        return jnp.sum(obs) + action[0]

    clip = core.bounded(b, jnp.array([-1.0, 1.0]))
    assert core.bounded(b, None) is b
    assert float(clip(jnp.array([5.0]), jnp.array([0.0]))) == 1.0
    assert float(clip(jnp.array([-5.0]), jnp.array([0.0]))) == -1.0
    assert float(jax.grad(lambda a: clip(jnp.array([5.0]), a))(jnp.array([0.0]))[0]) == 0.0
    assert float(jax.grad(lambda a: clip(jnp.array([0.2]), a))(jnp.array([0.1]))[0]) == 1.0


def test_imagined_and_data_bounds_hold_zero_where_an_episode_ends():
    """The targets' range covers the imagined rewards (an imagined goal or bonus reaches V) and, past a termination,
    the zeros that follow; D's range holds 0 once a real transition terminated (InvertedPendulum: every reward is 1,
    yet a falling pole's value is near 0)."""
    def segment(rewards):
        return core.Segment(*([jnp.zeros(())] * 2), jnp.asarray(rewards), *([jnp.zeros(())] * 6))

    np.testing.assert_allclose(svgk.imagined_bounds(segment([[-1.0, 3.0, 2.0]]), 0.5), [-2.0, 6.0])
    np.testing.assert_allclose(svgk.imagined_bounds(segment([[1.0, 3.0, 0.0]]), 0.5), [0.0, 6.0])  # ended at step 2
    np.testing.assert_allclose(svgk.widest(jnp.array([-4.0, 0.0]), jnp.array([-2.0, 6.0])), [-4.0, 6.0])
    config = svgk.Config(gamma=0.5, reward_scale=1.0)
    item = dict(obs=np.zeros(1, np.float32), action=np.zeros(1, np.float32), reward=np.float32(0),
                next_obs=np.zeros(1, np.float32), terminated=False, truncated=False)
    buffer = replay.init(Transition(**item), 8)
    ones = Transition(**{k: np.stack([v] * 3) for k, v in item.items()})._replace(reward=np.ones(3, np.float32))
    alive = replay.add_batch(buffer, ones, 3)
    np.testing.assert_allclose(svgk.data_bounds(alive, config), [2.0, 2.0])  # unfilled slots are not rewards
    ended = replay.add_batch(buffer, ones._replace(terminated=np.array([False, False, True])), 3)
    np.testing.assert_allclose(svgk.data_bounds(ended, config), [0.0, 2.0])


def test_an_overestimated_value_is_clipped_in_targets_and_objective(pendulum_setup):
    """V = +1000 everywhere on a task whose rewards are <= 0: with bounds every target is clipped to the range, and
    the objective is the k-step return plus gamma^k times the upper end (no gradient from V)."""
    system, _, s0, _, _ = pendulum_setup
    state = svgk.init(jax.random.key(0), from_env("pathwise/Pendulum-v1"), TINY)
    value = eqx.tree_at(lambda v: v.net.layers[-1].bias, state.value, jnp.array([1000.0]))
    state = state._replace(value=value, target_value=value)
    starts = jnp.tile(s0, (TINY.n_envs, 1))
    bounds = jnp.array([-50.0, -1.0])
    new, seg, metrics = svgk.actor_critic_step(state, system, starts, jax.random.key(1), TINY, bounds=bounds)
    assert float(metrics["targets_clipped"]) == 1.0  # every target was above -1
    k = TINY.horizon
    expected = jnp.sum(TINY.gamma ** jnp.arange(k) * seg.rewards, axis=1) + TINY.gamma ** k * seg.final_continue * -1.0
    np.testing.assert_allclose(seg.objective, expected, rtol=1e-5)
    _, _, free = svgk.actor_critic_step(state, system, starts, jax.random.key(1), TINY)
    assert float(free["targets_clipped"]) == 0.0 and float(free["actor_loss"]) < -100  # unbounded: V dominates J



def test_k0_without_a_system_takes_the_observation(pendulum_setup):
    """system=None (SVG(0): no dynamics): J_0 = Q(s, pi(s, xi)) on the observation passed as the start state."""
    system, params, s0, xis, _ = pendulum_setup
    q = QCritic(3, 1, (16,), key=jax.random.key(5))
    obs = system.observe(s0)
    seg = core.value_gradient_objective(None, tanh_policy(params), core.q_bootstrap(q), obs, xis[:1],
                                        jnp.zeros((0, 3)), GAMMA)
    np.testing.assert_allclose(seg.objective, q(obs, tanh_policy(params)(obs, xis[0])), rtol=1e-6)


def test_reward_weights_scale_each_step(pendulum_setup):
    system, params, s0, xis, zetas = pendulum_setup
    weights = jnp.array([1.0, 0.5, 0.0, 2.0, 1.0, 1.0, 0.0, 0.0])
    seg = core.value_gradient_objective(system, tanh_policy(params), core.zero_bootstrap, s0, xis, zetas, GAMMA,
                                        reward_scale=0.1, reward_weights=weights)
    traj = rollout(system, tanh_policy(params), s0, 8, noises=zetas, policy_noise=xis[:8])
    expected = float(jnp.sum(0.1 * weights * GAMMA ** jnp.arange(8) * traj.rewards))
    np.testing.assert_allclose(float(seg.objective), expected, rtol=1e-5)
    np.testing.assert_allclose(seg.rewards, 0.1 * weights * traj.rewards, rtol=1e-6)


def test_restarts_replace_the_state_without_gradient(pendulum_setup):
    """With a restart before step 3 from state s: J = (3 steps from s_0) + gamma^3 (5 steps from s), and
    dJ/ds_0 is that of the first three steps alone."""
    system, params, s0, xis, zetas = pendulum_setup
    policy, s = tanh_policy(params), jnp.array([-1.0, 0.7])
    mask = jnp.arange(8) == 3
    states = jnp.where(mask[:, None], s, 0.0)

    def J(x0):
        return core.value_gradient_objective(system, policy, core.zero_bootstrap, x0, xis, zetas, GAMMA,
                                             restarts=(mask, states)).objective

    first, _, _ = manual_return(system, policy, s0, xis, zetas[:3], GAMMA)
    rest, _, _ = manual_return(system, policy, s, xis[3:], zetas[3:], GAMMA)
    np.testing.assert_allclose(float(J(s0)), first + GAMMA**3 * rest, rtol=1e-5, atol=1e-5)
    three = lambda x0: core.value_gradient_objective(system, policy, core.zero_bootstrap, x0, xis[:4], zetas[:3],  # noqa: E731
                                                     GAMMA).objective
    np.testing.assert_allclose(jax.grad(J)(s0), jax.grad(three)(s0), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- svgk in the simulated loop (SHAC)

ALGO = get("svgk")
TINY = svgk.Config(hidden=(8,), critic_hidden=(8,), horizon=4, n_envs=4, critic_iterations=2, critic_minibatches=2,
                   updates_per_iteration=2)


def checkpoint_round_trip(carry, template, path):
    ckpt.save(path, carry, {"algorithm": "svgk"})
    meta, arrays = ckpt.read(path)
    return ckpt.restore(template, meta, arrays)


@pytest.fixture(scope="module")
def shac_run():
    loop = loops.make(ALGO, from_env("pathwise/Pendulum-v1"), TINY)
    start = loop.init(jax.random.key(1))
    carry, metrics = loop.iteration(start)
    return loop, start, carry, metrics


def test_shac_runs_in_the_simulated_loop_and_compiles_once(shac_run, compilations):
    loop, start, carry, metrics = shac_run
    assert loop.kind == "simulated" and start.algo.sim_states.shape == (4, 2)
    assert int(carry.env_steps) == 2 * 4 * 4 == 2 * svgk.steps_per_update(loop.spec, TINY)
    assert all(np.isfinite(v) for v in metrics.values()) and metrics["skipped_total"] == 0
    assert {"actor_loss", "value_loss", "imagined_reward", "policy_std"} <= set(metrics)
    np.testing.assert_array_equal(carry.algo.sim_time, [8, 8, 8, 8])  # 2 updates of 4 steps, no restart yet
    with compilations() as n:
        loop.iteration(carry)
    assert n[0] == 0  # the second iteration reuses the compiled updates
    obs = jnp.array([1.0, 0.0, 0.0])
    action = svgk.act(carry.algo, obs, jax.random.key(0), True)
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0
    assert svgk.act(carry.algo, obs, jax.random.key(0), False).shape == (1,)


def test_shac_resume_through_a_checkpoint_is_exact(shac_run, tmp_path):
    loop, start, carry, metrics = shac_run
    other = loops.make(ALGO, from_env("pathwise/Pendulum-v1"), TINY)
    resumed, m = other.iteration(checkpoint_round_trip(start, other.init(jax.random.key(2)), tmp_path / "c.npz"))
    assert m == metrics
    assert_trees_equal(resumed, carry)


def test_simulations_restart_at_the_episode_limit():
    system = Pendulum()
    states = jnp.array([[0.1, 0.0], [0.2, 0.0], [0.3, 0.0]])
    time = jnp.array([200, 10, 50])
    continues = jnp.array([1.0, 1.0, 0.0])
    new, new_time = svgk.restart_finished(system, states, time, continues, jax.random.key(0), 200)
    np.testing.assert_array_equal(new_time, [0, 10, 0])
    np.testing.assert_array_equal(new[1], states[1])
    assert not np.allclose(new[0], states[0]) and not np.allclose(new[2], states[2])


@pytest.mark.parametrize("change, match", [
    (dict(horizon=0), "horizon"),
    (dict(critic_minibatches=3), "divisible"),
    (dict(lam=1.5), "lam"),
    (dict(target_tau=0.0), "target_tau"),
    (dict(updates_per_iteration=0), "updates_per_iteration"),
    (dict(min_steps_per_iteration=-1), "min_steps_per_iteration"),
    (dict(start_noise=(0.0, -0.1, 0.0)), "start_noise"),
])
def test_bad_config_is_a_clear_error(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(TINY, **change)


def test_discrete_actions_are_refused():
    with pytest.raises(ValueError, match="continuous"):
        loops.make(ALGO, from_env("pathwise/CartPole-v1"), TINY)


def test_loop_selection():
    """A pathwise id or use_true_dynamics: SHAC through the System; a Gymnasium id: a learned model."""
    true = dataclasses.replace(TINY, use_true_dynamics=True)
    assert loops.select(ALGO, from_env("pathwise/Pendulum-v1"), TINY) == "simulated"
    assert loops.select(ALGO, from_env("Pendulum-v1"), TINY) == "model_based"
    assert loops.select(ALGO, from_env("Pendulum-v1"), true) == "simulated"
    # simulations exist where the environment has a System (SHAC carries them), none where it has not
    assert svgk.init(jax.random.key(0), from_env("Pendulum-v1"), TINY).sim_states.shape == (TINY.n_envs, 2)
    no_system = dataclasses.replace(from_env("Pendulum-v1"), system=None)
    assert svgk.init(jax.random.key(0), no_system, TINY).sim_states is None


# ----------------------------------------------------------------------------- svgk in the model-based loop

TINY_MODEL = dataclasses.replace(TINY, model_hidden=(16,), model_steps_per_epoch=5, model_max_epochs=2,
                                 model_batch=64, updates_per_episode=2, buffer_size=1000, recent_episodes=1,
                                 random_episodes=0)  # the policy acts from the first episode: all programs compile


def test_learned_model_mode_counts_real_steps_resumes_and_compiles_once(tmp_path, compilations):
    loop = loops.make(ALGO, from_env("Pendulum-v1"), TINY_MODEL)
    assert loop.kind == "model_based"
    start = loop.init(jax.random.key(0))
    carry, metrics = loop.iteration(start)
    assert int(carry.env_steps) == 200  # one real Gymnasium episode, not imagined steps
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert {"value_loss", "model_one_step_mse", "imagined_reward"} <= set(metrics)
    other = loops.make(ALGO, from_env("Pendulum-v1"), TINY_MODEL)
    resumed, m = other.iteration(checkpoint_round_trip(start, other.init(jax.random.key(5)), tmp_path / "c.npz"))
    assert m == metrics and int(resumed.env_steps) == 200  # resume is exact
    assert_trees_equal(resumed.algo, carry.algo)
    with compilations() as n:
        loop.iteration(carry)
    assert n[0] == 0  # the actor-critic update, the fit and the actions compiled once
    action = svgk.act(carry.algo, jnp.array([1.0, 0.0, 0.0]), jax.random.key(0), True)
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0


def test_learned_model_learns_an_unknown_reward_and_true_dynamics_needs_a_system():
    env_id = "PathwiseTestNoRewardPendulum-v0"  # a Gymnasium env pathwise knows nothing about
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv", max_episode_steps=20)
    registry.unregister(env_id)
    assert loops.make(ALGO, from_env(env_id), TINY_MODEL).learn_reward  # the model-based loop learns it
    with pytest.raises(ValueError, match="reward_source='known' but no reward of 'PathwiseTestNoRewardPendulum-v0'.*"
                                         "register"):
        loops.make(ALGO, from_env(env_id), dataclasses.replace(TINY_MODEL, reward_source="known"))
    registry.register(env_id, reward=registry.record("Pendulum-v1").reward)
    try:
        with pytest.raises(ValueError, match="use_true_dynamics needs a pathwise System"):
            svgk.init(jax.random.key(0), from_env(env_id), dataclasses.replace(TINY_MODEL, use_true_dynamics=True))
    finally:
        registry.unregister(env_id)


def test_start_noise_moves_only_the_named_entries_of_the_imagined_starts():
    """start_noise: N(0, std²) per observation entry on the imagined rollouts' start states, none where std is 0."""
    starts = jnp.tile(jnp.array([1.0, -2.0, 0.5, 3.0]), (4000, 1))
    config = dataclasses.replace(TINY_MODEL, start_noise=(0.0, 0.5, 0.0, 0.05))
    moved_starts = np.asarray(svgk.perturbed(starts, jax.random.key(1), config))
    np.testing.assert_array_equal(moved_starts[:, [0, 2]], np.asarray(starts)[:, [0, 2]])
    np.testing.assert_allclose(moved_starts[:, [1, 3]].mean(0), [-2.0, 3.0], atol=0.03)
    np.testing.assert_allclose(moved_starts[:, [1, 3]].std(0), [0.5, 0.05], rtol=0.05)
    assert svgk.perturbed(starts, jax.random.key(1), TINY_MODEL) is starts  # none by default
    with pytest.raises(ValueError, match="start_noise holds 2 standard deviations.*observes 3 entries"):
        svgk.init(jax.random.key(0), from_env("Pendulum-v1"), dataclasses.replace(TINY_MODEL, start_noise=(0.0, 1.0)))


def test_start_noise_reaches_the_model_based_update():
    """The same run with start_noise on the angular velocity imagines from other states: other imagined rewards."""
    def imagined(config):
        loop = loops.make(ALGO, from_env("Pendulum-v1"), config)
        return loop.iteration(loop.init(jax.random.key(0)))[1]["imagined_reward"]

    noisy = dataclasses.replace(TINY_MODEL, start_noise=(0.0, 0.0, 2.0))
    assert imagined(noisy) != imagined(TINY_MODEL)


def test_start_noise_is_refused_where_svgk_runs_through_the_true_system():
    """The simulated (SHAC) loop starts from its carried simulations and would ignore start_noise: refused, by
    loops.make and by the vmapped seeds alike, also with use_true_dynamics on a Gymnasium id; without it the
    simulated loop is built (on a learned model the option is taken: the test above)."""
    noisy = dataclasses.replace(TINY, start_noise=(0.0, 1.0))
    spec = from_env("pathwise/Pendulum-v1")
    message = "start_noise=\\(0.0, 1.0\\) applies to a learned model only.*pathwise/Pendulum-v1.*Drop it"
    with pytest.raises(ValueError, match=message):
        loops.make(ALGO, spec, noisy)
    with pytest.raises(ValueError, match=message):
        simulated.train_seeds(ALGO, spec, noisy, 2, 1)
    with pytest.raises(ValueError, match="applies to a learned model only"):
        loops.make(ALGO, from_env("Pendulum-v1"), dataclasses.replace(noisy, use_true_dynamics=True))
    assert loops.make(ALGO, spec, TINY).kind == "simulated"


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "InvertedPendulum-v5", "MountainCarContinuous-v0"])
def test_presets_build_valid_configs(env_id):
    from pathwise import presets

    assert env_id in presets.available()["svgk"]
    values, run = registry.record(env_id).preset("svgk")
    config = cfg_mod.build(svgk.Config, "svgk", values)
    assert all(getattr(config, k) == (tuple(v) if isinstance(v, list) else v) for k, v in values.items())
    assert not config.use_true_dynamics and run["steps"] > 0


def test_mean_penalty_adds_the_squared_pre_squash_mean_and_frees_a_saturated_policy(pendulum_setup):
    """A policy whose tanh is saturated (pre-squash mean ≈ 10) gets no gradient from J_k; ``mean_penalty`` λ adds
    λ · mean μ(s_0)² to the loss and a gradient that lowers μ."""
    system, _, s0, _, _ = pendulum_setup
    state = svgk.init(jax.random.key(0), from_env("pathwise/Pendulum-v1"), TINY)
    policy = eqx.tree_at(lambda p: p.net.layers[-1].bias, state.policy, jnp.array([10.0]))
    starts = jnp.tile(s0, (TINY.n_envs, 1)) + 0.1 * jax.random.normal(jax.random.key(5), (TINY.n_envs, 2))
    xis = jax.random.normal(jax.random.key(6), (TINY.n_envs, TINY.horizon + 1, 1))
    zetas = system.sample_noise(jax.random.key(7), (TINY.n_envs, TINY.horizon))

    def loss_and_bias_grad(lam):
        grad_fn = eqx.filter_value_and_grad(svgk.actor_loss, has_aux=True)
        (loss, _), grads = grad_fn(policy, state.value, system, starts, xis, zetas, TINY.gamma, TINY.reward_scale,
                                   None, None, lam)
        return float(loss), float(grads.net.layers[-1].bias[0])

    plain, plain_grad = loss_and_bias_grad(0.0)
    penalized, penalized_grad = loss_and_bias_grad(1e-2)
    means = jax.vmap(lambda s: policy.mean_and_log_std(system.observe(s))[0])(starts)
    np.testing.assert_allclose(penalized - plain, 1e-2 * float(jnp.mean(means ** 2)), rtol=1e-5)
    assert abs(plain_grad) < 1e-6 < penalized_grad  # saturated: no gradient; penalized: descent lowers μ
    with pytest.raises(ValueError, match="mean_penalty"):
        dataclasses.replace(TINY, mean_penalty=-1.0)


def test_policy_value_and_model_see_the_records_unwrapped_angles_as_cos_sin():
    """CartPoleSwingUp's record names its pole angle (entry 2): svgk's policy and value, and the model its
    model-based loop would fit, are 2π-periodic in it; ``angle_features=()`` gives networks on the raw
    observation, and an index outside the observation is refused."""
    spec = from_env("pathwise/CartPoleSwingUp-v0")
    state = svgk.init(jax.random.key(0), spec, TINY)
    assert state.policy.angles == state.value.angles == TINY_MODEL.new_model(spec, jax.random.key(1)).angles == (2,)
    obs = jnp.array([0.1, -0.3, 2.0, 0.5])
    turned = obs.at[2].add(-4 * jnp.pi)
    np.testing.assert_allclose(state.policy.mean_and_log_std(turned)[0], state.policy.mean_and_log_std(obs)[0],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.value(turned), state.value(obs), rtol=1e-5, atol=1e-6)
    raw_state = svgk.init(jax.random.key(0), spec, dataclasses.replace(TINY, angle_features=()))
    assert raw_state.policy.angles == () and raw_state.value.net.layers[0].in_features == 4
    assert not np.allclose(raw_state.value(turned), raw_state.value(obs))
    with pytest.raises(ValueError, match="outside the 4-dim observation"):
        svgk.init(jax.random.key(0), spec, dataclasses.replace(TINY, angle_features=(4,)))


def test_log_std_min_floors_the_policys_spread_and_takes_no_gradient_below_it(pendulum_setup):
    """``log_std_min`` is the floor of the policy's σ: a free log σ below it acts as the floor (the imagined
    rollouts and the real episodes keep that spread) and gets no gradient from J_k there; a floor at or above
    the policy's ceiling is refused."""
    system, _, s0, _, _ = pendulum_setup
    config = dataclasses.replace(TINY, log_std_min=-2.3, init_log_std=-4.0)
    state = svgk.init(jax.random.key(0), from_env("pathwise/Pendulum-v1"), config)
    assert state.policy.log_std_min == -2.3
    _, log_std = state.policy.mean_and_log_std(system.observe(s0))
    np.testing.assert_allclose(log_std, [-2.3])
    starts = jnp.tile(s0, (TINY.n_envs, 1)) + 0.1 * jax.random.normal(jax.random.key(5), (TINY.n_envs, 2))
    xis = jax.random.normal(jax.random.key(6), (TINY.n_envs, TINY.horizon + 1, 1))
    zetas = system.sample_noise(jax.random.key(7), (TINY.n_envs, TINY.horizon))
    grads = eqx.filter_grad(lambda p: svgk.actor_loss(p, state.value, system, starts, xis, zetas, TINY.gamma,
                                                      TINY.reward_scale)[0])(state.policy)
    assert float(grads.log_std[0]) == 0.0 and float(jnp.abs(grads.net.layers[-1].bias[0])) > 0.0
    floorless = svgk.init(jax.random.key(0), from_env("pathwise/Pendulum-v1"), dataclasses.replace(TINY,
                                                                                                  init_log_std=-4.0))
    np.testing.assert_allclose(floorless.policy.mean_and_log_std(system.observe(s0))[1], [-4.0])  # default -5
    with pytest.raises(ValueError, match="log_std_min"):
        dataclasses.replace(TINY, log_std_min=2.0)


def test_actor_learning_rate_decays_to_its_final_fraction():
    """``actor_lr_decay_steps`` (as ddpg's and svg1's): the policy moves while its step is above 0 and stops after
    the decay's updates at final fraction 0, while the value keeps learning."""
    config = dataclasses.replace(TINY, actor_lr_decay_steps=2, actor_lr_final_fraction=0.0)
    loop = loops.make(ALGO, from_env("pathwise/Pendulum-v1"), config)
    start = loop.init(jax.random.key(1))
    first, _ = loop.iteration(start)  # updates 1 and 2: rates 1 and 0.5 of actor_lr
    second, _ = loop.iteration(first)  # past the decay
    assert moved(start.algo.policy, first.algo.policy)
    assert not moved(first.algo.policy, second.algo.policy) and moved(first.algo.value, second.algo.value)
    with pytest.raises(ValueError, match="actor_lr_final_fraction"):
        dataclasses.replace(TINY, actor_lr_final_fraction=1.5)


# ----------------------------------------------------------------------------- V fitted on real episodes too


class ConstantValue(eqx.Module):
    """V'(s) = c everywhere (the target value of the tests below)."""

    c: float = eqx.field(static=True)

    def __call__(self, obs):
        return jnp.asarray(self.c, jnp.float32) + 0.0 * obs[0]


def recent_of(episodes: list[tuple[list[float], bool]], steps: int = 5) -> replay.ReplayBuffer:
    """A recent-episode ring of ``steps``-padded episodes with the given rewards (observation t = (t, episode + 1)),
    the bool saying whether the last step terminated; one slot more than episodes, left empty (observations 0)."""
    pad = Transition(jnp.zeros((steps, 2)), jnp.zeros((steps, 1)), jnp.zeros(steps), jnp.zeros((steps, 2)),
                     jnp.zeros(steps, bool), jnp.zeros(steps, bool))
    buffer = replay.init((pad, jnp.int32(0)), len(episodes) + 1)
    for e, (rewards, terminated) in enumerate(episodes):
        n = len(rewards)
        obs = np.stack([np.arange(steps), np.full(steps, e + 1)], 1).astype(np.float32)
        term = np.zeros(steps, bool)
        term[n - 1] = terminated
        reward = np.zeros(steps, np.float32)
        reward[:n] = rewards
        ep = Transition(jnp.asarray(obs), jnp.zeros((steps, 1)), jnp.asarray(reward), jnp.asarray(obs + [1, 0]),
                        jnp.asarray(term), jnp.zeros(steps, bool))
        buffer = replay.add(buffer, (ep, jnp.int32(n)))
    return buffer


def test_real_targets_are_the_lambda_returns_of_the_recorded_episodes():
    """Against the recursion written out by hand: a cut episode closes with r + γ V'(s_T), a terminated one with r;
    padding and the empty slot get weight 0; every drawn row carries its own step's target."""
    gamma, lam, scale, c = 0.9, 0.5, 0.1, 2.0
    config = dataclasses.replace(TINY_MODEL, gamma=gamma, lam=lam, reward_scale=scale)
    recent = recent_of([([1.0, 2.0, 3.0], False), ([4.0, 5.0], True)])
    obs, targets, weights = map(np.asarray, svgk.real_targets(ConstantValue(c), recent, jax.random.key(0), 4000,
                                                              config))

    def expected(rewards, terminated):
        out, nxt = [], None
        for t in reversed(range(len(rewards))):
            last = t == len(rewards) - 1
            g = scale * rewards[t] + (0.0 if last and terminated else
                                      gamma * (c if last else (1 - lam) * c + lam * nxt))
            out.append(g)
            nxt = g
        return out[::-1]

    table = {(1, t): g for t, g in enumerate(expected([1.0, 2.0, 3.0], False))}
    table |= {(2, t): g for t, g in enumerate(expected([4.0, 5.0], True))}
    seen = set()
    for (t, e), g, w in zip(obs.astype(int), targets, weights):
        if (e, t) in table:
            assert w == 1.0 and g == pytest.approx(table[(e, t)], rel=1e-5)
            seen.add((e, t))
        else:
            assert w == 0.0  # padding, and the slot no episode filled (observations 0 there)
    assert seen == set(table)  # 4,000 draws over 15 slots reach every recorded step


def test_real_value_fits_v_on_the_real_episodes_as_well():
    """Same run, same keys: the imagined segments are those of the run without the option, but V (fitted on the
    real episode's targets as well) differs; the option is refused where svgk runs through the true System."""
    def run(config):
        loop = loops.make(ALGO, from_env("Pendulum-v1"), config)
        return loop.iteration(loop.init(jax.random.key(0)))

    (plain, m_plain), (real, m_real) = run(TINY_MODEL), run(dataclasses.replace(TINY_MODEL, real_value=True))
    assert m_plain["imagined_reward"] == m_real["imagined_reward"]
    assert m_plain["value_loss"] != m_real["value_loss"]
    assert moved(plain.algo.value, real.algo.value)
    with pytest.raises(ValueError, match="real_value=True applies to a learned model only"):
        loops.make(ALGO, from_env("pathwise/Pendulum-v1"), dataclasses.replace(TINY, real_value=True))
