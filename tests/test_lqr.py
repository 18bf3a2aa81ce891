"""LQR against SciPy / python-control, against one big least-squares problem, and its limits (float64)."""

import control
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from pathwise.control import lqr


def _random_system(rng, n, m):
    A = rng.normal(size=(n, n)) / np.sqrt(n) * 1.3  # often unstable, almost surely controllable
    B = rng.normal(size=(n, m))
    M = rng.normal(size=(n, n))
    Q = M @ M.T + 0.1 * np.eye(n)
    L = rng.normal(size=(m, m))
    R = L @ L.T + 0.5 * np.eye(m)
    return A, B, Q, R


@pytest.mark.parametrize("seed", range(6))
def test_infinite_horizon_matches_scipy_and_python_control(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(2, 6)), int(rng.integers(1, 4))
    A, B, Q, R = _random_system(rng, n, m)
    N = 0.1 * rng.normal(size=(n, m)) if seed % 2 else None
    with jax.enable_x64(True):
        sol = lqr(A, B, Q, R, N=N)
        K_ref, P_ref, _ = control.dlqr(A, B, Q, R, N) if N is not None else control.dlqr(A, B, Q, R)
        P_scipy = scipy.linalg.solve_discrete_are(A, B, Q, R, s=N)
        assert sol.K.dtype == jnp.float64
        np.testing.assert_allclose(sol.K, K_ref, rtol=1e-8, atol=1e-10 * np.abs(K_ref).max())
        np.testing.assert_allclose(sol.P, P_scipy, rtol=1e-8, atol=1e-10 * np.abs(P_scipy).max())
        assert bool(sol.converged)
        # closed loop is stable
        assert np.max(np.abs(np.linalg.eigvals(A - B @ np.asarray(sol.K)))) < 1


def _big_least_squares(A, B, Q, R, Qf, N, c, q, r, qf, x0, T):
    """min over U of the same cost, written as one quadratic in U = (u_0..u_{T-1}) and solved with numpy."""
    n, m = B.shape
    # x_t = Phi_t x0 + sum_s G_{t,s} u_s + d_t
    Phi = [np.eye(n)]
    d = [np.zeros(n)]
    G = [np.zeros((n, T * m))]
    for t in range(T):
        Phi.append(A @ Phi[-1])
        d.append(A @ d[-1] + c)
        Gt = A @ G[-1]
        Gt[:, t * m:(t + 1) * m] += B
        G.append(Gt)
    H = np.zeros((T * m, T * m))
    g = np.zeros(T * m)
    for t in range(T + 1):
        xc = Phi[t] @ x0 + d[t]  # constant part of x_t
        Gt = G[t]
        Qt = Qf if t == T else Q
        qt = qf if t == T else q
        H += Gt.T @ Qt @ Gt
        g += Gt.T @ (Qt @ xc + qt)
        if t < T:
            E = np.zeros((m, T * m))
            E[:, t * m:(t + 1) * m] = np.eye(m)
            H += E.T @ R @ E + Gt.T @ N @ E + E.T @ N.T @ Gt
            g += E.T @ (N.T @ xc + r)
    U = np.linalg.solve(H, -g)
    return U.reshape(T, m)


def test_finite_horizon_equals_one_big_least_squares_problem():
    rng = np.random.default_rng(7)
    n, m, T = 3, 2, 6
    A, B, Q, R = _random_system(rng, n, m)
    Qf = 2 * Q
    N = 0.1 * rng.normal(size=(n, m))
    c, q, r, qf = rng.normal(size=n), rng.normal(size=n), rng.normal(size=m), rng.normal(size=n)
    x0 = rng.normal(size=n)
    with jax.enable_x64(True):
        sol = lqr(A, B, Q, R, N=N, horizon=T, Qf=Qf, c=c, q=q, r=r, qf=qf, x0=x0)
        U = _big_least_squares(A, B, Q, R, Qf, N, c, q, r, qf, x0, T)
        np.testing.assert_allclose(sol.actions, U, rtol=1e-8, atol=1e-10)
        # the cost the DP reports is the cost of its trajectory, and x'P0 x + 2p0'x + const bounds nothing else
        assert sol.states.shape == (T + 1, n) and sol.K.shape == (T, m, n) and sol.P.shape == (T + 1, n, n)
        np.testing.assert_allclose(sol.states[1], A @ x0 + B @ U[0] + c, rtol=1e-10)


