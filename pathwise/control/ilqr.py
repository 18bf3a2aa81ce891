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

Action bounds ``lower ≤ u ≤ upper`` follow Tassa, Mansard and Todorov,
"Control-Limited Differential Dynamic Programming" (ICRA 2014): at each stage
the feedforward step solves the box QP

    k = argmin ½ kᵀ(Q_uu + μI)k + Q_uᵀk   s.t.   lower − ū ≤ k ≤ upper − ū

by projected Newton (``pathwise.control.boxqp``, their Algorithm 1, warm-started
from the previous iteration's k): a coordinate is clamped when it sits at a
bound with the gradient ``Q_u + (Q_uu + μI)k`` pushing outward. The feedback
is zero on the clamped rows, ``K_c = 0``, and ``K_f = −H_ff⁻¹Q_ux,f`` on the
free rows from the Cholesky factor of the free block ``H_ff`` of
``H = Q_uu + μI`` (positive definite on the free subspace is enough). The
forward pass also clips.

Convergence is a first-order (KKT) test on the total cost ``J(u)`` of the
open-loop actions: ``converged`` iff

    ‖u − clip(u − ∇J(u))‖ ≤ tol · max(1, |J|),

with ``∇J`` by backpropagation through the rollout
(``Solution.projected_gradient_norm``). The loop stops there; or when no step
can lower the cost beyond rounding (``_ROUNDING`` ulps of |J|) — where the
costs of the steps are flat to rounding, the first α (the full step by
default) is still taken if it lowers the projected-gradient norm, and the
loop stops when it does not; or when μ exceeds ``mu_max``; or after
``max_iterations``. Only the first test sets ``converged``.

Everything is ``lax.scan`` and ``lax.while_loop``: ``ilqr`` is jittable and
can be vmapped over initial states or differentiated as part of a larger
program (MPC uses it inside a jitted step).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise.control.boxqp import boxqp, free_cholesky, solve_free
from pathwise.control.solution import (Problem, Solution, as_problem, check_inputs, clip_actions, kkt_residual,
                                       simulate, trajectory_cost)
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
    qp_iterations: int = 100


#: The loop also stops when a step can no longer lower the cost by more than this many ulps of |J|.
_ROUNDING = 16


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


def _q_terms(problem: Problem, vx: Array, vxx: Array, inputs, second_order: bool):
    """``Q_x, Q_u, Q_xx, Q_uu, Q_ux`` of one stage (with the ``V_x′·∇²f`` terms for DDP)."""
    fx, fu, lx, lu, lxx, luu, lux, x, u = inputs
    qx = lx + fx.T @ vx
    qu = lu + fu.T @ vx
    qxx = lxx + fx.T @ vxx @ fx
    quu = luu + fu.T @ vxx @ fu
    qux = lux + fu.T @ vxx @ fx
    if second_order:  # DDP: + V_x'·∇²f, the Hessian of x ↦ V_x'ᵀ f(x, u)
        (hxx, hxu), (hux, huu) = jax.hessian(lambda a, b: vx @ problem.dynamics(a, b), argnums=(0, 1))(x, u)
        del hxu
        qxx, quu, qux = qxx + hxx, quu + huu, qux + hux
    return qx, qu, qxx, _sym(quu), qux


def _gains(problem: Problem, h: Array, qu: Array, qux: Array, u: Array, k_warm: Array, opts: Options):
    """Feedforward ``k``, feedback ``K`` and whether the (free) Hessian was positive definite.

    Unbounded: ``k = −H⁻¹Q_u``, ``K = −H⁻¹Q_ux`` with ``H = Q_uu + μI``. Bounded
    (Tassa et al. 2014): ``k`` minimizes ``½ kᵀHk + Q_uᵀk`` over ``ū + k`` in the
    action box (``boxqp``, warm-started from ``k_warm``); ``K_f = −H_ff⁻¹Q_ux,f`` on
    the free rows, and ``K_c = 0`` on the clamped rows (the bound holds to first order).
    """
    if problem.action_low is None:
        free = jnp.ones(qu.shape, bool)
        chol, ok = free_cholesky(h, free)
        k = -solve_free(chol, free, qu)
    else:
        r = boxqp(h, qu, problem.action_low - u, problem.action_high - u, k_warm,
                  max_iterations=opts.qp_iterations)
        k, free, chol, ok = r.x, r.free, r.chol, r.ok
    return k, -solve_free(chol, free, qux), ok


def _backward(problem: Problem, xs: Array, us: Array, d: _Derivatives, mu: Array, ks_warm: Array, opts: Options):
    """Riccati sweep around (xs, us): gains, expected improvement terms, and whether every H_ff was PD."""
    eye = jnp.eye(us.shape[-1], dtype=us.dtype)

    def stage(carry, inputs):
        vx, vxx, ok, dv1, dv2 = carry
        *local, k_warm = inputs  # derivatives, x̄_t, ū_t; the previous iteration's k_t
        qx, qu, qxx, quu, qux = _q_terms(problem, vx, vxx, local, opts.second_order)
        k, K, stage_ok = _gains(problem, quu + mu * eye, qu, qux, local[-1], k_warm, opts)
        vx_new = qx + K.T @ quu @ k + K.T @ qu + qux.T @ k
        vxx_new = _sym(qxx + K.T @ quu @ K + K.T @ qux + qux.T @ K)
        carry = (vx_new, vxx_new, ok & stage_ok, dv1 + k @ qu, dv2 + 0.5 * k @ quu @ k)
        return carry, (k, K)

    zero = jnp.zeros((), xs.dtype)
    init = (d.vx_final, d.vxx_final, jnp.asarray(True), zero, zero)
    inputs = (d.fx, d.fu, d.lx, d.lu, d.lxx, d.luu, d.lux, xs[:-1], us, ks_warm)
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
    grad_norm: Array  # ‖u − clip(u − ∇J)‖ at us
    converged: Array  # grad_norm <= tol · max(1, |cost|)
    done: Array
    history: Array


def _kkt(problem: Problem, x0: Array, us: Array, cost: Array, tol: float) -> tuple[Array, Array]:
    """The projected-gradient norm at ``us`` and whether it is within ``tol · max(1, |J|)``."""
    norm = kkt_residual(problem, x0, us)
    return norm, norm <= tol * jnp.maximum(1.0, jnp.abs(cost))


def _iteration(problem: Problem, x0: Array, opts: Options, c: _Carry) -> _Carry:
    """Backward pass, parallel line search over α, μ update, and the stopping tests."""
    dtype = c.us.dtype
    d = _derivatives(problem, c.xs, c.us)
    ks, Ks, ok, dv1, dv2 = _backward(problem, c.xs, c.us, d, c.mu, c.ks, opts)
    alphas = jnp.asarray(opts.alphas, dtype)
    states, actions, costs = jax.vmap(lambda a: _forward(problem, x0, c.xs, c.us, ks, Ks, a))(alphas)
    costs = jnp.where(jnp.isfinite(costs), costs, jnp.inf)
    rounding = _ROUNDING * jnp.finfo(dtype).eps * jnp.maximum(1.0, jnp.abs(c.cost))
    # a clear decrease takes the best α; where costs are flat to rounding, the first α if it lowers the KKT residual
    clear = ok & (jnp.min(costs) < c.cost - rounding)
    best = jnp.where(clear, jnp.argmin(costs), 0)
    grad_norm, converged = _kkt(problem, x0, actions[best], costs[best], opts.tol)
    flat = ok & ~clear & (costs[best] <= c.cost + rounding)
    accepted = clear | (flat & (grad_norm < c.grad_norm))
    expected_small = ok & (-(dv1 + dv2) <= rounding)  # the model predicts no decrease
    stalled = ~accepted & (expected_small | flat)
    grow = jnp.maximum(opts.mu_min, c.mu * opts.mu_factor)
    shrink = jnp.where(c.mu / opts.mu_factor < opts.mu_min, 0.0, c.mu / opts.mu_factor)
    mu = jnp.where(accepted, shrink, jnp.where(expected_small, c.mu, grow)).astype(dtype)
    xs = jnp.where(accepted, states[best], c.xs)
    us = jnp.where(accepted, actions[best], c.us)
    cost = jnp.where(accepted, costs[best], c.cost)
    grad_norm = jnp.where(accepted, grad_norm, c.grad_norm)
    converged = jnp.where(accepted, converged, c.converged)
    it = c.iteration + 1
    return _Carry(xs, us, cost, jnp.where(ok, ks, c.ks), jnp.where(ok, Ks, c.Ks), mu, it, grad_norm, converged,
                  converged | stalled | (mu > opts.mu_max), c.history.at[it].set(cost))


def _solve(problem: Problem, x0: Array, us0: Array, opts: Options) -> Solution:
    us0 = clip_actions(problem, us0)
    xs0 = simulate(problem, x0, us0)
    cost0 = trajectory_cost(problem, xs0, us0)
    T, m = us0.shape
    dtype = us0.dtype
    grad_norm0, converged0 = _kkt(problem, x0, us0, cost0, opts.tol)
    history = jnp.full((opts.max_iterations + 1,), cost0, dtype)
    init = _Carry(xs0, us0, cost0, jnp.zeros((T, m), dtype), jnp.zeros((T, m, x0.shape[0]), dtype),
                  jnp.asarray(opts.mu_init, dtype), jnp.zeros((), jnp.int32), grad_norm0, converged0,
                  jnp.asarray(False), history)
    c = jax.lax.while_loop(lambda c: (~c.done) & (c.iteration < opts.max_iterations),
                           lambda c: _iteration(problem, x0, opts, c), init)
    # entries past the last iteration repeat the final cost
    idx = jnp.arange(opts.max_iterations + 1)
    history = jnp.where(idx <= c.iteration, c.history, c.cost)
    return Solution(c.xs, c.us, c.Ks, c.ks, c.cost, c.converged, c.iteration, history, c.grad_norm)


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
    qp_iterations: int = 100,
) -> Solution:
    """Locally optimal actions from ``x0`` by iLQR (Gauss-Newton) or DDP (``second_order=True``).

    ``problem`` is a ``System`` (minimizes −Σ reward, actions kept in its box
    when ``bounds``) or a ``Problem(dynamics, cost, final_cost)``; ``actions0``
    is the initial guess, shape (T, m), or a horizon T (zeros). Returns a
    ``Solution``: ``states`` (T+1, n), ``actions`` (T, m), feedback gains ``K``,
    feedforward ``k``, ``cost``, ``converged``, ``iterations``, ``cost_history``,
    ``projected_gradient_norm``.

    ``converged`` is the KKT test ``‖u − clip(u − ∇J)‖ ≤ tol · max(1, |J|)`` at
    the returned actions (``∇J`` by ``jax.grad`` of the open-loop cost; no clip
    without bounds). In float32 the gradient's rounding error bounds what
    ``tol`` can be met. ``qp_iterations`` caps the projected-Newton iterations
    of each stage's box QP (bounded problems only). ``mu_init``/``mu_min``/
    ``mu_max`` set the regularization μ of ``Q_uu + μI``; ``alphas`` the
    line-search step sizes.

    Example::

        sol = pw.control.ilqr(pw.systems.Pendulum(), jnp.array([jnp.pi, 0.0]), 100)
    """
    if max_iterations < 1:
        raise ValueError(f"ilqr: max_iterations must be >= 1, got {max_iterations}.")
    if not (tol >= 0):
        raise ValueError(f"ilqr: tol must be >= 0, got {tol}.")
    if qp_iterations < 1:
        raise ValueError(f"ilqr: qp_iterations must be >= 1, got {qp_iterations}.")
    if not alphas or any(not (0 < a <= 1) for a in alphas):
        raise ValueError(f"ilqr: line-search alphas must be in (0, 1], got {alphas}.")
    prob = as_problem(problem, bounds=bounds)
    x0, actions0 = check_inputs("ilqr", problem, x0, actions0)
    opts = Options(max_iterations, float(tol), bool(second_order), float(mu_init), float(mu_min), float(mu_max),
                   10.0, tuple(float(a) for a in alphas), int(qp_iterations))
    return _solve_jit(prob, x0, actions0, opts)
