"""Iterative LQR and DDP: Newton's method on the action sequence, by dynamic programming.

Around the current trajectory (x̄, ū) the dynamics are linearized and the cost
expanded to second order; the LQR backward recursion of the lecture's DP slide
(``pathwise.control.lqr``) then gives a local affine controller
``δu_t = k_t + K_t δx_t``. With Q-function derivatives

    Q_x  = ℓ_x + f_xᵀV_x′            Q_u  = ℓ_u + f_uᵀV_x′
    Q_xx = ℓ_xx + f_xᵀV_xx′f_x       Q_uu = ℓ_uu + f_uᵀV_xx′f_u      Q_ux = ℓ_ux + f_uᵀV_xx′f_x

(plus ``V_x′·f_xx``-type tensor terms for full second-order DDP), the step is
``k = −Q_uu⁻¹Q_u``, ``K = −Q_uu⁻¹Q_ux`` and the value function is carried back as

    V_x  = Q_x + KᵀQ_uu k + KᵀQ_u + Q_uxᵀk
    V_xx = Q_xx + KᵀQ_uu K + KᵀQ_ux + Q_uxᵀK.

The forward pass rolls the *nonlinear* system out under
``u_t = ū_t + α k_t + K_t (x_t − x̄_t)`` for a set of step sizes α evaluated in
parallel; the best that lowers the cost is kept, else the regularization μ
(added to Q_uu) grows and the backward pass is redone. A step that would give a
non-finite cost is never accepted, so the solver never returns NaN from finite
inputs. On a linear-quadratic problem with μ = 0 the first full step is the
exact LQR solution.

Action bounds are handled by one active-set pass of the box-QP (Tassa, Mansard
and Todorov, 2014): coordinates whose Newton step would leave the box are fixed
at the bound, their rows of K are zeroed, and the free coordinates are solved
for given the clamped ones; the forward pass also clips.

Everything is ``lax.scan`` and ``lax.while_loop``: ``ilqr`` is jittable and
can be vmapped over initial states or differentiated as part of a larger
program (MPC uses it inside a jitted step).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise.control.solution import (Problem, Solution, as_problem, check_inputs, clip_actions, simulate,
                                       trajectory_cost)
from pathwise.systems.base import System
from pathwise.types import Array

#: Line-search step sizes, tried in parallel: 1, 0.5, ..., ~0.002.
DEFAULT_ALPHAS = tuple(0.5**i for i in range(10))


class Options(NamedTuple):
    """Static solver settings (hashable: part of the compiled program's identity)."""

    max_iterations: int = 100
    tol: float = 1e-6
    second_order: bool = False
    mu_init: float = 0.0
    mu_min: float = 1e-6
    mu_max: float = 1e10
    mu_factor: float = 10.0
    alphas: tuple[float, ...] = DEFAULT_ALPHAS


class _Derivatives(NamedTuple):
    fx: Array
    fu: Array
    lx: Array
    lu: Array
    lxx: Array
    luu: Array
    lux: Array
    vx_final: Array
    vxx_final: Array


def _derivatives(problem: Problem, xs: Array, us: Array) -> _Derivatives:
    fx, fu = jax.vmap(jax.jacfwd(problem.dynamics, argnums=(0, 1)))(xs[:-1], us)
    lx, lu = jax.vmap(jax.grad(problem.cost, argnums=(0, 1)))(xs[:-1], us)
    (lxx, lxu), (lux, luu) = jax.vmap(jax.hessian(problem.cost, argnums=(0, 1)))(xs[:-1], us)
    del lxu
    n = xs.shape[-1]
    if problem.final_cost is not None:
        vx = jax.grad(problem.final_cost)(xs[-1])
        vxx = jax.hessian(problem.final_cost)(xs[-1])
    else:
        vx, vxx = jnp.zeros(n, xs.dtype), jnp.zeros((n, n), xs.dtype)
    return _Derivatives(fx, fu, lx, lu, lxx, luu, lux, vx, vxx)


def _sym(m: Array) -> Array:
    return 0.5 * (m + m.T)


def _backward(problem: Problem, xs: Array, us: Array, d: _Derivatives, mu: Array, opts: Options):
    """Riccati sweep around (xs, us): gains, expected improvement terms, and whether Q_uu + μI was PD."""
    m = us.shape[-1]
    eye = jnp.eye(m, dtype=us.dtype)
    bounded = problem.action_low is not None

    def stage(carry, inputs):
        vx, vxx, ok, dv1, dv2 = carry
        fx, fu, lx, lu, lxx, luu, lux, x, u = inputs
        qx = lx + fx.T @ vx
        qu = lu + fu.T @ vx
        qxx = lxx + fx.T @ vxx @ fx
        quu = luu + fu.T @ vxx @ fu
        qux = lux + fu.T @ vxx @ fx
        if opts.second_order:  # DDP: + V_x'·∇²f, the Hessian of x ↦ V_x'ᵀ f(x, u)
            (hxx, hxu), (hux, huu) = jax.hessian(lambda a, b: vx @ problem.dynamics(a, b), argnums=(0, 1))(x, u)
            del hxu
            qxx, quu, qux = qxx + hxx, quu + huu, qux + hux
        quu = _sym(quu)
        h = quu + mu * eye
        k_free = -jnp.linalg.solve(h, qu)
        if bounded:
            lo, hi = problem.action_low - u, problem.action_high - u
            clamped = (k_free < lo) | (k_free > hi)
            k_c = jnp.where(clamped, jnp.clip(k_free, lo, hi), 0.0)
            free = ~clamped
            both = free[:, None] & free[None, :]
            h_f = jnp.where(both, h, 0.0) + jnp.diag(jnp.where(free, 0.0, 1.0))
            rhs_k = jnp.where(free, -(qu + h @ k_c), 0.0)
            rhs_K = jnp.where(free[:, None], -qux, 0.0)
        else:
            k_c = jnp.zeros_like(qu)
            free = jnp.ones_like(qu, dtype=bool)
            h_f, rhs_k, rhs_K = h, -qu, -qux
        chol = jnp.linalg.cholesky(h_f)
        stage_ok = jnp.all(jnp.isfinite(chol))
        chol = jnp.where(stage_ok, chol, jnp.eye(m, dtype=chol.dtype))
        solve = lambda b: jax.scipy.linalg.cho_solve((chol, True), b)  # noqa: E731
        k = jnp.where(free, solve(rhs_k), 0.0) + k_c
        K = jnp.where(free[:, None], solve(rhs_K), 0.0)
        vx_new = qx + K.T @ quu @ k + K.T @ qu + qux.T @ k
        vxx_new = _sym(qxx + K.T @ quu @ K + K.T @ qux + qux.T @ K)
        carry = (vx_new, vxx_new, ok & stage_ok, dv1 + k @ qu, dv2 + 0.5 * k @ quu @ k)
        return carry, (k, K)

    zero = jnp.zeros((), xs.dtype)
    init = (d.vx_final, d.vxx_final, jnp.asarray(True), zero, zero)
    inputs = (d.fx, d.fu, d.lx, d.lu, d.lxx, d.luu, d.lux, xs[:-1], us)
    (_, _, ok, dv1, dv2), (ks, Ks) = jax.lax.scan(stage, init, inputs, reverse=True)
    return ks, Ks, ok, dv1, dv2


def _forward(problem: Problem, x0: Array, xs: Array, us: Array, ks: Array, Ks: Array, alpha: Array):
    def step(x, inputs):
        xb, ub, k, K = inputs
        u = clip_actions(problem, ub + alpha * k + K @ (x - xb))
        return problem.dynamics(x, u), (x, u)

    x_final, (xs_new, us_new) = jax.lax.scan(step, x0, (xs[:-1], us, ks, Ks))
    states = jnp.concatenate([xs_new, x_final[None]])
    return states, us_new, trajectory_cost(problem, states, us_new)


class _Carry(NamedTuple):
    xs: Array
    us: Array
    cost: Array
    ks: Array
    Ks: Array
    mu: Array
    iteration: Array
    converged: Array
    done: Array
    history: Array


def _solve(problem: Problem, x0: Array, us0: Array, opts: Options) -> Solution:
    us0 = clip_actions(problem, us0)
    xs0 = simulate(problem, x0, us0)
    cost0 = trajectory_cost(problem, xs0, us0)
    T, m = us0.shape
    n = x0.shape[0]
    alphas = jnp.asarray(opts.alphas, us0.dtype)
    dtype = us0.dtype

    def body(c: _Carry) -> _Carry:
        d = _derivatives(problem, c.xs, c.us)
        ks, Ks, ok, dv1, dv2 = _backward(problem, c.xs, c.us, d, c.mu, opts)
        states, actions, costs = jax.vmap(lambda a: _forward(problem, x0, c.xs, c.us, ks, Ks, a))(alphas)
        costs = jnp.where(jnp.isfinite(costs), costs, jnp.inf)
        best = jnp.argmin(costs)
        new_cost = costs[best]
        scale = jnp.abs(c.cost) + 1e-8
        accepted = ok & (new_cost < c.cost)
        # Expected decrease of the full step is -(dv1 + dv2); tiny means the gradient vanished.
        expected_small = ok & (-(dv1 + dv2) <= opts.tol * scale)
        small_step = accepted & ((c.cost - new_cost) <= opts.tol * scale)
        converged = expected_small | small_step
        grow = jnp.maximum(opts.mu_min, c.mu * opts.mu_factor)
        shrink = jnp.where(c.mu / opts.mu_factor < opts.mu_min, 0.0, c.mu / opts.mu_factor)
        mu = jnp.where(accepted, shrink, jnp.where(expected_small, c.mu, grow)).astype(dtype)
        xs = jnp.where(accepted, states[best], c.xs)
        us = jnp.where(accepted, actions[best], c.us)
        cost = jnp.where(accepted, new_cost, c.cost)
        it = c.iteration + 1
        gave_up = mu > opts.mu_max
        history = c.history.at[it].set(cost)
        return _Carry(xs, us, cost, jnp.where(ok, ks, c.ks), jnp.where(ok, Ks, c.Ks), mu, it, converged,
                      converged | gave_up, history)

    def cond(c: _Carry) -> Array:
        return (~c.done) & (c.iteration < opts.max_iterations)

    history = jnp.full((opts.max_iterations + 1,), cost0, dtype)
    init = _Carry(xs0, us0, cost0, jnp.zeros((T, m), dtype), jnp.zeros((T, m, n), dtype),
                  jnp.asarray(opts.mu_init, dtype), jnp.zeros((), jnp.int32), jnp.asarray(False),
                  jnp.asarray(False), history)
    c = jax.lax.while_loop(cond, body, init)
    # entries past the last iteration repeat the final cost
    idx = jnp.arange(opts.max_iterations + 1)
    history = jnp.where(idx <= c.iteration, c.history, c.cost)
    return Solution(c.xs, c.us, c.Ks, c.ks, c.cost, c.converged, c.iteration, history)


_solve_jit = eqx.filter_jit(_solve)


def ilqr(
    problem: System | Problem,
    x0: Array,
    actions0: Array | int,
    *,
    max_iterations: int = 100,
    tol: float = 1e-6,
    second_order: bool = False,
    bounds: bool = True,
    mu_init: float = 0.0,
    mu_min: float = 1e-6,
    mu_max: float = 1e10,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
) -> Solution:
    """Locally optimal actions from ``x0`` by iLQR (Gauss-Newton) or DDP (``second_order=True``).

    ``problem`` is a ``System`` (minimizes −Σ reward, actions kept in its box
    when ``bounds``) or a ``Problem(dynamics, cost, final_cost)``; ``actions0``
    is the initial guess, shape (T, m), or a horizon T (zeros). Returns a
    ``Solution``: ``states`` (T+1, n), ``actions`` (T, m), feedback gains ``K``,
    feedforward ``k``, ``cost``, ``converged``, ``iterations``, ``cost_history``.

    Example::

        sol = pw.control.ilqr(pw.systems.Pendulum(), jnp.array([jnp.pi, 0.0]), 100)
    """
    if max_iterations < 1:
        raise ValueError(f"ilqr: max_iterations must be >= 1, got {max_iterations}.")
    if not (tol >= 0):
        raise ValueError(f"ilqr: tol must be >= 0, got {tol}.")
    if not alphas or any(not (0 < a <= 1) for a in alphas):
        raise ValueError(f"ilqr: line-search alphas must be in (0, 1], got {alphas}.")
    prob = as_problem(problem, bounds=bounds)
    x0, actions0 = check_inputs("ilqr", problem, x0, actions0)
    opts = Options(max_iterations, float(tol), bool(second_order), float(mu_init), float(mu_min), float(mu_max),
                   10.0, tuple(float(a) for a in alphas))
    return _solve_jit(prob, x0, actions0, opts)
