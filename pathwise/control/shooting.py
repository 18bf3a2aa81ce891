"""Gradient shooting: the lecture's first formulation of trajectory optimization.

Substitute the dynamics into the objective, so that the total cost is a
function of the open-loop actions alone,

    J(u_0 .. u_{T-1}) = c(x_0, u_0) + c(f(x_0, u_0), u_1) + ... + c_T(f(f(...)))

and descend its gradient, which backpropagation through the rollout gives
(the adjoint recursion ``λ_t = c_x + f_x'λ_{t+1}``, ``∂J/∂u_t = c_u + f_u'λ_{t+1}``).
``∂J/∂u_t`` holds the product of the dynamics Jacobians from ``t`` to the end,
so early actions have far larger (or far smaller) gradients than late ones:
the "poor conditioning" slides, measured in ``pathwise.diagnostics``.

Optimizers: Adam (any optax ``GradientTransformation``) or L-BFGS with optax's
zoom line search. L-BFGS stops by default as SciPy's L-BFGS-B does, when one
step lowers the cost by less than ``LBFGS_COST_TOL`` relative (SciPy's
``ftol = factr · eps`` with its default ``factr = 1e7``): without it a float32
run keeps stepping long after its cost has stopped changing, because the
gradient test cannot be met through rounding. Action bounds are kept by projection: the iterate is clipped
into the box after every step, the cost seen by the line search is that of
the clipped actions, and convergence is judged on the projected gradient
``‖u − clip(u − ∇J)‖``. (Projected L-BFGS is a heuristic; iLQR with box-QP is
the principled bounded solver.)
"""

from __future__ import annotations

import math

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pathwise.control.solution import (Problem, Solution, as_problem, check_inputs, simulate,
                                       trajectory_cost)
from pathwise.systems.base import System
from pathwise.types import Array

DEFAULT_LEARNING_RATE = {"adam": 0.05, "lbfgs": None}

#: L-BFGS's default ``cost_tol``: SciPy L-BFGS-B's default ``ftol``, ``factr · eps`` with ``factr = 1e7`` and the
#: float64 machine epsilon.
LBFGS_COST_TOL = 1e7 * float(np.finfo(np.float64).eps)


def default_cost_tol(optimizer: str | optax.GradientTransformation) -> float:
    """``LBFGS_COST_TOL`` for ``"lbfgs"``; 0 (no cost-based stop) for Adam and for a given optax transformation.

    Adam's steps have a fixed scale rather than a line search, so a small cost change there does not mean
    that the iterate stopped moving; a given transformation is the caller's to judge.
    """
    return LBFGS_COST_TOL if _is_lbfgs(optimizer) else 0.0


def _is_lbfgs(optimizer: str | optax.GradientTransformation) -> bool:
    return isinstance(optimizer, str) and optimizer == "lbfgs"


class _Carry(NamedTuple):
    actions: Array
    opt_state: optax.OptState
    cost: Array
    grad: Array
    iteration: Array
    converged: Array
    failed: Array  # a step made the cost non-finite (or a fresh L-BFGS step raised it) and was rejected
    fresh: Array  # the L-BFGS memory was just reset after a rejected step
    history: Array


def make_optimizer(optimizer: str | optax.GradientTransformation, learning_rate: float | None = None
                   ) -> optax.GradientTransformation:
    """``"adam"`` / ``"lbfgs"`` (optax, with the given or default step size) or an optax transformation as is."""
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if learning_rate is not None and (isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float))
                                      or not math.isfinite(learning_rate) or learning_rate <= 0):
        raise ValueError(f"shooting: learning_rate must be a finite number > 0 (or None for the default), got "
                         f"{learning_rate!r}; e.g. learning_rate=0.05.")
    if optimizer == "adam":
        return optax.adam(DEFAULT_LEARNING_RATE["adam"] if learning_rate is None else learning_rate)
    if optimizer == "lbfgs":
        return optax.lbfgs(learning_rate=learning_rate)  # None: the line search picks the step
    raise ValueError(f"shooting: optimizer must be 'adam', 'lbfgs' or an optax GradientTransformation, "
                     f"got {optimizer!r}.")


def _box(problem: Problem, bounds, m: int, dtype) -> tuple[Array, Array] | None:
    """The action box as (low, high) arrays of shape (m,), or None when unbounded."""
    if bounds is None or bounds is False:
        return None
    if bounds is True:
        bounds = "system"
    if isinstance(bounds, str):
        if bounds != "system":
            raise ValueError(f"shooting: bounds must be None, 'system' or a (low, high) pair, got {bounds!r}.")
        if problem.action_low is None:
            return None
        low, high = problem.action_low, problem.action_high
    else:
        try:
            low, high = bounds
        except (TypeError, ValueError):
            raise ValueError(f"shooting: bounds must be None, 'system' or a (low, high) pair, got {bounds!r}.")
    low = jnp.broadcast_to(jnp.asarray(low, dtype), (m,))
    high = jnp.broadcast_to(jnp.asarray(high, dtype), (m,))
    if not isinstance(low, jax.core.Tracer) and bool(jnp.any(low > high)):
        raise ValueError(f"shooting: action bounds need low <= high, got low={low}, high={high}.")
    return low, high


