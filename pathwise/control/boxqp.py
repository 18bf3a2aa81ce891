"""Box-constrained quadratic programs by projected Newton (Tassa, Mansard and Todorov, 2014).

Solves

    min_x  ½ xᵀHx + gᵀx    subject to   lower ≤ x ≤ upper

with H symmetric positive definite on the free subspace, by Algorithm 1 of
Y. Tassa, N. Mansard and E. Todorov, "Control-Limited Differential Dynamic
Programming", ICRA 2014. Starting from the warm start clipped into the box, each
iteration

1. computes the gradient ``∇ = g + Hx`` and the *clamped* set: coordinate i is
   clamped when it sits at a bound and the gradient pushes it outward,

       c_i = (x_i = lower_i ∧ ∇_i > 0) ∨ (x_i = upper_i ∧ ∇_i < 0),

   every other coordinate is *free* (f);
2. stops when the free gradient is small, ``‖∇_f‖ ≤ tol·(‖g‖ + ‖Hx‖)`` (then x
   satisfies the KKT conditions: ∇_f ≈ 0 and the clamped gradients point out of
   the box), or when every coordinate is clamped;
3. takes the Newton step on the free subspace, clamped coordinates held:
   ``Δx_f = −H_ff⁻¹∇_f`` (Cholesky of H_ff), ``Δx_c = 0``;
4. line-searches along the projected arc ``x(s) = clip(x + sΔx)``, accepting
   the largest ``s ∈ {1, β, β², …}`` with the Armijo condition
   ``q(x(s)) − q(x) ≤ σ s Δxᵀ∇`` (σ = 0.1, β = 0.6 as in the paper); the trial
   steps are evaluated in parallel. No acceptable step ends the solve.

The result carries the Cholesky factor of H_ff at the solution, so that a
caller (the DDP backward pass) can solve ``H_ff K_f = −Q_ux,f`` for the
feedback gains of the free rows and set the clamped rows to zero.

Everything is ``lax.while_loop`` over fixed shapes: ``boxqp`` is jittable and
vmappable (clamped and free sets are masks, H_ff is H with its clamped rows and
columns replaced by those of the identity).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pathwise.types import Array

#: Armijo sufficient-decrease fraction σ and backtracking factor β of Tassa et al.'s boxQP.
ARMIJO = 0.1
STEP_DECREASE = 0.6


class BoxQPResult(NamedTuple):
    """The solution of a box QP and what a DDP backward pass needs from it.

    ``x`` (m,) the minimizer; ``free`` (m,) bool, the coordinates not clamped at
    ``x`` (the clamped ones sit at a bound with the gradient pushing outward);
    ``chol`` (m, m) the lower Cholesky factor of H_ff embedded in the identity
    (use ``solve_free``); ``ok`` whether H_ff was positive definite at every
    factorization (if not, x is the last iterate before the failure);
    ``converged`` whether the free-gradient test holds at ``x`` (it can fail at
    rounding level when the line search finds no decrease left);
    ``iterations`` Newton steps taken.
    """

    x: Array
    free: Array
    chol: Array
    ok: Array
    converged: Array
    iterations: Array


def clamped_set(x: Array, grad: Array, lower: Array, upper: Array) -> Array:
    """``(x_i = lower_i ∧ ∇_i > 0) ∨ (x_i = upper_i ∧ ∇_i < 0)``: at a bound, pushed outward."""
    return ((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0))


def free_cholesky(H: Array, free: Array) -> tuple[Array, Array]:
    """Lower Cholesky factor of H_ff embedded in the identity, and whether H_ff is positive definite.

    ``H`` with the rows and columns of the clamped coordinates replaced by those
    of the identity is block diagonal (H_ff, I), so its factor is (chol(H_ff), I).
    When H_ff is not positive definite the identity is returned with ``False``.
    """
    eye = jnp.eye(H.shape[-1], dtype=H.dtype)
    both = free[:, None] & free[None, :]
    L = jnp.linalg.cholesky(jnp.where(both, H, eye))
    ok = jnp.all(jnp.isfinite(L))
    return jnp.where(ok, L, eye), ok


def solve_free(chol: Array, free: Array, rhs: Array) -> Array:
    """``H_ff⁻¹ rhs_f`` on the free rows and zero on the clamped rows; ``rhs`` is (m,) or (m, k)."""
    mask = free if rhs.ndim == 1 else free[:, None]
    rhs = jnp.where(mask, rhs, 0.0)
    return jnp.where(mask, jax.scipy.linalg.cho_solve((chol, True), rhs), 0.0)


def _objective(H: Array, g: Array, x: Array) -> Array:
    return 0.5 * x @ H @ x + g @ x


class _State(NamedTuple):
    x: Array
    iteration: Array
    ok: Array
    done: Array


def _free_gradient(H, g, lower, upper, tol, x) -> tuple[Array, Array, Array]:
    """The gradient ``g + Hx``, the free set at x, and whether ``‖∇_f‖ ≤ tol·(‖g‖ + ‖Hx‖)``."""
    hx = H @ x
    grad = g + hx
    free = ~clamped_set(x, grad, lower, upper)
    small = jnp.linalg.norm(jnp.where(free, grad, 0.0)) <= tol * (jnp.linalg.norm(g) + jnp.linalg.norm(hx))
    return grad, free, small


def _newton_step(H, g, lower, upper, tol, steps, s: _State) -> _State:
    """One iteration of Algorithm 1: clamped set, free Newton direction, projected Armijo search."""
    grad, free, small = _free_gradient(H, g, lower, upper, tol, s.x)
    chol, ok = free_cholesky(H, free)
    dx = -solve_free(chol, free, grad)
    slope = dx @ grad  # < 0 unless grad_f = 0
    trials = jnp.clip(s.x + steps[:, None] * dx, lower, upper)
    values = jax.vmap(lambda x: _objective(H, g, x))(trials)
    armijo = (values - _objective(H, g, s.x) <= ARMIJO * steps * slope) & (slope < 0)
    found = jnp.any(armijo)
    move = ok & found & ~small
    x = jnp.where(move, trials[jnp.argmax(armijo)], s.x)
    return _State(x, s.iteration + move.astype(s.iteration.dtype), s.ok & ok, ~move)


def boxqp(H: Array, g: Array, lower: Array, upper: Array, x0: Array | None = None, *, max_iterations: int = 100,
          tol: float | None = None, line_search_steps: int = 30) -> BoxQPResult:
    """Minimize ``½ xᵀHx + gᵀx`` over ``lower ≤ x ≤ upper`` by projected Newton (Tassa et al., 2014, Alg. 1).

    Args:
      H: (m, m) symmetric, positive definite on the free subspace of the solution.
      g: (m,) linear term.
      lower: (m,) lower bounds (``-inf`` for an unbounded side), ``lower ≤ upper``.
      upper: (m,) upper bounds (``inf`` for an unbounded side).
      x0: warm start (clipped into the box); default zeros.
      max_iterations: Newton steps at most.
      tol: relative free-gradient tolerance, ``‖∇_f‖ ≤ tol·(‖g‖ + ‖Hx‖)``; default ``eps**0.75`` of the dtype.
      line_search_steps: trial steps ``β⁰ … β^(n−1)`` of the projected Armijo search (β = 0.6).

    Returns a ``BoxQPResult``. Jittable and vmappable (no Python control flow on values).
    """
    H, g = jnp.asarray(H), jnp.asarray(g)
    dtype = jnp.result_type(H.dtype, g.dtype, jnp.float32)
    H, g = H.astype(dtype), g.astype(dtype)
    lower = jnp.broadcast_to(jnp.asarray(lower, dtype), g.shape)
    upper = jnp.broadcast_to(jnp.asarray(upper, dtype), g.shape)
    tol = float(jnp.finfo(dtype).eps) ** 0.75 if tol is None else float(tol)
    x0 = jnp.zeros_like(g) if x0 is None else jnp.asarray(x0, dtype)
    steps = STEP_DECREASE ** jnp.arange(line_search_steps, dtype=dtype)
    init = _State(jnp.clip(x0, lower, upper), jnp.zeros((), jnp.int32), jnp.asarray(True), jnp.asarray(False))
    s = jax.lax.while_loop(lambda s: ~s.done & (s.iteration < max_iterations),
                           lambda s: _newton_step(H, g, lower, upper, tol, steps, s), init)
    # the free set and factor at the returned x (the loop may have stopped on its iteration count)
    _, free, small = _free_gradient(H, g, lower, upper, tol, s.x)
    chol, ok = free_cholesky(H, free)
    return BoxQPResult(s.x, free, chol, s.ok & ok, small, s.iteration)
