"""iLQR/DDP: exact on linear-quadratic problems, a Pendulum swing-up, bounds (box-QP optimality against SciPy),
`converged` as a KKT test, no NaN, MPC, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

import pathwise as pw
from pathwise.control import MPC, MPCPolicy, Problem, ilqr, lqr

A = np.array([[1.1, 0.2], [0.0, 0.9]])
B = np.array([[0.5], [1.0]])
Q, R = np.eye(2), np.array([[0.1]])
T = 15


def lq_problem():
    Aj, Bj, Qj, Rj = (jnp.asarray(m) for m in (A, B, Q, R))
    return Problem(dynamics=lambda x, u: Aj @ x + Bj @ u, cost=lambda x, u: x @ Qj @ x + u @ Rj @ u,
                   final_cost=lambda x: 2.0 * x @ Qj @ x)


def test_linear_quadratic_is_solved_exactly_in_one_iteration():
    with jax.enable_x64(True):
        x0 = jnp.array([1.0, -0.5])
        ref = lqr(A, B, Q, R, horizon=T, Qf=2.0 * Q, x0=x0)
        for second_order in (False, True):
            sol = ilqr(lq_problem(), x0, jnp.zeros((T, 1)), max_iterations=1, second_order=second_order)
            np.testing.assert_allclose(sol.actions, ref.actions, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(sol.states, ref.states, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(sol.cost, ref.cost, rtol=1e-10)
            # the feedback gains are LQR's (iLQR writes u = ū + K(x − x̄), LQR u = −Kx − k)
            np.testing.assert_allclose(sol.K, -ref.K, rtol=1e-8, atol=1e-10)
            assert int(sol.iterations) == 1
        full = ilqr(lq_problem(), x0, jnp.zeros((T, 1)))
        assert bool(full.converged) and int(full.iterations) <= 3


def test_pendulum_swing_up_from_rest_reaches_the_top():
    system = pw.systems.Pendulum()
    sol = ilqr(system, jnp.array([jnp.pi, 0.0]), 60, max_iterations=100)
    assert bool(jnp.all(jnp.isfinite(sol.states))) and bool(jnp.isfinite(sol.cost))
    top = jnp.cos(sol.states[-1, 0])
    assert float(top) > 0.85, sol.states[-5:]  # within ~0.5 rad of upright after 3 s
    hist = np.asarray(sol.cost_history)
    assert np.all(np.diff(hist) <= 1e-4 * hist[0])  # the line search only accepts decreases
    assert float(sol.cost) < 0.6 * hist[0]
    assert np.all(np.abs(np.asarray(sol.actions)) <= 2.0 + 1e-6)  # Pendulum's torque box
    # the returned cost is the trajectory's cost
    states, cost = pw.control.total_cost(system, jnp.array([jnp.pi, 0.0]), sol.actions)
    np.testing.assert_allclose(cost, sol.cost, rtol=1e-5)
    np.testing.assert_allclose(states, sol.states, rtol=1e-5, atol=1e-5)


def test_box_bounds_are_respected_and_active_coordinates_have_no_feedback():
    prob = lq_problem()._replace(action_low=jnp.array([-0.2]), action_high=jnp.array([0.2]))
    x0 = jnp.array([3.0, -2.0])
    sol = ilqr(prob, x0, jnp.zeros((T, 1)), max_iterations=30)
    u = np.asarray(sol.actions)
    assert np.all(np.abs(u) <= 0.2 + 1e-6) and np.any(np.isclose(np.abs(u), 0.2, atol=1e-5))
    free = ilqr(lq_problem(), x0, jnp.zeros((T, 1)))
    assert float(sol.cost) >= float(free.cost) - 1e-3  # a constrained optimum cannot beat the free one
    # clamped steps use no feedback on the clamped coordinate (box-QP active set)
    saturated = np.isclose(np.abs(u[:, 0]), 0.2, atol=1e-6)
    assert np.allclose(np.asarray(sol.K)[saturated], 0.0)


def test_never_returns_nan_when_the_cost_blows_up():
    # exp cost overflows in float32 for large steps: the line search must reject them
    prob = Problem(dynamics=lambda x, u: x + u, cost=lambda x, u: jnp.exp(10.0 * jnp.sum(x**2)) + jnp.sum(u**2))
    sol = ilqr(prob, jnp.array([0.8]), jnp.zeros((5, 1)), max_iterations=20)
    assert bool(jnp.isfinite(sol.cost)) and bool(jnp.all(jnp.isfinite(sol.actions)))
    assert float(sol.cost) <= float(sol.cost_history[0])


def test_ilqr_is_vmappable_and_does_not_recompile():
    system = pw.systems.Pendulum()
    x0s = jnp.array([[0.5, 0.0], [-0.5, 1.0], [1.0, -1.0]])
    batch = jax.vmap(lambda x: ilqr(system, x, jnp.zeros((20, 1)), max_iterations=10).cost)(x0s)
    single = [float(ilqr(system, x, jnp.zeros((20, 1)), max_iterations=10).cost) for x in x0s]
    np.testing.assert_allclose(batch, single, rtol=1e-4)
    from pathwise.control.ilqr import _solve_jit

    before = _solve_jit._cached._cache_size()
    ilqr(system, jnp.array([0.1, 0.2]), jnp.zeros((20, 1)), max_iterations=10)
    assert _solve_jit._cached._cache_size() == before  # same shapes and options: no new compilation


def test_mpc_balances_on_the_system_and_on_gymnasium():
    system = pw.systems.Pendulum()
    mpc = MPC(system, horizon=15, iterations=2, init_iterations=30)
    # from 0.3 rad gravity (15 sin θ) is within the torque box (3 |u| ≤ 6): MPC holds it up
    states, actions, rewards = jax.jit(lambda s: mpc.rollout(s, 40))(jnp.array([0.3, 0.0]))
    assert float(jnp.cos(states[-1, 0])) > 0.99 and float(rewards[-1]) > -0.05
    policy = MPCPolicy(mpc)
    result = pw.envs.evaluate(policy, "Pendulum-v1", episodes=1, seed=3, max_steps=40)
    assert np.isfinite(result.mean)
    # warm start: the plan is reused, not recomputed, while the state is the one it predicted
    obs = np.array([np.cos(0.3), np.sin(0.3), 0.0], np.float32)
    policy.reset()
    a1 = policy(obs)
    plan = policy.plan
    assert plan is not None and np.all(np.abs(a1) <= 2.0)


def test_errors_name_the_problem():
    system = pw.systems.Pendulum()
    with pytest.raises(ValueError, match="x0 must be a Pendulum state of shape"):
        ilqr(system, jnp.zeros(3), 10)
    with pytest.raises(ValueError, match=r"actions0 must have shape \(T, 1\)"):
        ilqr(system, jnp.zeros(2), jnp.zeros((10, 2)))
    with pytest.raises(ValueError, match="actions0 must have shape"):
        ilqr(system, jnp.zeros(2), jnp.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        ilqr(system, jnp.array([jnp.nan, 0.0]), 10)
    with pytest.raises(ValueError, match="discrete actions"):
        ilqr(pw.systems.CartPole(), jnp.zeros(4), 10)
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        MPC(system, horizon=0)


# ---- box constraints: optimality against references, and `converged` as a KKT test ----------------------------

def _linear(A, B, x, u):
    return A @ x + B @ u


def _quadratic(Q, R, x, u):
    return x @ Q @ x + u @ R @ u


def _final(Qf, x):
    return x @ Qf @ x


def _pendulum(x, u):  # Pendulum-v1's dynamics without its own torque and speed clips (smooth)
    thdot = x[1] + 0.05 * (15.0 * jnp.sin(x[0]) + 3.0 * u[0])
    return jnp.stack([x[0] + 0.05 * thdot, thdot])


def _pendulum_cost(x, u):
    return x[0] ** 2 + 0.1 * x[1] ** 2 + 0.001 * u[0] ** 2


def _pendulum_final(x):
    return 10.0 * (x[0] ** 2 + 0.1 * x[1] ** 2)


def lbfgsb(prob, x0, actions0):
    """SciPy's L-BFGS-B on the open-loop cost with the exact JAX gradient, bounded by the problem's box."""
    T, m = actions0.shape
    value_and_grad = jax.jit(jax.value_and_grad(lambda u: pw.control.total_cost(prob, x0, u.reshape(T, m))[1]))
    bounds = list(zip(np.broadcast_to(prob.action_low, (T, m)).ravel(),
                      np.broadcast_to(prob.action_high, (T, m)).ravel()))
    return scipy.optimize.minimize(lambda u: tuple(np.asarray(a) for a in value_and_grad(jnp.asarray(u))),
                                   np.asarray(actions0).ravel(), jac=True, method="L-BFGS-B", bounds=bounds,
                                   options=dict(ftol=1e-16, gtol=1e-12, maxiter=20000, maxfun=40000, maxcor=30))


def box_qp(prob, x0, horizon, m, limit):
    """The exact optimum of a linear-quadratic problem with a box: ``J(u) = J(0) + g'u + u'Hu/2`` (H from
    ``jax.hessian``, positive definite) is ``||L'u + L^{-1} g||^2 / 2 + const`` with ``H = L L'``, a bounded
    least-squares problem that SciPy's ``lsq_linear`` solves with BVLS, an active-set method that ends at the exact
    optimum (an iterative L-BFGS-B reference can stop early: SciPy 1.17's does here, 0.2% above it)."""
    cost = lambda u: pw.control.total_cost(prob, x0, u.reshape(horizon, m))[1]  # noqa: E731
    zero = jnp.zeros(horizon * m)
    H, g, c = np.asarray(jax.hessian(cost)(zero)), np.asarray(jax.grad(cost)(zero)), float(cost(zero))
    L = np.linalg.cholesky(H)
    b = -scipy.linalg.solve_triangular(L, g, lower=True)
    res = scipy.optimize.lsq_linear(L.T, b, bounds=(-limit, limit), method="bvls", tol=1e-14)
    assert res.success, res.message
    return res.x, float(cost(jnp.asarray(res.x)))


def check_kkt(prob, x0, sol, tol):
    """``projected_gradient_norm`` is ‖u − clip(u − ∇J)‖, and converged=True never comes with it above tol."""
    grad = jax.grad(lambda u: pw.control.total_cost(prob, x0, u)[1])(sol.actions)
    u = sol.actions
    expected = jnp.linalg.norm(u - jnp.clip(u - grad, prob.action_low, prob.action_high))
    np.testing.assert_allclose(sol.projected_gradient_norm, expected, rtol=1e-3, atol=1e-12)
    if bool(sol.converged):
        assert float(sol.projected_gradient_norm) <= tol * max(1.0, abs(float(sol.cost)))


def test_box_constrained_linear_quadratic_matches_a_qp_reference():
    rng = np.random.default_rng(0)
    n, m, horizon, tol = 3, 2, 15, 1e-8
    with jax.enable_x64(True):
        for _ in range(3):
            A = np.eye(n) + 0.2 * rng.normal(size=(n, n))
            B, L = rng.normal(size=(n, m)), rng.normal(size=(n, n))
            Q, R = L @ L.T / n + 0.1 * np.eye(n), 0.1 * np.eye(m)
            x0 = jnp.asarray(2.0 * rng.normal(size=n))
            free = Problem(jax.tree_util.Partial(_linear, jnp.asarray(A), jnp.asarray(B)),
                           jax.tree_util.Partial(_quadratic, jnp.asarray(Q), jnp.asarray(R)),
                           jax.tree_util.Partial(_final, jnp.asarray(5.0 * Q)))
            limit = 0.4 * float(jnp.abs(ilqr(free, x0, jnp.zeros((horizon, m))).actions).max())
            prob = free._replace(action_low=jnp.full(m, -limit), action_high=jnp.full(m, limit))
            ref_x, ref_fun = box_qp(prob, x0, horizon, m, limit)  # a convex QP: solved exactly
            at_bound = np.isclose(np.abs(ref_x), limit, rtol=1e-6)
            assert 0 < at_bound.sum() < horizon * m  # some, not all, actions held at a limit
            for second_order in (False, True):
                sol = ilqr(prob, x0, jnp.zeros((horizon, m)), second_order=second_order, tol=tol)
                assert bool(sol.converged)
                assert abs(float(sol.cost) - ref_fun) <= 1e-4 * abs(ref_fun)
                check_kkt(prob, x0, sol, tol)


@pytest.mark.parametrize("second_order", [False, True])
def test_pendulum_with_a_binding_torque_limit_matches_lbfgsb_from_its_answer(second_order):
    rng = np.random.default_rng(1)
    horizon, tol = 50, 1e-8
    starts = [(np.pi, 0.0, 2.0)]  # the swing-up from rest: one-pass clamping left DDP far above the optimum
    starts += [(rng.uniform(-0.3, 0.3), rng.uniform(-2.0, 2.0), rng.uniform(1.0, 1.5)) for _ in range(2)]  # recover
    starts += [(rng.uniform(2.5, 3.1), rng.uniform(-0.5, 0.5), rng.uniform(1.5, 2.5))]  # swing up
    with jax.enable_x64(True):
        for theta, omega, limit in starts:
            prob = Problem(_pendulum, _pendulum_cost, _pendulum_final, jnp.array([-limit]), jnp.array([limit]))
            x0 = jnp.array([theta, omega])
            sol = ilqr(prob, x0, jnp.zeros((horizon, 1)), second_order=second_order, tol=tol)
            assert np.any(np.isclose(np.abs(np.asarray(sol.actions)), limit))  # the limit binds
            ref = lbfgsb(prob, x0, sol.actions)  # descends further if iLQR stopped short of a local optimum
            assert bool(sol.converged)
            assert float(sol.cost) - ref.fun <= 1e-4 * abs(ref.fun), (theta, omega, limit, float(sol.cost), ref.fun)
            check_kkt(prob, x0, sol, tol)


def test_converged_is_never_reported_with_a_large_projected_gradient():
    system = pw.systems.Pendulum()  # float32, torque box [-2, 2] binding during the swing-up
    prob = pw.control.as_problem(system)
    x0 = jnp.array([jnp.pi, 0.0])
    for second_order in (False, True):
        for iterations in (1, 100):
            sol = ilqr(system, x0, 60, max_iterations=iterations, second_order=second_order)
            check_kkt(prob, x0, sol, 1e-6)
            if iterations == 1:  # one step from rest is not a swing-up
                assert not bool(sol.converged)
            if iterations == 100:
                assert bool(sol.converged)


def test_mpc_plan_reports_the_inner_solve_kkt_residual():
    system = pw.systems.Pendulum()
    mpc = MPC(system, horizon=15, iterations=2, init_iterations=30)
    state = jnp.array([0.3, 0.0])
    plan = mpc.init(state)
    expected = pw.control.kkt_residual(pw.control.as_problem(system), state, plan.actions)
    np.testing.assert_allclose(plan.projected_gradient_norm, expected, rtol=1e-3, atol=1e-6)
    assert not bool(plan.converged) or float(plan.projected_gradient_norm) <= 1e-6 * max(1.0, abs(float(plan.cost)))
    plan, _ = mpc.step(plan, state)
    assert plan.converged.shape == () and bool(jnp.isfinite(plan.projected_gradient_norm))
