"""Sampling planners (CEM, MPPI): against finite-horizon LQR, the action box, termination, warm starts, policy
seeding, bad input, no recompilation, and (slow) the Pendulum ceiling."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pathwise as pw
from pathwise.control import CEMConfig, MPPIConfig, SamplingMPC, cem, mppi

DI = pw.systems.double_integrator()  # dt 0.1, Q = I, R = 0.1 I
X0 = jnp.array([1.0, 0.0])
H = 20


@eqx.filter_jit
def solve(solver, system, state, key, config, **kwargs):
    """``solver(system, state, key, config, **kwargs)`` compiled (once per solver, config and options)."""
    return solver(system, state, key, config, **kwargs)


def lqr_cost(horizon: int = H) -> float:
    """The optimal cost of the system's H-step problem without terminal cost (what a planner's return sums)."""
    return float(pw.control.lqr(DI.A, DI.B, DI.Q, DI.R, horizon=horizon, Qf=jnp.zeros((2, 2)), x0=X0).cost)


@pytest.mark.parametrize("solver, config, tolerance", [
    (cem, CEMConfig(horizon=H, samples=500, elites=50, init_iterations=30), 1e-4),
    (mppi, MPPIConfig(horizon=H, samples=500, std=0.3, temperature=0.01, init_iterations=30), 1e-2),
])
def test_plans_reach_the_finite_horizon_lqr_optimum(solver, config, tolerance):
    """On the double integrator the open-loop plan's cost is within ``tolerance`` (relative) of the LQR optimum
    of the same H-step problem; the zero plan it starts from is 58% above it."""
    result = solve(solver, DI, X0, jax.random.key(0), config)
    _, cost = pw.control.total_cost(DI, X0, result.actions)
    optimum = lqr_cost()
    assert optimum * (1 - 1e-6) <= float(cost) <= (1 + tolerance) * optimum, (float(cost), optimum)
    assert float(-result.best_return) >= optimum * (1 - 1e-6)  # no sample beats the optimum
    assert float(result.best_return) == float(jnp.max(result.history))  # the best of all iterations is kept
    _, zero = pw.control.total_cost(DI, X0, jnp.zeros((H, 1)))
    assert float(zero) > 1.5 * optimum


def test_samples_are_clipped_into_the_action_box():
    """Wide sampling (std 10 on Pendulum's ±2 box): every plan and sample stays in the box, and the best one sits
    on its faces (the swing-up wants full torque)."""
    system, config = pw.systems.Pendulum(), CEMConfig(horizon=15, samples=64, elites=8, std=10.0, init_iterations=3)
    result = solve(cem, system, jnp.array([jnp.pi, 0.0]), jax.random.key(1), config)
    assert result.actions.shape == result.std.shape == result.best_actions.shape == (15, 1)
    assert result.history.shape == (3,) and result.best_return.shape == ()
    for actions in (result.actions, result.best_actions):
        assert float(jnp.max(jnp.abs(actions))) <= 2.0
    assert float(jnp.max(jnp.abs(result.best_actions))) == 2.0


class Walk(pw.systems.System):
    """x' = x + u, reward u, terminated once x > 1: a planner that counted rewards past the end would run on."""

    name: ClassVar[str] = "Walk"
    state_dim: ClassVar[int] = 1
    obs_dim: ClassVar[int] = 1
    episode_length: ClassVar[int] = 10

    def initial_state(self, key):
        """Zero."""
        return jnp.zeros(1)

    def dynamics(self, state, action):
        """x + u."""
        return state + action

    def reward(self, state, action, next_state=None):
        """u."""
        return action[0]

    def observe(self, state):
        """x."""
        return state

    def terminated(self, state):
        """x > 1."""
        return state[0] > 1.0


def test_rewards_and_terminal_value_stop_at_termination():
    """Unmasked, ten steps of u = 1 would return 10. Masked, the return holds the rewards up to the step that ends
    the episode (at most 1 + 1); with a terminal value of 100 (also masked) the plan stops short of the end."""
    config = CEMConfig(horizon=10, samples=200, elites=20, init_iterations=15)
    best = solve(cem, Walk(), jnp.zeros(1), jax.random.key(0), config).best_return
    assert 1.5 < float(best) <= 2.0 + 1e-5
    valued = solve(cem, Walk(), jnp.zeros(1), jax.random.key(0), config, value=lambda obs: jnp.asarray(100.0))
    assert 100.5 < float(valued.best_return) <= 101.0 + 1e-5
    states, _, rewards = eqx.filter_jit(lambda p: p.rollout(jnp.zeros(1), 6))(SamplingMPC(Walk(), config))
    ended = np.flatnonzero(np.asarray(states[1:, 0]) > 1.0)
    assert ended.size and np.all(np.asarray(rewards)[ended[0] + 1:] == 0)  # nothing counts after the end
    held = np.asarray(states)[ended[0] + 1:]
    assert np.all(held == held[0])  # and the state is held where the episode ended


def test_policy_seeding_brings_the_policys_quality_in_one_iteration():
    """TD-MPC's seeding: half the samples roll the LQR policy (with noise 0.01); after one iteration the best sample
    is at least as good as the policy itself (2% above the H-step optimum), where Gaussian samples around zero alone
    stay more than 10% above it."""
    K = pw.control.lqr(DI.A, DI.B, DI.Q, DI.R).K
    A, B, Q, R, K = (np.asarray(m, np.float64) for m in (DI.A, DI.B, DI.Q, DI.R, K))
    x, policy_cost = np.asarray(X0, np.float64), 0.0
    for _ in range(H):  # the policy's own H-step cost
        u = -K @ x
        policy_cost, x = policy_cost + x @ Q @ x + u @ R @ u, A @ x + B @ u
    config = CEMConfig(horizon=H, samples=64, elites=8, std=0.5, policy_fraction=0.5, policy_std=0.01)
    seeded = solve(cem, DI, X0, jax.random.key(0), config, policy=lambda obs, key: -jnp.asarray(K, jnp.float32) @ obs,
                   iterations=1)
    plain = solve(cem, DI, X0, jax.random.key(0), dataclasses.replace(config, policy_fraction=0.0), iterations=1)
    optimum = lqr_cost()
    assert -float(seeded.best_return) <= policy_cost + 1e-3 < 1.03 * optimum, (float(seeded.best_return), policy_cost)
    assert -float(plain.best_return) > 1.1 * optimum


def test_warm_start_shifts_the_mean_and_repeats_its_last_action():
    planner = SamplingMPC(pw.systems.Pendulum(), MPPIConfig(horizon=8, samples=16, iterations=2, init_iterations=2))
    state = jnp.array([1.0, 0.5])

    @eqx.filter_jit
    def warm_start(planner, state):
        plan = planner.init(state)
        new_plan, action = planner.step(plan, state)
        return plan, new_plan, action, planner.solve(state, jax.random.split(plan.key)[1], plan.actions, iterations=2)

    plan, new_plan, action, result = warm_start(planner, state)
    np.testing.assert_array_equal(action, result.actions[0])
    np.testing.assert_array_equal(new_plan.actions, jnp.concatenate([result.actions[1:], result.actions[-1:]]))
    np.testing.assert_allclose(new_plan.predicted, planner.system.step(state, action))
    assert not np.array_equal(jax.random.key_data(new_plan.key), jax.random.key_data(plan.key))  # fresh samples


def test_process_noise_is_zero_unless_asked_for():
    """Planning uses zero process noise by default (the plan of a noisy pendulum is that of a noiseless one); with
    ``process_noise=True`` each sample draws its own noise, scaled by the system's ``noise_std``."""
    noisy, quiet = pw.systems.Pendulum(noise_std=jnp.asarray(0.3)), pw.systems.Pendulum(noise_std=jnp.asarray(0.0))
    x, key = jnp.array([2.0, 0.0]), jax.random.key(2)
    config = CEMConfig(horizon=10, samples=32, elites=4, init_iterations=2)
    zero = solve(cem, noisy, x, key, config)
    np.testing.assert_array_equal(zero.actions, solve(cem, quiet, x, key, config).actions)
    config = dataclasses.replace(config, process_noise=True)
    np.testing.assert_array_equal(zero.actions, solve(cem, quiet, x, key, config).actions)
    assert not np.allclose(solve(cem, noisy, x, key, config).actions, zero.actions)


def test_a_learned_model_is_planned_through_as_any_system():
    """CEM on a (random) ``LearnedModel`` of Pendulum, passed into jit as an argument (its parameters and box
    traced, as a model-based loop passes a refit model): the best return it reports is the return of its best
    sequence replayed open loop through the model, and the plan keeps the model's action box."""
    from pathwise.models import DynamicsModel, LearnedModel

    model = DynamicsModel(3, 1, (16,), key=jax.random.key(0))
    system = LearnedModel(model, pw.rewards.get("Pendulum-v1"), action_low=-2.0, action_high=2.0)
    obs = jnp.array([-1.0, 0.0, 0.5])
    result = solve(cem, system, obs, jax.random.key(3), CEMConfig(horizon=8, samples=32, elites=4, std=3.0,
                                                                   init_iterations=2))
    replayed = pw.rollout.rollout(system, lambda o, u: u, obs, 8, policy_noise=result.best_actions).rewards.sum()
    np.testing.assert_allclose(result.best_return, replayed, rtol=1e-5)
    assert float(jnp.max(jnp.abs(result.actions))) <= 2.0


@pytest.mark.parametrize("make, match", [
    (lambda: CEMConfig(samples=0), "samples=0 must be >= 2"),
    (lambda: CEMConfig(samples=10, elites=20), "elites=20 must be <= samples=10"),
    (lambda: MPPIConfig(temperature=0.0), "temperature=0.0 must be > 0"),
    (lambda: CEMConfig(std=-1.0), "std=-1.0 must be > 0"),
    (lambda: CEMConfig(smoothing=1.0), "smoothing=1.0 must be in"),
    (lambda: cem(pw.systems.Pendulum(), jnp.zeros(2), jax.random.key(0), CEMConfig(horizon=5),
                 actions0=jnp.zeros((5, 2))), r"actions0 must have shape \(T, 1\)"),
    (lambda: cem(pw.systems.Pendulum(), jnp.zeros(2), jax.random.key(0), CEMConfig(horizon=5),
                 actions0=jnp.zeros((6, 1))), "warm start must cover the horizon"),
    (lambda: cem(pw.systems.Pendulum(), jnp.array([jnp.nan, 0.0]), jax.random.key(0)), "NaN"),
    (lambda: mppi(pw.systems.Pendulum(), jnp.zeros(2), jax.random.key(0), MPPIConfig(horizon=3),
                  actions0=jnp.full((3, 1), jnp.nan)), "NaN"),
    (lambda: cem(pw.systems.Pendulum(), jnp.zeros(2), jax.random.key(0), CEMConfig(policy_fraction=0.5)),
     "needs a policy"),
    (lambda: SamplingMPC(pw.systems.CartPole()), "discrete actions"),
])
def test_bad_input_is_refused_with_the_fix(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_config_type_is_refused():
    with pytest.raises(TypeError, match="must be a MPPIConfig"):
        mppi(pw.systems.Pendulum(), jnp.zeros(2), jax.random.key(0), CEMConfig())


def test_closed_loop_compiles_once(compilations):
    """The jitted closed loop is traced once: another start state and another key reuse it."""
    run = eqx.filter_jit(lambda planner, state: planner.rollout(state, 12))
    config = MPPIConfig(horizon=6, samples=16, iterations=1, init_iterations=2)
    first = run(SamplingMPC(pw.systems.Pendulum(), config), jnp.array([1.0, 0.0]))
    with compilations() as n:
        second = run(SamplingMPC(pw.systems.Pendulum(), config, key=jax.random.key(5)), jnp.array([2.0, 0.5]))
    assert n[0] == 0 and run._cached._cache_size() == 1
    assert second[0].shape == (13, 2) and second[1].shape == (12, 1) and second[2].shape == (12,)
    assert not np.allclose(first[1], second[1])


def test_mpc_policy_runs_a_sampling_planner_in_gymnasium():
    """``MPCPolicy`` drives Gymnasium's Pendulum-v1 with CEM (warm-started between steps) and swings it up: an
    episode from hanging nearly still returns better than -400 (doing nothing there scores below -1000)."""
    import gymnasium as gym

    policy = pw.control.MPCPolicy(SamplingMPC(pw.systems.Pendulum(), CEMConfig(horizon=20, samples=64, elites=8)))
    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array([np.pi - 0.1, 0.0])
    obs, total = env.unwrapped._get_obs(), 0.0
    for _ in range(200):
        obs, reward, *_ = env.step(policy(obs))
        total += reward
    env.close()
    assert policy.plan is not None and total > -400, total


@pytest.mark.slow
@pytest.mark.parametrize("config", [CEMConfig(), MPPIConfig()], ids=["cem", "mppi"])
def test_pendulum_reaches_the_ceiling_neighbourhood(config):
    """Receding-horizon CEM / MPPI (default configs: horizon 30, 400 samples, 5 refits a step) on the true Pendulum
    System, from the starts of the ceiling's first 10 evaluation episodes: the mean return is within 5% of the
    ceiling's mean on the same episodes (measured: about 3.5% below it)."""
    from pathwise.ceilings import EVALUATION_SEED, episode_ceilings

    ceilings = episode_ceilings("Pendulum-v1", EVALUATION_SEED, 10)
    assert ceilings is not None, "no measured ceiling: run python benchmarks/bench_ceiling.py"
    system = pw.systems.Pendulum()
    starts = jnp.asarray(pw.envs.reset_states("Pendulum-v1", 10, seed=EVALUATION_SEED))
    planner = SamplingMPC(system, config)
    returns = np.asarray(jax.jit(jax.vmap(lambda s: planner.rollout(s, system.episode_length)[2].sum()))(starts))
    assert returns.mean() >= 1.05 * ceilings.mean(), (returns.mean(), ceilings.mean())
