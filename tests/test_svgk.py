"""The SVG(k) value-gradient core (k = 0, 1, H special cases, TD(lambda)) and the SVGK learner."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise.algorithms import svg_core as core
from pathwise.algorithms import svgk
from pathwise.networks import QCritic, VCritic
from pathwise.systems import LinearSystem, Pendulum
from pathwise.systems.base import System

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
        policy = lambda obs, xi: gain @ obs + xi
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
    policy = lambda obs, xi: jnp.array([0.6])  # x: 0, 0.6, 1.2 (terminal), ...
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
    if lam == 0.0:
        np.testing.assert_allclose(got, r + 0.9 * c * v, rtol=1e-6)


def test_value_loss_is_weighted_mse():
    value = VCritic(2, (4,), key=jax.random.key(9))
    obs = jax.random.normal(jax.random.key(10), (3, 2, 2))
    targets, weights = jnp.arange(6.0).reshape(3, 2), jnp.array([[1.0, 0.0], [2.0, 1.0], [0.0, 1.0]])
    pred = jax.vmap(jax.vmap(value))(obs)
    expected = jnp.sum(weights * (pred - targets) ** 2) / weights.sum()
    np.testing.assert_allclose(core.value_loss(value, obs, targets, weights), expected, rtol=1e-6)


# ----------------------------------------------------------------------------- the SVGK learner (SHAC mode)

TINY = svgk.SVGKConfig(hidden=(8,), critic_hidden=(8,), horizon=4, n_envs=4, critic_iterations=2,
                       critic_minibatches=2, updates_per_iteration=2)


def test_learner_api_and_compile_once():
    learner = svgk.SVGK("pathwise/Pendulum-v1", TINY, seed=0)
    metrics = learner.train_iteration()
    assert learner.env_steps == 2 * 4 * 4
    assert all(np.isfinite(v) for v in metrics.values())
    traces = svgk.TRACE_COUNT["shac"]
    learner.train_iteration()
    assert svgk.TRACE_COUNT["shac"] == traces  # the second call reuses the compiled update
    action = learner.act(np.array([1.0, 0.0, 0.0], np.float32))
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0
    noisy = learner.act(np.array([1.0, 0.0, 0.0], np.float32), deterministic=False)
    assert noisy.shape == (1,)


def test_resume_is_exact():
    a = svgk.SVGK("pathwise/Pendulum-v1", TINY, seed=1)
    a.train_iteration()
    b = svgk.SVGK("pathwise/Pendulum-v1", TINY, seed=2)
    b.set_state(jax.tree.map(lambda x: x, a.get_state()))
    ma, mb = a.train_iteration(), b.train_iteration()
    assert ma == mb and a.env_steps == b.env_steps
    for x, y in zip(jax.tree.leaves(a.get_state()), jax.tree.leaves(b.get_state())):
        np.testing.assert_array_equal(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x,
                                      jax.random.key_data(y) if jnp.issubdtype(y.dtype, jax.dtypes.prng_key) else y)


def test_simulations_restart_at_the_episode_limit():
    system = Pendulum()
    states = jnp.array([[0.1, 0.0], [0.2, 0.0], [0.3, 0.0]])
    time = jnp.array([200, 10, 50])
    continues = jnp.array([1.0, 1.0, 0.0])
    new, new_time = svgk.restart_finished(system, states, time, continues, jax.random.key(0), 200)
    np.testing.assert_array_equal(new_time, [0, 10, 0])
    np.testing.assert_array_equal(new[1], states[1])
    assert not np.allclose(new[0], states[0]) and not np.allclose(new[2], states[2])


def test_bad_config_and_env_errors():
    with pytest.raises(ValueError, match="horizon"):
        svgk.SVGK("pathwise/Pendulum-v1", dataclasses.replace(TINY, horizon=0))
    with pytest.raises(ValueError, match="divisible"):
        svgk.SVGK("pathwise/Pendulum-v1", dataclasses.replace(TINY, critic_minibatches=3))
    with pytest.raises(ValueError, match="continuous"):
        svgk.SVGK("pathwise/CartPole-v1", TINY)


# ----------------------------------------------------------------------------- the SVGK learner (learned model)

TINY_MODEL = dataclasses.replace(TINY, model_hidden=(16,), model_steps_per_epoch=5, model_max_epochs=2,
                                 model_batch=64, updates_per_episode=2, buffer_size=1000, recent_episodes=1)


def test_learned_model_mode_counts_real_steps_and_resumes():
    learner = svgk.SVGK("Pendulum-v1", TINY_MODEL, seed=0)
    assert learner.describe()["dynamics"] == "learned model"
    start = jax.tree.map(lambda x: x, learner.get_state())
    metrics = learner.train_iteration()
    assert learner.env_steps == 200  # one real Gymnasium episode, not imagined steps
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert "value_loss" in metrics and "model_one_step_mse" in metrics
    traces = svgk.TRACE_COUNT["model"]
    other = svgk.SVGK("Pendulum-v1", TINY_MODEL, seed=5)
    other.set_state(start)
    assert other.train_iteration() == metrics and other.env_steps == 200  # resume is exact
    assert svgk.TRACE_COUNT["model"] == traces  # the actor-critic update compiled once
    action = learner.act(np.array([1.0, 0.0, 0.0], np.float32))
    assert action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0


def test_learned_model_needs_a_known_reward():
    import gymnasium as gym

    env_id = "PathwiseTestNoRewardPendulum-v0"  # a Gymnasium env pathwise.rewards knows nothing about
    if env_id not in gym.registry:
        gym.register(env_id, entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv", max_episode_steps=20)
    with pytest.raises(ValueError, match="known reward of 'PathwiseTestNoRewardPendulum-v0'.*rewards.register"):
        svgk.SVGK(env_id, TINY_MODEL)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "InvertedPendulum-v5"])
def test_presets_build_valid_configs(env_id):
    from pathwise import presets
    from pathwise.train import build_config

    assert env_id in presets.available()["svgk"]
    values, run = presets.load("svgk", env_id)
    config, run_settings = build_config(svgk.SVGK, env_id)
    svgk.validate_config(config)
    assert all(getattr(config, k) == (tuple(v) if isinstance(v, list) else v) for k, v in values.items())
    assert not config.use_true_dynamics and run_settings["steps"] == run["steps"] > 0
