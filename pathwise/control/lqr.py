"""Linear-quadratic regulators: the lecture's dynamic-programming slide, exactly.

Dynamics ``x_{t+1} = A_t x_t + B_t u_t + c_t`` and cost

    J = Σ_{t<T} [x_t'Q_t x_t + u_t'R_t u_t + 2 x_t'N_t u_t + 2 q_t'x_t + 2 r_t'u_t] + x_T'Q_f x_T + 2 q_f'x_T.

Writing the optimal cost-to-go as ``V_t(x) = x'P_t x + 2 p_t'x + const`` and
minimizing the stage's Q-function over u gives, backwards from ``P_T = Q_f``:

    Quu = R + B'P B,   Qux = N' + B'P A,   qu = r + B'(P c + p)
    K_t = Quu⁻¹ Qux,   k_t = Quu⁻¹ qu,     u_t* = −K_t x_t − k_t
    P_t = Q + A'P A − Qux'K_t,              p_t = q + A'(P c + p) − Qux'k_t

The infinite-horizon gain solves the discrete algebraic Riccati equation (the
fixed point of that recursion); it is computed by the structure-preserving
doubling algorithm, which converges quadratically, and follows
python-control's ``dlqr`` convention ``u = −K x``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pathwise.types import Array


class LQRSolution(NamedTuple):
    """Gains, value matrices and (when ``x0`` is given) the optimal trajectory.

    Infinite horizon: ``K`` (m, n), ``P`` (n, n), ``converged``, ``iterations``.
    Finite horizon: ``K`` (T, m, n), ``k`` (T, m), ``P`` (T+1, n, n), ``p`` (T+1, n),
    and with ``x0``: ``states`` (T+1, n), ``actions`` (T, m), ``cost``.
    """

    K: Array
    P: Array
    k: Array | None = None
    p: Array | None = None
    states: Array | None = None
    actions: Array | None = None
    cost: Array | None = None
    converged: Array | None = None
    iterations: Array | None = None
    residual: Array | None = None


def _as_float(x, name: str) -> Array:
    """A matrix argument as a floating-point array (integer matrices are promoted, not refused)."""
    try:
        x = jnp.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"lqr: {name} must be a numeric matrix, got {x!r} ({exc}).") from None
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    if not (jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_):
        raise ValueError(f"lqr: {name} must be a numeric matrix, got dtype {x.dtype}.")
    return x.astype(jnp.result_type(float))


def _is_traced(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in xs)


def _check(A, B, Q, R, N=None, time_varying=False):
    lead = 1 if time_varying else 0
    if A.ndim != 2 + lead or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"lqr: A must be square (n, n){' or (T, n, n)' if time_varying else ''}, got shape {A.shape}.")
    n = A.shape[-1]
    if B.ndim != 2 + lead or B.shape[-2] != n:
        raise ValueError(f"lqr: B must have shape (n, m) = ({n}, m) to match A {A.shape}, got {B.shape}.")
    m = B.shape[-1]
    if Q.shape[-2:] != (n, n):
        raise ValueError(f"lqr: Q must be square ({n}, {n}) to match A, got {Q.shape}.")
    if R.shape[-2:] != (m, m):
        raise ValueError(f"lqr: R must be square ({m}, {m}) to match B {B.shape}, got {R.shape}.")
    if N is not None and N.shape[-2:] != (n, m):
        raise ValueError(f"lqr: the cross term N must have shape ({n}, {m}), got {N.shape}.")
    return n, m


def _check_values(named: dict, psd: tuple[str, ...], pd: tuple[str, ...] = ()) -> None:
    """Concrete inputs only: every entry finite; the matrices in ``psd`` symmetric positive semidefinite and those
    in ``pd`` positive definite (to a relative tolerance), each error naming the matrix and the fix."""
    if _is_traced(*[x for x in named.values() if x is not None]):
        return
    for name, x in named.items():
        if x is not None and not np.all(np.isfinite(np.asarray(x))):
            raise ValueError(f"lqr: {name} contains NaN or inf; every entry must be finite.")
    for name in psd + pd:
        if named[name] is None:
            continue
        M = np.asarray(named[name], np.float64)
        scale = max(1.0, float(np.max(np.abs(M))))
        if not np.allclose(M, np.swapaxes(M, -1, -2), atol=1e-6 * scale):
            raise ValueError(f"lqr: {name} must be symmetric (the cost is x'{name}x); use ({name} + {name}.T) / 2.")
        low = float(np.min(np.linalg.eigvalsh(0.5 * (M + np.swapaxes(M, -1, -2)))))
        if name in pd and low <= 1e-12 * scale:
            raise ValueError(f"lqr: {name} must be positive definite (smallest eigenvalue {low:.3g}): every action "
                             "must cost something for the optimal gain to be unique; add a small multiple of I.")
        if low < -1e-6 * scale:
            raise ValueError(f"lqr: {name} must be positive semidefinite (smallest eigenvalue {low:.3g}); an "
                             "indefinite cost has no minimum.")


def _sym(P: Array) -> Array:
    return 0.5 * (P + jnp.swapaxes(P, -1, -2))


def dare(A: Array, B: Array, Q: Array, R: Array, N: Array | None = None, *, tol: float | None = None,
         max_iterations: int = 100) -> tuple[Array, Array, Array, Array]:
    """Solve the DARE by structure-preserving doubling: ``(P, converged, iterations, residual)`` (jittable)."""
    n = A.shape[-1]
    dtype = jnp.result_type(A, B, Q, R)
    tol = float(tol if tol is not None else (1e-12 if dtype == jnp.float64 else 1e-6))
    Rinv = jnp.linalg.inv(R)
    if N is not None:  # remove the cross term: u = v − R⁻¹N'x
        A = A - B @ Rinv @ N.T
        Q = Q - N @ Rinv @ N.T
    eye = jnp.eye(n, dtype=dtype)

    def body(carry):
        Ak, Gk, Hk, _, i = carry
        W = eye + Gk @ Hk
        WA = jnp.linalg.solve(W, Ak)  # (I + G H)⁻¹ A
        WG = jnp.linalg.solve(W, Gk)
        A1 = Ak @ WA
        G1 = _sym(Gk + Ak @ WG @ Ak.T)
        H1 = _sym(Hk + Ak.T @ Hk @ WA)
        delta = jnp.linalg.norm(H1 - Hk) / jnp.maximum(jnp.linalg.norm(H1), 1e-30)
        return A1, G1, H1, delta, i + 1

    def cond(carry):
        *_, delta, i = carry
        return (delta > tol) & (i < max_iterations) & jnp.isfinite(delta)

    init = (A, _sym(B @ Rinv @ B.T), _sym(Q), jnp.asarray(1.0, dtype), jnp.asarray(0))
    _, _, P, delta, iters = jax.lax.while_loop(cond, body, init)
    resid = _dare_residual(A, B, Q, R, P)
    converged = jnp.isfinite(delta) & (delta <= tol * 10) & jnp.all(jnp.isfinite(P)) & (resid < jnp.sqrt(tol))
    return P, converged, iters, resid


def _dare_residual(A, B, Q, R, P):
    S = R + B.T @ P @ B
    rhs = A.T @ P @ A - A.T @ P @ B @ jnp.linalg.solve(S, B.T @ P @ A) + Q
    return jnp.linalg.norm(rhs - P) / jnp.maximum(jnp.linalg.norm(P), 1.0)


def _infinite(A, B, Q, R, N, tol, max_iterations):
    P, converged, iters, resid = dare(A, B, Q, R, N, tol=tol, max_iterations=max_iterations)
    cross = B.T @ P @ A + (N.T if N is not None else 0.0)
    K = jnp.linalg.solve(R + B.T @ P @ B, cross)
    return LQRSolution(K=K, P=P, converged=converged, iterations=iters, residual=resid)


def _broadcast(x, T, shape):
    x = jnp.asarray(x)
    return jnp.broadcast_to(x, (T, *shape)) if x.ndim == len(shape) else x


def _finite(A, B, Q, R, N, Qf, c, q, r, qf, T, x0):
    n, m = A.shape[-1], B.shape[-1]
    dtype = jnp.result_type(A, B, Q, R)
    A, B, Q, R = (_broadcast(x, T, s) for x, s in ((A, (n, n)), (B, (n, m)), (Q, (n, n)), (R, (m, m))))
    N = _broadcast(jnp.zeros((n, m), dtype) if N is None else N, T, (n, m))
    c = _broadcast(jnp.zeros(n, dtype) if c is None else c, T, (n,))
    q = _broadcast(jnp.zeros(n, dtype) if q is None else q, T, (n,))
    r = _broadcast(jnp.zeros(m, dtype) if r is None else r, T, (m,))
    for name, x, s in (("A", A, (T, n, n)), ("B", B, (T, n, m)), ("Q", Q, (T, n, n)), ("R", R, (T, m, m)),
                       ("N", N, (T, n, m)), ("c", c, (T, n)), ("q", q, (T, n)), ("r", r, (T, m))):
        if x.shape != s:
            raise ValueError(f"lqr: {name} must have shape {s[1:]} or {s} for horizon {T}, got {x.shape}.")
    Qf = Q[-1] if Qf is None else jnp.asarray(Qf)
    qf = jnp.zeros(n, dtype) if qf is None else jnp.asarray(qf)
    if Qf.shape != (n, n) or qf.shape != (n,):
        raise ValueError(f"lqr: Qf must be ({n}, {n}) and qf ({n},), got {Qf.shape} and {qf.shape}.")

    def backward(carry, xs):
        P, p = carry
        At, Bt, Qt, Rt, Nt, ct, qt, rt = xs
        Pc_p = P @ ct + p
        Quu = Rt + Bt.T @ P @ Bt
        Qux = Nt.T + Bt.T @ P @ At
        qu = rt + Bt.T @ Pc_p
        K = jnp.linalg.solve(Quu, Qux)
        k = jnp.linalg.solve(Quu, qu)
        P_new = _sym(Qt + At.T @ P @ At - Qux.T @ K)
        p_new = qt + At.T @ Pc_p - Qux.T @ k
        return (P_new, p_new), (K, k, P_new, p_new)

    _, (K, k, Ps, ps) = jax.lax.scan(backward, (_sym(Qf), qf), (A, B, Q, R, N, c, q, r), reverse=True)
    P = jnp.concatenate([Ps, Qf[None]], 0)
    p = jnp.concatenate([ps, qf[None]], 0)
    sol = LQRSolution(K=K, P=P, k=k, p=p)
    if x0 is None:
        return sol
    x0 = jnp.asarray(x0, dtype)
    if x0.shape != (n,):
        raise ValueError(f"lqr: x0 must have shape ({n},), got {x0.shape}.")

    def forward(x, xs):
        At, Bt, Qt, Rt, Nt, ct, qt, rt, Kt, kt = xs
        u = -Kt @ x - kt
        cost = x @ Qt @ x + u @ Rt @ u + 2 * x @ Nt @ u + 2 * qt @ x + 2 * rt @ u
        return At @ x + Bt @ u + ct, (x, u, cost)

    xT, (xs, us, costs) = jax.lax.scan(forward, x0, (A, B, Q, R, N, c, q, r, K, k))
    total = costs.sum() + xT @ Qf @ xT + 2 * qf @ xT
    return sol._replace(states=jnp.concatenate([xs, xT[None]], 0), actions=us, cost=total)


def lqr(A, B, Q, R, *, N=None, horizon: int | None = None, Qf=None, c=None, q=None, r=None, qf=None, x0=None,
        tol: float | None = None, max_iterations: int = 100) -> LQRSolution:
    """Discrete LQR. Infinite horizon by default; finite horizon by backward DP with ``horizon=T``.

    Infinite horizon: ``sol.K`` with ``u = −K x`` (python-control's ``dlqr``) and ``sol.P``
    solving the DARE. Raises ``ValueError`` if the Riccati equation has no stabilizing
    solution (e.g. an unstabilizable (A, B)); under ``jit``/``vmap`` it returns
    ``sol.converged`` instead of raising.

    Finite horizon: ``A``, ``B``, ``Q``, ``R``, ``N``, ``c``, ``q``, ``r`` may be
    time-varying (a leading axis of length T); ``Qf`` defaults to ``Q[T-1]``. Gains
    ``K[t]``, ``k[t]`` with ``u_t = −K[t] x_t − k[t]``; with ``x0`` also the optimal
    trajectory and its cost.
    """
    A, B, Q, R = (_as_float(x, name) for x, name in ((A, "A"), (B, "B"), (Q, "Q"), (R, "R")))
    N = None if N is None else _as_float(N, "N")
    if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer))):
        raise ValueError(f"lqr: horizon must be a whole number of steps >= 1 (or None for the infinite horizon), got "
                         f"{horizon!r}.")
    if horizon is None:
        if any(x is not None for x in (Qf, c, q, r, qf, x0)):
            raise ValueError("lqr: Qf, affine terms and x0 need a finite horizon (pass horizon=T).")
        _check(A, B, Q, R, N)
        _check_values({"A": A, "B": B, "Q": Q, "R": R, "N": N}, psd=("Q",), pd=("R",))
        sol = _infinite(A, B, Q, R, N, tol, max_iterations)
        if not _is_traced(A, B, Q, R, sol.converged) and not bool(sol.converged):
            raise ValueError(
                f"lqr: the Riccati iteration did not converge (relative residual {float(sol.residual):.2e} after "
                f"{int(sol.iterations)} doublings). Is (A, B) stabilizable and (A, Q) detectable, and R positive "
                "definite? An uncontrollable unstable mode has no finite-cost controller.")
        return sol
    T = int(horizon)
    if T < 1:
        raise ValueError(f"lqr: horizon must be >= 1, got {horizon}.")
    _check(A, B, Q, R, N, time_varying=A.ndim == 3)
    _check_values({"A": A, "B": B, "Q": Q, "R": R, "N": N, "Qf": Qf, "c": c, "q": q, "r": r, "qf": qf, "x0": x0},
                  psd=("Q", "R") + (("Qf",) if Qf is not None else ()))
    sol = _finite(A, B, Q, R, N, Qf, c, q, r, qf, T, x0)
    if not _is_traced(A, B, Q, R, sol.K) and not np.all(np.isfinite(np.asarray(sol.K))):
        raise ValueError("lqr: the gains are not finite: Q_uu = R + B'P B is singular at some step (e.g. R = 0 "
                         "with Qf = 0). Make R positive definite, or Qf large enough that B'P B is.")
    return sol