def _clip_inside(u: Array, low: Array, high: Array) -> Array:
    """``clip(u)`` in value; derivative 1 on the closed box (also at its faces), 0 strictly outside."""
    inside = (u >= low) & (u <= high)
    return jnp.where(inside, u, jax.lax.stop_gradient(jnp.clip(u, low, high)))


def projected_gradient_norm(actions: Array, grad: Array, box: tuple[Array, Array] | None) -> Array:
    """``‖u − clip(u − g)‖``: zero exactly at a first-order stationary point of the boxed problem."""
    if box is None:
        return jnp.linalg.norm(grad)
    return jnp.linalg.norm(actions - jnp.clip(actions - grad, *box))


def shooting(
    problem: System | Problem,
    x0: Array,
    actions0: Array | int,
    *,
    optimizer: str | optax.GradientTransformation = "adam",
    learning_rate: float | None = None,
    max_iterations: int = 500,
    tol: float = 1e-6,
    cost_tol: float | None = None,
    bounds: str | tuple | None = "system",
    monotone: bool | None = None,
) -> Solution:
    """Minimize the total cost over the open-loop action sequence by gradient descent through the rollout.

    Args:
      problem: a ``System`` (cost −reward, its action box) or a ``Problem(dynamics, cost, final_cost)``.
      x0: initial state, shape (n,).
      actions0: initial guess, shape (T, m), or a horizon T (zeros; ``System`` only).
      optimizer: ``"adam"``, ``"lbfgs"`` (zoom line search) or any optax ``GradientTransformation``.
      learning_rate: Adam's step size (default 0.05); for L-BFGS ``None`` lets the line search choose.
      max_iterations: optimizer steps at most (static: it sizes ``cost_history``).
      tol: stop when the projected gradient norm ``‖u − clip(u − ∇J)‖ <= tol · max(1, |J|)``.
      cost_tol: also stop (converged) when one step changes the cost by at most
        ``cost_tol · max(|J_k|, |J_k+1|, 1)``, SciPy L-BFGS-B's ``ftol`` test. Default (None):
        ``LBFGS_COST_TOL`` for ``"lbfgs"``, 0 (disabled) otherwise (``default_cost_tol``). Near such a
        stop the actions are only about ``sqrt(cost_tol)`` accurate; in float32, whose rounding of the cost
        is coarser than the default, the test is met by an accepted step that leaves the cost (nearly)
        unchanged, often a failed line search. ``cost_tol=0`` runs to the gradient test or ``max_iterations``.
      bounds: ``"system"`` or ``True`` (the problem's action box, if any), ``None`` or ``False``
        (unbounded), or a ``(low, high)`` pair of scalars or (m,) arrays.
      monotone: reject steps that raise the cost (default: only for L-BFGS, a line-search method).

    Returns a ``Solution`` with zero feedback gains (shooting is open loop). A step
    that makes the cost non-finite is rejected and the loop stops there. With ``monotone``
    (L-BFGS) a step that raises the cost (a failed line search) is rejected, the optimizer
    state (curvature memory) is reset and the step retried once; a second failure in a row
    stops the loop.
    Jittable; wrap in ``jax.jit`` (closing over ``problem``) to reuse the compiled loop.
    """
    x0, actions0 = check_inputs("shooting", problem, x0, actions0)
    problem = as_problem(problem)
    cost_tol = default_cost_tol(optimizer) if cost_tol is None else cost_tol
    m = actions0.shape[1]
    opt = make_optimizer(optimizer, learning_rate)
    box = _box(problem, bounds, m, actions0.dtype)
    _check_counts(max_iterations, tol, cost_tol)
    monotone = _is_lbfgs(optimizer) if monotone is None else monotone  # for L-BFGS a raised cost = a failed search
    rules = _make_rules(problem, x0, actions0.dtype, box, opt, optimizer == "lbfgs" and box is None, monotone, tol,
                        cost_tol, max_iterations)
    project, value_and_grad, stationary = rules.project, rules.value_and_grad, rules.stationary
    actions0 = project(actions0)
    cost0, grad0 = value_and_grad(actions0)
    cost0 = _require_finite(cost0)
    carry = _Carry(actions0, opt.init(actions0), cost0, grad0, jnp.zeros((), jnp.int32),
                   stationary(actions0, cost0, grad0), jnp.asarray(False), jnp.asarray(False),
                   jnp.full((max_iterations + 1,), cost0))
    carry = jax.lax.while_loop(lambda c: (c.iteration < max_iterations) & ~c.converged & ~c.failed,
                               lambda c: _step(rules, c), carry)
    return _solution(problem, x0, carry, m, projected_gradient_norm(carry.actions, carry.grad, box))