def test_time_varying_finite_horizon_matches_dense_solution():
    rng = np.random.default_rng(3)
    n, m, T = 2, 1, 4
    As = np.stack([_random_system(rng, n, m)[0] for _ in range(T)])
    Bs = rng.normal(size=(T, n, m))
    Q, R = np.eye(n), np.eye(m)
    x0 = rng.normal(size=n)
    with jax.enable_x64(True):
        sol = lqr(As, Bs, Q, R, horizon=T, Qf=Q, x0=x0)
        # brute force: optimize the actions of the same time-varying problem with a dense solve via autodiff
        def cost(U):
            x, J = jnp.asarray(x0), 0.0
            for t in range(T):
                J += x @ Q @ x + U[t] @ R @ U[t]
                x = As[t] @ x + Bs[t] @ U[t]
            return J + x @ Q @ x
        U0 = jnp.zeros((T, m))
        H = jax.hessian(cost)(U0).reshape(T * m, T * m)
        g = jax.grad(cost)(U0).reshape(-1)
        U = np.linalg.solve(H, -g).reshape(T, m)
        np.testing.assert_allclose(sol.actions, U, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(sol.cost, cost(jnp.asarray(U)), rtol=1e-10)


def test_finite_horizon_gain_converges_to_infinite_horizon_gain():
    rng = np.random.default_rng(11)
    A, B, Q, R = _random_system(rng, 3, 1)
    with jax.enable_x64(True):
        K_inf = lqr(A, B, Q, R).K
        errs = [float(jnp.abs(lqr(A, B, Q, R, horizon=T, Qf=Q).K[0] - K_inf).max()) for T in (2, 10, 50, 200)]
    assert errs[-1] < 1e-9 * max(1.0, float(np.abs(np.asarray(K_inf)).max()))
    assert errs[0] > errs[1] > errs[2] >= errs[3]


def test_batched_with_vmap_matches_per_system_solves():
    rng = np.random.default_rng(5)
    systems = [_random_system(rng, 3, 2) for _ in range(8)]
    A = np.stack([s[0] for s in systems])
    B = np.stack([s[1] for s in systems])
    Q, R = systems[0][2], systems[0][3]
    with jax.enable_x64(True):
        batched = jax.jit(jax.vmap(lambda a, b: lqr(a, b, Q, R)))(A, B)
        assert bool(jnp.all(batched.converged))
        for i in range(8):
            np.testing.assert_allclose(batched.K[i], lqr(A[i], B[i], Q, R).K, rtol=1e-10, atol=1e-12)


def test_bad_input_and_unstabilizable_system():
    A, B = np.eye(2), np.ones((2, 1))
    with pytest.raises(ValueError, match=r"Q must be square \(2, 2\).*got \(2, 3\)"):
        lqr(A, B, np.ones((2, 3)), np.eye(1))
    with pytest.raises(ValueError, match=r"B must have shape \(n, m\) = \(2, m\).*got \(3, 1\)"):
        lqr(A, np.ones((3, 1)), np.eye(2), np.eye(1))
    with pytest.raises(ValueError, match=r"R must be square \(1, 1\)"):
        lqr(A, B, np.eye(2), np.eye(2))
    with pytest.raises(ValueError, match="need a finite horizon"):
        lqr(A, B, np.eye(2), np.eye(1), x0=np.zeros(2))
    # an unstable mode the input cannot reach: no finite-cost controller exists
    with jax.enable_x64(True), pytest.raises(ValueError, match="did not converge.*stabilizable"):
        lqr(np.diag([1.5, 0.5]), np.array([[0.0], [1.0]]), np.eye(2), np.eye(1))


@pytest.mark.parametrize("kwargs, message", [
    ({"R": np.zeros((1, 1)), "horizon": 5, "Qf": np.zeros((2, 2))}, "Q_uu = R \\+ B'P B is singular"),
    ({"Q": np.diag([1.0, -1.0])}, "Q must be positive semidefinite"),
    ({"R": np.zeros((1, 1))}, "R must be positive definite"),  # infinite horizon: every action must cost
    ({"Q": np.array([[1.0, 0.5], [0.0, 1.0]])}, "Q must be symmetric"),
    ({"A": np.array([[np.nan, 0.0], [0.0, 1.0]])}, "A contains NaN or inf"),
    ({"horizon": 4, "x0": np.array([np.inf, 0.0])}, "x0 contains NaN or inf"),
    ({"horizon": 4, "Qf": -np.eye(2)}, "Qf must be positive semidefinite"),
])
def test_cost_matrices_and_values_are_checked(kwargs, message):
    """Indefinite costs, a singular Q_uu and non-finite entries are refused by name, not returned as NaN gains."""
    args = {"A": np.array([[1.0, 0.1], [0.0, 1.0]]), "B": np.array([[0.0], [0.1]]), "Q": np.eye(2),
            "R": np.eye(1), **kwargs}
    with pytest.raises(ValueError, match=message):
        lqr(args.pop("A"), args.pop("B"), args.pop("Q"), args.pop("R"), **args)


def test_a_finite_horizon_with_zero_action_cost_but_a_terminal_cost_is_fine():
    sol = lqr(np.eye(2), np.array([[0.0], [1.0]]), np.eye(2), np.zeros((1, 1)), horizon=3, Qf=np.eye(2))
    assert np.all(np.isfinite(np.asarray(sol.K)))
