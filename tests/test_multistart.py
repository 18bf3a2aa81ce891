"""Multi-start trajectory optimization: one vmapped solve of many guesses, the best kept."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pathwise as pw
from pathwise.control import MPC, Problem, ilqr, initial_guesses, multistart
from pathwise.control.multistart import best_index

OPTIMIZED = True  # a vmapped start must equal the solver alone after 60 chaotic iterations (tests/conftest.py)


HANG = jnp.array([jnp.pi, 0.0])  # Pendulum hanging at rest: a swing-up needs a push to leave it
T = 100  # the iLQR benchmark's swing-up horizon


@pytest.fixture(scope="module")
def pendulum():
    return pw.systems.Pendulum()


@pytest.fixture(scope="module")
def guesses(pendulum):
    return initial_guesses(pendulum, T, pushes=(0.5, 1.0), random=8, key=jax.random.key(0))


@pytest.fixture(scope="module")
def result(pendulum, guesses):
    return multistart(pendulum, HANG, guesses, max_iterations=60)


def test_initial_guesses_layout_and_box(pendulum, guesses):
    assert guesses.shape == (1 + 2 * 2 + 8, T, 1) and guesses.dtype == jnp.float32
    np.testing.assert_allclose(guesses[0], 0.0)  # the box midpoint
    np.testing.assert_allclose(guesses[1:5, 0, 0], [1.0, -1.0, 2.0, -2.0])  # midpoint ± p · half-width
    random = np.asarray(guesses[5:])
    assert np.all(np.abs(random) <= 2.0) and np.std(random) > 0.5  # uniform in Pendulum's torque box [-2, 2]
    plan = jnp.full((T, 1), 0.3)
    with_plan = initial_guesses(pendulum, T, include=plan)
    assert with_plan.shape == (4, T, 1)
    np.testing.assert_allclose(with_plan[0], plan)  # given sequences come first
    problem = Problem(dynamics=lambda x, u: x + u, cost=lambda x, u: x @ x + u @ u)
    unboxed = initial_guesses(problem, 5, action_dim=2, random=2, key=jax.random.key(1), scale=0.1)
    assert unboxed.shape == (3 + 2, 5, 2) and float(jnp.max(jnp.abs(unboxed))) <= 0.1 + 1e-7


def test_each_start_is_the_solver_alone_and_the_cheapest_is_kept(pendulum, guesses, result):
    assert result.costs.shape == (guesses.shape[0],) and result.solutions.actions.shape == guesses.shape
    for i in (0, 3, 6):  # a vmapped start equals the solver run from that guess on its own
        alone = ilqr(pendulum, HANG, guesses[i], max_iterations=60)
        np.testing.assert_allclose(result.costs[i], alone.cost, rtol=1e-4)
        np.testing.assert_allclose(result.solutions.actions[i], alone.actions, rtol=1e-3, atol=1e-3)
    assert int(result.index) == int(jnp.argmin(result.costs))
    np.testing.assert_allclose(result.best.cost, jnp.min(result.costs))
    np.testing.assert_allclose(result.best.actions, result.solutions.actions[result.index])
    # the point of it: iLQR from the zero guess stops in a local optimum (cost 422, the figure);
    # a random start finds a cheaper swing-up
    assert float(result.best.cost) < 0.9 * float(result.costs[0])
    assert float(jnp.cos(result.best.states[-1, 0])) > 0.9


def test_same_shapes_reuse_the_compiled_program(pendulum, guesses, result, compilations):
    shifted, x0 = jax.block_until_ready((guesses + 0.01, HANG + 0.01))
    with compilations() as n:
        again = multistart(pendulum, x0, shifted, max_iterations=60)
        jax.block_until_ready(again.best.cost)
    assert n[0] == 0
    assert float(again.best.cost) < 0.7 * float(again.costs[0])


def test_screening_continues_only_the_cheapest_starts(pendulum, guesses, result):
    screened = multistart(pendulum, HANG, guesses, max_iterations=60, keep=3, screen_iterations=10)
    first = multistart(pendulum, HANG, guesses, max_iterations=10)  # the screening stage on its own
    kept = np.argsort(np.asarray(first.costs))[:3]
    out = np.setdiff1d(np.arange(guesses.shape[0]), kept)
    np.testing.assert_allclose(screened.costs[out], first.costs[out], rtol=1e-5)  # screened out: stage 1 answer
    again = multistart(pendulum, HANG, first.solutions.actions[kept], max_iterations=60)  # kept: solved on
    np.testing.assert_allclose(screened.costs[kept], again.costs, rtol=1e-4)
    np.testing.assert_array_equal(screened.iterations[kept], again.iterations + first.iterations[kept])
    assert screened.solutions.cost_history.shape == (guesses.shape[0], 61)
    np.testing.assert_allclose(screened.solutions.cost_history[out, -1], first.costs[out], rtol=1e-6)
    assert int(screened.index) in kept and float(screened.best.cost) <= float(jnp.min(screened.costs))
    assert float(screened.best.cost) <= float(result.best.cost) * 1.01  # as good as running all to the end here


def test_staged_screening_halves_the_starts_in_turn(pendulum, guesses):
    staged = multistart(pendulum, HANG, guesses, max_iterations=60, keep=(4, 2), screen_iterations=(10, 5))
    first = multistart(pendulum, HANG, guesses, max_iterations=10)  # stage 1: every guess
    four = np.argsort(np.asarray(first.costs), kind="stable")[:4]
    second = multistart(pendulum, HANG, first.solutions.actions[four], max_iterations=5)  # stage 2: the best 4
    two = np.argsort(np.asarray(second.costs), kind="stable")[:2]
    last = multistart(pendulum, HANG, second.solutions.actions[two], max_iterations=60)  # the best 2 to the end
    out1 = np.setdiff1d(np.arange(guesses.shape[0]), four)
    np.testing.assert_allclose(staged.costs[out1], first.costs[out1], rtol=1e-5)
    np.testing.assert_allclose(staged.costs[four[np.setdiff1d(np.arange(4), two)]],
                               second.costs[np.setdiff1d(np.arange(4), two)], rtol=1e-4)
    np.testing.assert_allclose(staged.costs[four[two]], last.costs, rtol=1e-4)
    np.testing.assert_array_equal(staged.iterations[four[two]],
                                  last.iterations + second.iterations[two] + first.iterations[four[two]])
    assert staged.solutions.cost_history.shape == (guesses.shape[0], 61)
    assert int(staged.index) in four[two]


def test_shooting_and_ddp_multistarts(pendulum):
    starts = initial_guesses(pendulum, 20, pushes=(0.5,))
    ddp = multistart(pendulum, HANG, starts, solver="ddp", max_iterations=20)
    one = ilqr(pendulum, HANG, starts[1], max_iterations=20, second_order=True)
    np.testing.assert_allclose(ddp.costs[1], one.cost, rtol=1e-4)
    lbfgs = multistart(pendulum, HANG, starts, solver="shooting", optimizer="lbfgs", max_iterations=50)
    assert bool(jnp.all(jnp.isfinite(lbfgs.costs))) and float(lbfgs.best.cost) <= float(jnp.min(lbfgs.costs))
    assert float(jnp.max(jnp.abs(lbfgs.solutions.actions))) <= 2.0 + 1e-6  # projected into the box


def test_best_index_skips_non_finite_costs_and_can_prefer_converged():
    costs = jnp.array([jnp.nan, 3.0, 1.0, jnp.inf])
    converged = jnp.array([True, True, False, False])
    assert int(best_index(costs, converged)) == 2
    assert int(best_index(costs, converged, prefer_converged=True)) == 1
    assert int(best_index(costs, jnp.zeros(4, bool), prefer_converged=True)) == 2  # none converged: cheapest


def test_mpc_restarts_plan_through_multistart(pendulum):
    mpc = MPC(pendulum, horizon=15, iterations=2, init_iterations=20, restarts=True)
    assert mpc.initial_guesses().shape == (3, 15, 1)
    _, actions, rewards = jax.jit(lambda s: mpc.rollout(s, 5))(jnp.array([0.3, 0.0]))
    assert bool(jnp.all(jnp.isfinite(rewards))) and float(jnp.max(jnp.abs(actions))) <= 2.0 + 1e-6


def test_bad_inputs_are_refused_with_the_fix(pendulum, guesses):
    with pytest.raises(ValueError, match="solver must be one of"):
        multistart(pendulum, HANG, guesses, solver="cem")
    with pytest.raises(TypeError, match="options not accepted by ilqr"):
        multistart(pendulum, HANG, guesses, optimizer="lbfgs")
    with pytest.raises(ValueError, match=r"shape \(S, T, m\)"):
        multistart(pendulum, HANG, guesses[0])
    with pytest.raises(ValueError, match="NaN or inf"):
        multistart(pendulum, HANG, guesses.at[2, 3, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="screen_iterations must be in"):
        multistart(pendulum, HANG, guesses, keep=2, screen_iterations=100)  # ilqr's default max_iterations=100
    with pytest.raises(ValueError, match="keep must be a number of starts"):
        multistart(pendulum, HANG, guesses, keep=0)
    with pytest.raises(ValueError, match="fewer starts each time"):
        multistart(pendulum, HANG, guesses, keep=(2, 4))
    with pytest.raises(ValueError, match="one number for every stage or one per stage"):
        multistart(pendulum, HANG, guesses, keep=(4, 2), screen_iterations=(10, 10, 10))
    with pytest.raises(ValueError, match="random guesses need a key"):
        initial_guesses(pendulum, T, random=2)
    with pytest.raises(ValueError, match="give action_dim"):
        initial_guesses(Problem(dynamics=lambda x, u: x, cost=lambda x, u: x @ x), T)
    with pytest.raises(ValueError, match="include must hold sequences"):
        initial_guesses(pendulum, T, include=jnp.zeros((T + 1, 1)))