def _make_rules(problem: Problem, x0: Array, dtype, box, opt, lbfgs_from_state: bool, monotone: bool, tol: float,
                cost_tol: float, max_iterations: int) -> "_Rules":
    project = (lambda u: jnp.clip(u, *box)) if box is not None else (lambda u: u)

    def objective(u):
        u = u.astype(dtype)  # optax's line search may propose float64 steps when x64 is on
        if box is not None:
            u = _clip_inside(u, *box)
        return trajectory_cost(problem, simulate(problem, x0, u), u)

    def stationary(u, cost, grad):
        return projected_gradient_norm(u, grad, box) <= tol * jnp.maximum(1.0, jnp.abs(cost))

    return _Rules(opt, objective, jax.value_and_grad(objective), project, stationary, lbfgs_from_state, monotone,
                  4 * jnp.finfo(dtype).eps, cost_tol, max_iterations)


class _Rules(NamedTuple):
    """What one shooting step needs besides the carry (closures over the problem and the options)."""

    opt: optax.GradientTransformation
    objective: Any
    value_and_grad: Any
    project: Any
    stationary: Any
    lbfgs_from_state: bool
    monotone: bool
    rounding: Array
    cost_tol: float
    max_iterations: int


def _step(r: _Rules, c: _Carry) -> _Carry:
    """One optimizer step; a step to a non-finite cost (or, with ``monotone``, a higher one) is rejected."""
    updates, opt_state = r.opt.update(c.grad, c.opt_state, c.actions, value=c.cost, grad=c.grad,
                                      value_fn=r.objective)
    actions = r.project(optax.apply_updates(c.actions, updates))
    if r.lbfgs_from_state:  # the line search already evaluated the accepted point
        cost, grad = optax.value_and_grad_from_state(r.objective)(actions, state=opt_state)
    else:
        cost, grad = r.value_and_grad(actions)
    finite = jnp.isfinite(cost) & jnp.all(jnp.isfinite(grad))
    # optax's zoom line search returns a step even when it fails; such a step can raise the cost
    scale = jnp.maximum(jnp.maximum(jnp.abs(c.cost), jnp.abs(cost)), 1.0)
    small_change = jnp.abs(c.cost - cost) <= r.cost_tol * scale  # SciPy's ftol test
    done = r.stationary(actions, cost, grad) | ((r.cost_tol > 0) & small_change)
    # equal (to rounding) is fine: near the optimum float32 costs stop changing while the actions still improve
    worse = r.monotone & ~(cost <= c.cost + r.rounding * jnp.maximum(1.0, jnp.abs(c.cost)))
    it = c.iteration + 1
    history = jnp.where(jnp.arange(r.max_iterations + 1) >= it, cost, c.history)
    new = _Carry(actions, opt_state, cost, grad, it, done, jnp.asarray(False), jnp.asarray(False), history)
    # rejected: forget the curvature pairs and retry from the same point once, then give up
    retry = c._replace(opt_state=r.opt.init(c.actions), fresh=jnp.asarray(True), failed=c.fresh)
    stop = c._replace(failed=jnp.asarray(True))
    rejected = jax.tree.map(lambda a, b: jnp.where(finite, a, b), retry, stop)
    return jax.tree.map(lambda a, b: jnp.where(finite & ~worse, a, b), new, rejected)


def _check_counts(max_iterations, tol, cost_tol) -> None:
    if not isinstance(max_iterations, int) or max_iterations < 0:
        raise ValueError(f"shooting: max_iterations must be a non-negative Python int, got {max_iterations!r}.")
    if not tol >= 0 or not cost_tol >= 0:
        raise ValueError(f"shooting: tol and cost_tol must be >= 0, got tol={tol}, cost_tol={cost_tol}.")


def _require_finite(cost0: Array) -> Array:
    if not isinstance(cost0, jax.core.Tracer) and not bool(jnp.isfinite(cost0)):
        raise ValueError(f"shooting: the initial actions give a non-finite cost ({cost0}); "
                         "start from smaller actions or check the dynamics/cost.")
    return cost0


def _solution(problem: Problem, x0: Array, c: _Carry, m: int, residual: Array) -> Solution:
    T = c.actions.shape[0]
    states = simulate(problem, x0, c.actions)
    return Solution(states=states, actions=c.actions, K=jnp.zeros((T, m, x0.shape[0]), c.actions.dtype),
                    k=jnp.zeros((T, m), c.actions.dtype), cost=trajectory_cost(problem, states, c.actions),
                    converged=c.converged, iterations=c.iteration, cost_history=c.history,
                    projected_gradient_norm=residual)
