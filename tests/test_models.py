"""Learned dynamics: fitting recovers known dynamics, LearnedModel is a System, bad input is refused."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise.models import Dataset, DynamicsModel, FitConfig, LearnedModel, Normalizer, fit
from pathwise.models.fit import epoch_steps
from pathwise.rollout import rollout
from pathwise.systems import LinearSystem, Pendulum

A = np.array([[0.9, 0.1], [-0.2, 0.95]], np.float32)
B = np.array([[0.0], [0.5]], np.float32)
FAST = FitConfig(max_epochs=40, steps_per_epoch=50, patience=40)


def linear_data(n: int, seed: int = 0, noise: float = 0.0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    u = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    x2 = x @ A.T + u @ B.T + noise * rng.standard_normal((n, 2)).astype(np.float32)
    return Dataset(x, u, x2, np.zeros(n, bool))


@pytest.fixture(scope="module")
def linear_fit():
    model = DynamicsModel(2, 1, (64, 64), key=jax.random.key(0))
    return fit(model, linear_data(400), FAST, jax.random.key(1))


def test_fit_recovers_linear_system(linear_fit):
    model, report = linear_fit
    test = linear_data(200, seed=7)
    pred = jax.vmap(model)(test.obs, test.actions)
    # Independent reference: A x + B u. Tolerance: 1% of the state range.
    np.testing.assert_allclose(pred, test.next_obs, atol=2e-2)
    assert report.one_step_mse < 1e-4
    assert report.num_train + report.num_val == 400 and report.num_val >= 10


def test_normalizers_are_data_statistics(linear_fit):
    model, _ = linear_fit
    # Inputs are uniform on [-1, 1]: mean 0, std 1/sqrt(3) (closed form), within sampling error.
    np.testing.assert_allclose(model.in_norm.mean, 0.0, atol=0.1)
    np.testing.assert_allclose(model.in_norm.std, 1 / np.sqrt(3), atol=0.05)
    z = Normalizer(jnp.array([1.0, 2.0]), jnp.array([2.0, 4.0]))
    np.testing.assert_allclose(z.denormalize(z.normalize(jnp.array([3.0, -1.0]))), [3.0, -1.0])


def test_multi_step_error_on_trajectories():
    system = LinearSystem(A, B)
    key = jax.random.key(3)
    k1, k2 = jax.random.split(key)
    x0 = jax.random.uniform(k1, (8, 2), minval=-1, maxval=1)
    us = jax.random.uniform(k2, (8, 50, 1), minval=-1, maxval=1)
    traj = jax.vmap(lambda x, u: rollout(system, lambda o, xi: xi, x, 50, policy_noise=u))(x0, us)
    nxt = jnp.concatenate([traj.states[:, 1:], traj.final_state[:, None]], axis=1)
    ends = np.zeros((8, 50), bool)
    ends[:, -1] = True
    data = Dataset(*(np.asarray(a).reshape(-1, a.shape[-1]) for a in (traj.observations, traj.actions, nxt)),
                   ends.reshape(-1))
    model, report = fit(DynamicsModel(2, 1, (64, 64), key=jax.random.key(0)), data, FAST, jax.random.key(1))
    assert np.isfinite(report.multi_step_mse)
    # Open-loop error grows with the horizon but stays small for a well fitted linear model.
    assert report.one_step_mse <= report.multi_step_mse < 5e-2


def test_second_fit_does_not_recompile(linear_fit, compilations):
    model, _ = linear_fit
    fit(model, linear_data(300, seed=1), FitConfig(max_epochs=2), jax.random.key(2))
    with compilations() as n:
        fit(model, linear_data(350, seed=2), FitConfig(max_epochs=2), jax.random.key(3))
    assert n[0] == 0


def test_steps_per_transition_scales_epochs_without_recompiling(linear_fit, compilations):
    cfg = FitConfig(steps_per_epoch=100, steps_per_transition=0.25, max_epochs=2)
    assert epoch_steps(cfg, 90) == 23 and epoch_steps(cfg, 1000) == 100 and epoch_steps(cfg, 1) == 1
    assert epoch_steps(FitConfig(steps_per_epoch=7), 10_000) == 7  # 0: the fixed epoch length
    model, _ = linear_fit
    fit(model, linear_data(100, seed=1), cfg, jax.random.key(2))
    # other data-set sizes (other step counts, both inside the 4096-row minimum capacity) reuse the program
    with compilations() as n:
        _, short = fit(model, linear_data(200, seed=2), cfg, jax.random.key(3))
        _, long = fit(model, linear_data(2000, seed=3), cfg, jax.random.key(3))
    assert n[0] == 0
    assert short.num_train + short.num_val == 200 and long.num_train + long.num_val == 2000


def test_fewer_steps_fit_less():
    # the step count is a traced loop bound: 1 Adam step per epoch must leave a visibly worse fit than 50
    data = linear_data(400)
    model = DynamicsModel(2, 1, (32, 32), key=jax.random.key(0))
    few = FitConfig(steps_per_epoch=50, steps_per_transition=1e-6, max_epochs=3, patience=3)
    many = FitConfig(steps_per_epoch=50, max_epochs=3, patience=3)
    _, r_few = fit(model, data, few, jax.random.key(1))
    _, r_many = fit(model, data, many, jax.random.key(1))
    assert r_many.val_loss < 0.5 * r_few.val_loss


def test_bad_fit_config_is_refused():
    with pytest.raises(ValueError, match="min_capacity"):
        fit(DynamicsModel(2, 1, (8,), key=jax.random.key(0)), linear_data(100), FitConfig(steps_per_transition=-1))


def test_gaussian_ensemble_learns_noise_level():
    sigma = 0.1
    model = DynamicsModel(2, 1, (32, 32), key=jax.random.key(4), ensemble_size=3, gaussian=True)
    model, _ = fit(model, linear_data(800, noise=sigma), FitConfig(max_epochs=25, patience=25), jax.random.key(5))
    test = linear_data(100, seed=9)
    _, log_var = jax.vmap(model.normalized_outputs)(test.obs, test.actions)  # normalized units
    std = np.exp(0.5 * np.asarray(log_var)) * np.asarray(model.out_norm.std)
    assert model.member_predictions(test.obs[0], test.actions[0]).shape == (3, 2)
    # Reference: the true noise std; 30% tolerance for 1000 samples and a finite fit.
    np.testing.assert_allclose(np.median(std.reshape(-1, 2), axis=0), sigma, rtol=0.3)


def test_bad_data_is_refused():
    model = DynamicsModel(2, 1, (8,), key=jax.random.key(0))
    data = linear_data(100)
    obs = data.obs.copy()
    obs[5, 1] = np.nan
    with pytest.raises(ValueError, match="obs contains NaN"):
        fit(model, data._replace(obs=obs), FAST)
    with pytest.raises(ValueError, match="need at least 40"):
        fit(model, linear_data(12), FAST)
    with pytest.raises(ValueError, match="expected obs"):
        fit(model, data._replace(actions=data.actions[:50]), FAST)


def pendulum_reward(obs, action, next_obs):
    del next_obs
    th = jnp.arctan2(obs[1], obs[0])
    return -(th**2 + 0.1 * obs[2] ** 2 + 0.001 * jnp.clip(action[0], -2, 2) ** 2)


def test_learned_model_is_a_system():
    model = DynamicsModel(3, 1, (16,), key=jax.random.key(0))
    init = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.5]])
    system = LearnedModel(model, pendulum_reward, action_low=-2.0, action_high=2.0, initial_obs=init, horizon=7)
    assert (system.state_dim, system.obs_dim, system.action_dim, system.episode_length) == (3, 3, 1, 7)
    s0 = system.reset(jax.random.key(1))
    assert any(np.allclose(s0, row) for row in init)
    # Actions are clipped into the box as the real environment does.
    np.testing.assert_allclose(system.step(s0, jnp.array([5.0])), model(s0, jnp.array([2.0])), rtol=1e-6)
    traj = rollout(system, lambda o: jnp.array([0.3]), s0, 7)
    np.testing.assert_allclose(traj.rewards[0], pendulum_reward(s0, jnp.array([0.3]), None), rtol=1e-6)
    # The true Pendulum reward on states equals the observation-space reward (independent reference).
    st = jnp.array([0.4, -1.2])
    np.testing.assert_allclose(pendulum_reward(Pendulum().observe(st), jnp.array([0.7]), None),
                               Pendulum().reward(st, jnp.array([0.7])), rtol=1e-6)
    with pytest.raises(ValueError, match="needs a reward"):
        LearnedModel(model, None, action_low=-2.0, action_high=2.0)
    with pytest.raises(ValueError, match="action must have shape"):
        system.step(s0, jnp.array(1.0))


def finite_horizon_lqr(a, b, q, r, horizon):
    """Independent reference: backward Riccati recursion for sum_{t<T} x'Qx + u'Ru (no terminal cost)."""
    p, gains = np.zeros_like(q), []
    for _ in range(horizon):
        k = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
        p = q + a.T @ p @ (a - b @ k)
        gains.append(k)
    return gains[::-1]


Q, R = np.eye(2, dtype=np.float32), 0.1 * np.eye(1, dtype=np.float32)


def quadratic_reward(obs, action, next_obs):
    del next_obs
    return -(obs @ Q @ obs + action @ R @ action)


def test_learned_model_through_ilqr_and_mpc(linear_fit):
    """The fitted model of x' = Ax + Bu is a System that pw.control.ilqr and pw.control.MPC take unchanged."""
    from pathwise.control import MPC, ilqr

    model, _ = linear_fit
    horizon = 15
    system = LearnedModel(model, quadratic_reward, action_low=-1.0, action_high=1.0, horizon=horizon)
    x0 = np.array([0.6, -0.4], np.float32)
    sol = ilqr(system, jnp.asarray(x0), horizon)
    assert bool(sol.converged) and sol.states.shape == (horizon + 1, 2) and sol.K.shape == (horizon, 1, 2)
    # The solution is a trajectory of the learned model...
    np.testing.assert_allclose(sol.states[1:], jax.vmap(system.dynamics)(sol.states[:-1], sol.actions),
                               rtol=1e-4, atol=1e-5)
    # ...and its actions are the true system's finite-horizon LQR actions, up to the model's error.
    x, expected = x0, []
    for k in finite_horizon_lqr(A, B, Q, R, horizon):
        u = -k @ x
        expected.append(u)
        x = A @ x + B @ u
    expected = np.array(expected)
    assert np.abs(expected).max() < 1.0  # the box does not bind, so LQR is the exact reference
    np.testing.assert_allclose(sol.actions, expected, atol=0.03)

    # MPC planning on the learned model, acting on the true system: close to the exact LQR closed loop.
    mpc = MPC(system, horizon=horizon, iterations=3)
    plan, x, cost_mpc, cost_lqr, x_lqr = mpc.init(jnp.asarray(x0)), x0, 0.0, 0.0, x0
    k_inf = finite_horizon_lqr(A, B, Q, R, 200)[0]
    for _ in range(20):
        plan, u = mpc.step(plan, jnp.asarray(x))
        u = np.asarray(u)
        cost_mpc += float(x @ Q @ x + u @ R @ u)
        x = A @ x + B @ u
        u_lqr = -k_inf @ x_lqr
        cost_lqr += float(x_lqr @ Q @ x_lqr + u_lqr @ R @ u_lqr)
        x_lqr = A @ x_lqr + B @ u_lqr
    assert np.linalg.norm(x) < 0.1 * np.linalg.norm(x0)
    assert cost_mpc <= 1.05 * cost_lqr
    # The controller's own closed loop on the model runs too (a jitted lax.scan over MPC steps).
    states, actions, rewards = mpc.rollout(jnp.asarray(x0), 5)
    assert states.shape == (6, 2) and actions.shape == (5, 1) and np.all(np.isfinite(rewards))


