"""Gradient shooting against the finite-horizon LQR solution and a scipy box-constrained reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import pathwise as pw
from pathwise.control.lqr import lqr
from pathwise.control.shooting import projected_gradient_norm, shooting
from pathwise.control.solution import Problem, total_cost

A = jnp.array([[1.0, 0.1], [0.0, 1.0]])
B = jnp.array([[0.0], [0.1]])
Q = jnp.eye(2)
R = 0.1 * jnp.eye(1)
QF = 5.0 * jnp.eye(2)
T = 20
X0 = jnp.array([1.0, -0.5])


def lq_problem():
    return Problem(lambda x, u: A @ x + B @ u, lambda x, u: x @ Q @ x + u @ R @ u, lambda x: x @ QF @ x)


def test_lbfgs_reaches_the_lqr_solution_in_few_iterations():
    ref = lqr(A, B, Q, R, horizon=T, Qf=QF, x0=X0)
    with jax.enable_x64(True):  # float32 inputs stay float32 although the line search proposes float64 steps
        # cost_tol=0: run to the gradient test (the default cost stop leaves the actions ~sqrt(ftol) accurate)
        sol = shooting(lq_problem(), X0, jnp.zeros((T, 1), jnp.float32), optimizer="lbfgs", max_iterations=60,
                       bounds=None, cost_tol=0.0)
    assert sol.actions.dtype == jnp.float32
    assert bool(sol.converged)
    assert int(sol.iterations) <= 40  # a quadratic in 20 variables: L-BFGS needs a few dozen steps at most
    np.testing.assert_allclose(sol.actions, ref.actions, atol=1e-4)
    np.testing.assert_allclose(sol.states, ref.states, atol=1e-4)
    np.testing.assert_allclose(sol.cost, ref.cost, rtol=1e-5)
    # the history starts at the initial guess, decreases (line search) and repeats the final cost
    hist = np.asarray(sol.cost_history)
    assert hist.shape == (61,)
    np.testing.assert_allclose(hist[0], total_cost(lq_problem(), X0, jnp.zeros((T, 1)))[1], rtol=1e-6)
    assert np.all(np.diff(hist) <= 1e-5 * hist[0])
    assert np.all(hist[int(sol.iterations):] == hist[-1])
    np.testing.assert_allclose(hist[-1], sol.cost, rtol=1e-6)
    assert sol.K.shape == (T, 1, 2) and not np.any(np.asarray(sol.K))


def test_adam_on_a_linear_system_matches_lqr_with_zero_final_cost():
    system = pw.systems.LinearSystem(A, B, Q, R)  # reward -(x'Qx + u'Ru), no terminal cost
    ref = lqr(A, B, Q, R, horizon=T, Qf=jnp.zeros((2, 2)), x0=X0)
    sol = shooting(system, X0, jnp.zeros((T, 1)), optimizer="adam", learning_rate=0.05, max_iterations=600)
    assert bool(sol.converged)
    np.testing.assert_allclose(sol.actions, ref.actions, atol=2e-3)
    np.testing.assert_allclose(sol.cost, ref.cost, rtol=1e-4)


def test_bounds_are_respected_and_match_a_box_constrained_reference():
    prob = lq_problem()
    vg = jax.jit(jax.value_and_grad(lambda u: total_cost(prob, X0, u.reshape(T, 1))[1]))

    def fun(u):
        v, g = vg(jnp.asarray(u, jnp.float32))
        return float(v), np.asarray(g, np.float64)

    ref = scipy.optimize.minimize(fun, np.zeros(T), jac=True, method="L-BFGS-B", bounds=[(-0.5, 0.5)] * T)
    assert ref.x.min() < -0.49  # the bound is active, so the test is about the box
    sol = shooting(prob, X0, jnp.zeros((T, 1)), optimizer="adam", max_iterations=800, bounds=(-0.5, 0.5))
    assert float(sol.actions.min()) >= -0.5 and float(sol.actions.max()) <= 0.5
    assert bool(sol.converged)
    np.testing.assert_allclose(sol.actions[:, 0], ref.x, atol=3e-3)
    np.testing.assert_allclose(sol.cost, ref.fun, rtol=1e-5)
    assert float(projected_gradient_norm(sol.actions, vg(sol.actions[:, 0])[1][:, None],
                                         (jnp.array([-0.5]), jnp.array([0.5])))) < 1e-3


def test_system_bounds_by_default_on_pendulum_and_jit():
    system = pw.systems.Pendulum()
    x0 = jnp.array([jnp.pi, 0.0])
    actions0 = jnp.full((30, 1), 5.0)  # outside [-2, 2]: projected into the box first

    @jax.jit
    def solve(x0, actions0):
        return shooting(system, x0, actions0, optimizer="adam", learning_rate=0.1, max_iterations=100)

    sol = solve(x0, actions0)
    assert float(jnp.abs(sol.actions).max()) <= 2.0
    hist = np.asarray(sol.cost_history)
    assert hist[-1] < hist[0]  # it improved on the projected guess
    np.testing.assert_allclose(sol.cost, total_cost(system, x0, sol.actions)[1], rtol=1e-6)
    np.testing.assert_allclose(sol.states[-1], total_cost(system, x0, sol.actions)[0][-1], rtol=1e-6)


def test_a_step_that_makes_the_cost_nan_is_rejected():
    # the cost is NaN for u > 1.5; Adam's first steps are ~learning_rate in size
    prob = Problem(lambda x, u: x, lambda x, u: jnp.sum((u - 2.0) ** 2) + 0.0 * jnp.sum(jnp.log(1.5 - u)))
    sol = shooting(prob, jnp.zeros(1), jnp.zeros((1, 1)), optimizer="adam", learning_rate=1.0, max_iterations=10)
    assert np.isfinite(float(sol.cost)) and np.all(np.isfinite(np.asarray(sol.cost_history)))
    assert not bool(sol.converged)
    assert int(sol.iterations) == 1
    np.testing.assert_allclose(sol.actions, [[1.0]], atol=1e-3)


@pytest.mark.parametrize(
    "x0, actions0, kwargs, match",
    [
        (X0, jnp.zeros(T), {}, r"actions0 must have shape \(T, m\)"),
        (X0[None], jnp.zeros((T, 1)), {}, r"x0 must be one state"),
        (jnp.array([jnp.nan, 0.0]), jnp.zeros((T, 1)), {}, "NaN"),
        (X0, jnp.full((T, 1), jnp.nan), {}, "NaN"),
        (X0, jnp.zeros((T, 1)), {"optimizer": "sgd"}, "optimizer must be"),
        (X0, jnp.zeros((T, 1)), {"bounds": "box"}, "bounds must be"),
        (X0, jnp.zeros((T, 1)), {"bounds": (1.0, -1.0)}, "low <= high"),
        (X0, jnp.zeros((T, 1)), {"max_iterations": -1}, "max_iterations"),
    ],
)
def test_bad_input_is_named(x0, actions0, kwargs, match):
    with pytest.raises(ValueError, match=match):
        shooting(lq_problem(), x0, actions0, **kwargs)


def test_discrete_system_is_refused():
    with pytest.raises(ValueError, match="discrete actions"):
        shooting(pw.systems.CartPole(), jnp.zeros(4), jnp.zeros((5, 1)))


def test_system_shapes_and_horizon_shorthand():
    system = pw.systems.Pendulum()
    with pytest.raises(ValueError, match=r"x0 must be a Pendulum state of shape \(2,\)"):
        shooting(system, jnp.zeros(3), jnp.zeros((5, 1)))
    with pytest.raises(ValueError, match=r"actions0 must have shape \(T, 1\)"):
        shooting(system, jnp.zeros(2), jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="a horizon alone"):
        shooting(lq_problem(), X0, 5)
    sol = shooting(system, jnp.array([0.1, 0.0]), 5, max_iterations=2)
    assert sol.actions.shape == (5, 1) and sol.states.shape == (6, 2) and sol.cost_history.shape == (3,)


def test_monotone_rejects_a_step_that_raises_the_cost_retries_once_then_stops():
    prob = lq_problem()
    cost0 = float(total_cost(prob, X0, jnp.zeros((T, 1)))[1])
    # plain gradient descent with a step far too long: every step overshoots and raises the cost
    sol = shooting(prob, X0, jnp.zeros((T, 1)), optimizer=optax.sgd(1e3), max_iterations=10, bounds=None,
                   monotone=True)
    assert int(sol.iterations) == 0 and not bool(sol.converged)
    np.testing.assert_allclose(sol.actions, 0.0)
    np.testing.assert_allclose(sol.cost_history, cost0, rtol=1e-6)
    # the same optimizer without the guard takes the steps
    loose = shooting(prob, X0, jnp.zeros((T, 1)), optimizer=optax.sgd(1e3), max_iterations=2, bounds=None)
    assert int(loose.iterations) == 2 and float(loose.cost) > cost0
    # a step size that decreases the cost is accepted under the guard
    ok = shooting(prob, X0, jnp.zeros((T, 1)), optimizer=optax.sgd(1e-2), max_iterations=5, bounds=None, monotone=True)
    assert int(ok.iterations) == 5 and np.all(np.diff(np.asarray(ok.cost_history)) < 0)
