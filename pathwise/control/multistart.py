"""Multi-start trajectory optimization: many local solves in one vmapped program, the best one kept.

iLQR, DDP and gradient shooting are local methods: on a non-convex problem
such as a swing-up each returns a local optimum of the basin its initial
guess lies in, and which basin that is depends on the guess more than on the
solver. Solving from several guesses and keeping the cheapest answer buys
global quality with parallel work instead of a better local method::

    guesses = pw.control.initial_guesses(system, horizon=100, key=jax.random.key(0), random=8)
    result = pw.control.multistart(system, x0, guesses)        # iLQR from every guess, one program
    result.best.actions, result.costs                          # the winner, every start's final cost

Every start runs the same solver with the same options inside one
``jax.vmap`` of the solver, compiled once with ``jax.jit``: the starts
advance in lockstep (a vmapped ``while_loop`` runs until the last start
stops), so the program costs about as many iterations as the slowest start
needs, each of them on all starts at once.

Guesses (``initial_guesses``): the box midpoint, constant pushes to either
side of it (a swing-up from rest needs a push to leave the equilibrium, where
the gradient can be zero), action sequences drawn uniformly inside the action
box from a key, and any given sequences — the previous MPC plan, or a warm
start from another solver, e.g. the actions of an L-BFGS shooting multi-start::

    warm = pw.control.multistart(system, x0, guesses, solver="shooting", optimizer="lbfgs").solutions.actions
    result = pw.control.multistart(system, x0, jnp.concatenate([guesses, warm]))

``MPC(restarts=True)`` re-plans through ``multistart`` at every step.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.control.ilqr import ilqr
from pathwise.control.shooting import shooting
from pathwise.control.solution import Problem, Solution, as_problem, check_inputs
from pathwise.systems.base import System
from pathwise.types import Array

#: solver name -> (function, fixed options)
SOLVERS = {"ilqr": (ilqr, {}), "ddp": (ilqr, {"second_order": True}), "shooting": (shooting, {})}


class MultiStart(NamedTuple):
    """The result of ``multistart``.

    ``best``: the chosen start's ``Solution``; ``index``: which start it is (a
    row of ``guesses``); ``costs``, ``converged``, ``iterations``: every start's
    final cost, convergence flag and iteration count, shape (S,);
    ``solutions``: every start's ``Solution``, each field with a leading axis S.
    """

    best: Solution
    index: Array
    costs: Array
    converged: Array
    iterations: Array
    solutions: Solution


def best_index(costs: Array, converged: Array, prefer_converged: bool = False) -> Array:
    """The start to keep: the lowest finite cost, or with ``prefer_converged`` the lowest among converged starts
    (the lowest overall when none converged). A non-finite cost is never chosen unless every cost is.

    Not preferring convergence is the default because a converged start can be a stationary point that is
    not a minimum (a swing-up's hanging equilibrium under zero actions has a zero gradient), while a start
    stopped short by its iteration limit or by rounding still has the true cost of a feasible plan.
    """
    finite = jnp.where(jnp.isfinite(costs), costs, jnp.inf)
    lowest = jnp.argmin(finite)
    if not prefer_converged:
        return lowest
    ok = converged & jnp.isfinite(costs)
    return jnp.where(jnp.any(ok), jnp.argmin(jnp.where(ok, costs, jnp.inf)), lowest)


def _solve_all(problem: System | Problem, x0: Array, guesses: Array, solver: str, kwargs: dict) -> Solution:
    function, fixed = SOLVERS[solver]
    return jax.vmap(lambda u: function(problem, x0, u, **fixed, **kwargs))(guesses)


def _program(problem: System | Problem, x0: Array, guesses: Array, solver: str, options: tuple,
             prefer_converged: bool, keep: tuple[int, ...], screen_iterations: tuple[int, ...]) -> MultiStart:
    """Solve from every guess (``jax.vmap`` of the solver) and pick the best start; with ``keep``, screen first:
    stage i runs the starts still in for ``screen_iterations[i]`` iterations, then only the ``keep[i]`` cheapest
    go on, from where they stopped; the last stage runs the survivors with the full ``max_iterations``."""
    kwargs = dict(options)
    sols = None
    alive = jnp.arange(guesses.shape[0])
    actions = guesses
    for count, iterations in zip(keep, screen_iterations):
        if count >= actions.shape[0]:  # keeps every start: no screening at this stage
            continue
        stage = _solve_all(problem, x0, actions, solver, {**kwargs, "max_iterations": iterations})
        sols = _merge(sols, alive, stage)
        order = jnp.argsort(jnp.where(jnp.isfinite(stage.cost), stage.cost, jnp.inf))[:count]
        alive, actions = alive[order], stage.actions[order]
    sols = _merge(sols, alive, _solve_all(problem, x0, actions, solver, kwargs))
    index = best_index(sols.cost, sols.converged, prefer_converged)
    best = jax.tree.map(lambda a: a[index], sols)
    return MultiStart(best, index, sols.cost, sols.converged, sols.iterations, sols)


def _merge(sols: Solution | None, alive: Array, stage: Solution) -> Solution:
    """Write a stage's solutions into the rows ``alive`` of every start's: iterations add up, the cost history is
    the latest stage's, and a start screened out earlier keeps its history padded with its final cost."""
    if sols is None:
        return stage
    stage = stage._replace(iterations=stage.iterations + sols.iterations[alive])
    length, have = stage.cost_history.shape[1], sols.cost_history.shape[1]
    if length > have:
        sols = sols._replace(cost_history=jnp.concatenate(
            [sols.cost_history, jnp.repeat(sols.cost[:, None], length - have, axis=1)], axis=1))
    elif length < have:
        stage = stage._replace(cost_history=jnp.concatenate(
            [stage.cost_history, jnp.repeat(stage.cost[:, None], have - length, axis=1)], axis=1))
    return jax.tree.map(lambda a, b: a.at[alive].set(b), sols, stage)


_program_jit = eqx.filter_jit(_program)


def multistart(
    problem: System | Problem,
    x0: Array,
    guesses: Array,
    *,
    solver: str = "ilqr",
    prefer_converged: bool = False,
    keep: int | Sequence[int] | None = None,
    screen_iterations: int | Sequence[int] = 30,
    **options: Any,
) -> MultiStart:
    """Solve from every initial action sequence in ``guesses`` in one vmapped, jitted program; keep the best.

    Args:
      problem: a ``System`` (cost −reward, its action box) or a ``Problem``.
      x0: initial state, shape (n,).
      guesses: initial action sequences, shape (S, T, m) (``initial_guesses`` builds a standard set).
      solver: ``"ilqr"``, ``"ddp"`` (iLQR with ``second_order=True``) or ``"shooting"``.
      prefer_converged: keep the cheapest *converged* start when there is one (see ``best_index``);
        by default the cheapest start, converged or not.
      keep: screen first: run every guess for ``screen_iterations`` iterations, then solve on only the
        ``keep`` cheapest, from where they stopped (a restart: iLQR's regularization and L-BFGS's memory
        begin afresh), with the full ``max_iterations``. Starts advance in lockstep, so without screening
        the program runs as long as its slowest start; screening stops the slow, costly ones early. A
        decreasing sequence screens in stages (successive halving, e.g. ``keep=(8, 4, 2, 1)``): stage i
        runs the starts still in for ``screen_iterations`` (or its i-th entry) more iterations and keeps
        the ``keep[i]`` cheapest. None (default): every guess runs to the end.
      screen_iterations: each screening stage's iteration limit (less than the solver's ``max_iterations``);
        one number for every stage or one per stage.
      **options: passed to the solver (``pw.control.ilqr`` or ``pw.control.shooting``), e.g.
        ``max_iterations``, ``tol``, ``optimizer="lbfgs"``; the same for every start.

    Returns a ``MultiStart``: ``best`` (a ``Solution``), ``index``, every start's ``costs``,
    ``converged`` and ``iterations``, and all ``solutions``. Each start's solution is the one the
    solver returns from that guess alone (with ``keep``: a screened-out start's is its screening result,
    its cost history padded with its final cost; a kept start's ``iterations`` count both stages and its
    ``cost_history`` is the second stage's). Jittable and vmappable itself (MPC calls it inside its step);
    a second call with the same shapes, problem type and options reuses the compiled program.
    """
    if solver not in SOLVERS:
        raise ValueError(f"multistart: solver must be one of {sorted(SOLVERS)}, got {solver!r}.")
    function, fixed = SOLVERS[solver]
    try:
        inspect.signature(function).bind(problem, x0, guesses, **fixed, **options)
    except TypeError as err:
        raise TypeError(f"multistart: options not accepted by {solver}: {err}") from None
    guesses = jnp.asarray(guesses) if not isinstance(guesses, jax.core.Tracer) else guesses
    if guesses.ndim != 3 or guesses.shape[0] < 1:
        raise ValueError(f"multistart: guesses must have shape (S, T, m) with S >= 1 starts, got shape "
                         f"{guesses.shape}. Stack single guesses with jnp.stack, or use initial_guesses.")
    if not isinstance(guesses, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(guesses))):
        raise ValueError("multistart: guesses contain NaN or inf.")
    x0, first = check_inputs("multistart", problem, x0, guesses[0])
    keep, screen_iterations = _check_screening(function, options, keep, screen_iterations)
    if isinstance(problem, System):  # its action box read now, while concrete (a learned model's is an array
        problem = as_problem(problem)  # leaf); the solvers apply their own ``bounds`` option to the Problem
    return _program_jit(problem, x0, guesses.astype(first.dtype), solver, tuple(sorted(options.items())),
                        bool(prefer_converged), keep, screen_iterations)