NO_REWARD = "PathwiseTestNoRewardPendulum-v0"  # a Gymnasium env that pathwise.rewards knows nothing about


@pytest.mark.parametrize("algo", ["mbrl", "svg-inf", "svg1", "svgk"])
def test_model_based_learners_refuse_an_env_without_a_known_reward(algo):
    """No registered reward and reward_source='known' (the model-based loop's, and svg1's own model): a clear error
    naming the env and the fix, before any training."""
    import dataclasses

    import gymnasium as gym

    from pathwise import algorithms, loops, rewards, spec
    from pathwise.train import make_run

    if NO_REWARD not in gym.registry:
        gym.register(NO_REWARD, entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv",
                     max_episode_steps=20)
    assert not rewards.has(NO_REWARD)
    algorithm = algorithms.get(algo)
    config = dataclasses.replace(algorithm.Config(), reward_source="known")  # else the model learns the reward
    overrides = {"reward_source": "known"}
    message = f"reward_source='known' but no reward of '{NO_REWARD}' is registered"
    with pytest.raises(ValueError, match=message):  # through the driver (pathwise train, pw.make)
        make_run(algo, NO_REWARD, overrides=overrides)
    with pytest.raises(ValueError, match=message):  # and building its loop directly
        loops.make(algorithm, spec.from_env(NO_REWARD), config)