def _check_screening(function, options: dict, keep, screen_iterations) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``keep`` and ``screen_iterations`` as one tuple entry per screening stage (empty: no screening)."""
    if keep is None:
        return (), ()
    limit = options.get("max_iterations", inspect.signature(function).parameters["max_iterations"].default)
    stages = tuple(keep) if isinstance(keep, (tuple, list)) else (keep,)
    if not stages or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1
                             for k in stages):
        raise ValueError(f"multistart: keep must be a number of starts >= 1, a decreasing sequence of them, "
                         f"or None (no screening), got {keep!r}.")
    if any(b >= a for a, b in zip(stages, stages[1:])):
        raise ValueError(f"multistart: keep's stages must keep fewer starts each time, got {keep!r}.")
    its = tuple(screen_iterations) if isinstance(screen_iterations, (tuple, list)) else \
        (screen_iterations,) * len(stages)
    if len(its) != len(stages):
        raise ValueError(f"multistart: screen_iterations gives {len(its)} stages, keep {len(stages)}; give one "
                         f"number for every stage or one per stage.")
    for it in its:
        if isinstance(it, bool) or not isinstance(it, (int, np.integer)) or not 1 <= it < limit:
            raise ValueError(f"multistart: screen_iterations must be in [1, max_iterations={limit}), got "
                             f"{screen_iterations}; raise max_iterations or lower screen_iterations.")
    return tuple(int(k) for k in stages), tuple(int(i) for i in its)


def _box(problem: Problem, action_dim: int, scale: float, dtype) -> tuple[Array, Array]:
    """The centre and half-width of the action box, shape (m,) each (0 and ``scale`` without a box)."""
    if problem.action_low is None:
        return jnp.zeros(action_dim, dtype), jnp.full(action_dim, scale, dtype)
    low, high = jnp.asarray(problem.action_low, dtype), jnp.asarray(problem.action_high, dtype)
    return 0.5 * (high + low), 0.5 * (high - low)


def initial_guesses(
    problem: System | Problem,
    horizon: int,
    *,
    pushes: Sequence[float] = (0.5,),
    random: int = 0,
    key: Array | None = None,
    include: Sequence[Array] | Array = (),
    action_dim: int | None = None,
    scale: float = 1.0,
    dtype=jnp.float32,
) -> Array:
    """A standard set of initial action sequences for ``multistart``, shape (S, horizon, m).

    In order: each sequence of ``include`` (e.g. the previous MPC plan, or the actions of a shooting or
    L-BFGS warm start; shape (horizon, m) each, or stacked (k, horizon, m)); the constant box midpoint;
    for each ``p`` in ``pushes`` the constants ``midpoint ± p · half-width`` (a swing-up from rest needs a
    push to either side); ``random`` sequences drawn uniformly inside the box from ``key``, independently
    at every step. Without an action box the midpoint is 0 and the half-width ``scale``.

    ``action_dim`` is needed for a ``Problem`` (a ``System`` knows its own).
    """
    if isinstance(problem, System):
        action_dim = problem.action_dim
    elif action_dim is None:
        raise ValueError("initial_guesses: give action_dim=m for a Problem (a System knows its own).")
    if horizon < 1 or random < 0:
        raise ValueError(f"initial_guesses: need horizon >= 1 and random >= 0, got {horizon}, {random}.")
    if random and key is None:
        raise ValueError("initial_guesses: random guesses need a key (jax.random.key(seed)).")
    mid, half = _box(as_problem(problem), action_dim, scale, dtype)
    constants = [mid] + [mid + s * p * half for p in pushes for s in (1.0, -1.0)]
    parts = [jnp.broadcast_to(jnp.stack(constants)[:, None, :], (len(constants), horizon, action_dim))]
    if random:
        unit = jax.random.uniform(key, (random, horizon, action_dim), dtype, -1.0, 1.0)
        parts.append(mid + unit * half)
    include = jnp.asarray(include, dtype) if len(include) else jnp.zeros((0, horizon, action_dim), dtype)
    include = include[None] if include.ndim == 2 else include
    if include.shape[1:] != (horizon, action_dim):
        raise ValueError(f"initial_guesses: include must hold sequences of shape ({horizon}, {action_dim}), "
                         f"got {include.shape}.")
    return jnp.concatenate([include, *parts]).astype(dtype)