class NaNAfterPendulum:
    """Gymnasium Pendulum whose observations turn NaN after 30 steps (a broken sensor / simulator)."""

    def __new__(cls, **kwargs):
        import gymnasium as gym

        class Env(gym.Wrapper):
            def reset(self, *, seed=None, options=None):
                self.t = 0
                return self.env.reset(seed=seed, options=options)

            def step(self, action):
                obs, r, term, trunc, info = self.env.step(action)
                self.t += 1
                return (obs * np.nan if self.t > 30 else obs), r, term, trunc, info

        from gymnasium.envs.classic_control.pendulum import PendulumEnv

        return Env(PendulumEnv())


@pytest.mark.parametrize("algo", ["mbrl", "svgk"])
def test_nan_observations_stop_the_model_fit_with_a_clear_error(algo):
    """NaN observations from the env reach pathwise.models.fit, which names the problem instead of fitting NaN."""
    import gymnasium as gym

    from pathwise import registry, rewards
    from pathwise.train import make_run

    env_id = "PathwiseTestNaNPendulum-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=NaNAfterPendulum, max_episode_steps=60)
    rewards.register(env_id, rewards.get("Pendulum-v1"), overwrite=True)
    try:
        run, _ = make_run(algo, env_id, use_preset=False)
        with pytest.raises(ValueError, match="obs contains NaN or inf at rows .*drop those transitions"):
            run.iteration()
    finally:
        registry.unregister(env_id)


def test_too_small_for_the_held_out_split_is_refused():
    """Fewer transitions than the fit needs to hold out a validation block: a clear error, never a NaN model."""
    model = DynamicsModel(2, 1, (8,), key=jax.random.key(0))
    with pytest.raises(ValueError, match="Dataset too small to fit a model: 39 transitions, need at least 40"):
        fit(model, linear_data(39), FAST)
    with pytest.raises(ValueError, match="need at least 100 .*lower FitConfig.min_transitions"):
        fit(model, linear_data(60), FitConfig(multi_step=25, min_transitions=100))
    with pytest.raises(ValueError, match=r"min_transitions \(30\) must be at least 2 \* multi_step \(40\)"):
        fit(model, linear_data(60), FitConfig(multi_step=20, min_transitions=30))


def winding_data(n: int, turns: float, seed: int = 0) -> Dataset:
    """A hinge whose velocity is driven by sin(θ) (gravity on an arm), its angle θ observed unwrapped in
    ``[-turns·π, turns·π]``: o = (θ, ω), Δθ = 0.05 ω, Δω = 0.1 sin θ + 0.1 u."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-turns * np.pi, turns * np.pi, n)
    omega = rng.uniform(-1, 1, n)
    u = rng.uniform(-1, 1, (n, 1))
    x = np.stack([theta, omega], 1).astype(np.float32)
    x2 = np.stack([theta + 0.05 * omega, omega + 0.1 * np.sin(theta) + 0.1 * u[:, 0]], 1).astype(np.float32)
    return Dataset(x, u.astype(np.float32), x2, np.zeros(n, bool))


def test_a_model_sees_an_unwrapped_angle_periodically_and_predicts_it_a_turn_later():
    """With ``angles=(0,)`` the networks see (cos θ, sin θ): the prediction from θ + 2π is the one from θ plus 2π
    (exactly, before any fit), and a model fitted on one turn predicts three turns on (where a run's shoulder
    ends up) as well as it predicts the turn it saw, which the model on the raw angle cannot."""
    model = DynamicsModel(2, 1, (16,), key=jax.random.key(0), angles=(0,))
    o, a = jnp.array([0.3, -0.2]), jnp.array([0.5])
    np.testing.assert_allclose(model(o + jnp.array([6 * jnp.pi, 0.0]), a), model(o, a) + jnp.array([6 * jnp.pi, 0]),
                               rtol=0, atol=1e-5)
    assert model.inputs(o, a).shape == (4,)  # ω, cos θ, sin θ, u
    far = winding_data(500, 1, seed=1)
    far = far._replace(obs=far.obs + np.float32([6 * np.pi, 0]), next_obs=far.next_obs + np.float32([6 * np.pi, 0]))
    errors = {}
    for angles in ((0,), ()):
        fitted, _ = fit(DynamicsModel(2, 1, (64, 64), key=jax.random.key(0), angles=angles), winding_data(2000, 1),
                        FAST, jax.random.key(1))
        errors[angles] = float(jnp.abs(jax.vmap(fitted)(far.obs, far.actions) - far.next_obs)[:, 1].mean())
    assert errors[(0,)] < 0.01 < errors[()], errors  # |Δω| is up to 0.2
