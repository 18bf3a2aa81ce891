"""What every trajectory optimizer takes and returns.

A problem is either a ``System`` (stage cost ``-system.reward(x, u)``, actions
boxed by ``system.action_low/high``) or a ``Problem(dynamics, cost,
final_cost)`` of plain functions. The lecture's objective is

    min_u  Σ_{t<T} c(x_t, u_t) + c_T(x_T)   s.t.  x_{t+1} = f(x_t, u_t),

and every solver (``lqr``'s trajectory, ``ilqr``, ``shooting``) reports its
answer as a ``Solution``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pathwise.systems.base import System
from pathwise.types import Array


class Problem(NamedTuple):
    """``dynamics(x, u) -> x'``, ``cost(x, u) -> scalar``, optional ``final_cost(x) -> scalar``.

    ``action_low``/``action_high`` (arrays of shape (m,)) bound the actions when given.
    """

    dynamics: Callable[[Array, Array], Array]
    cost: Callable[[Array, Array], Array]
    final_cost: Callable[[Array], Array] | None = None
    action_low: Array | None = None
    action_high: Array | None = None


class Solution(NamedTuple):
    """A locally optimal trajectory and how it was found.

    ``states`` (T+1, n), ``actions`` (T, m); ``K`` (T, m, n) feedback gains with
    ``u_t = actions[t] + K[t] @ (x_t - states[t])`` (zeros for open-loop
    solvers), ``k`` (T, m) the last feedforward step; ``cost`` the total cost of
    ``(states, actions)``; ``converged``; ``iterations``; ``cost_history``
    (max_iterations + 1,) — the cost before the first iteration and after each,
    entries past ``iterations`` repeating the final cost.

    ``projected_gradient_norm`` is the first-order (KKT) residual of the
    returned actions for the box-constrained problem ``min_u J(u)``, ``lower ≤ u ≤ upper``:

        ‖u − clip(u − ∇J(u))‖,

    with ``∇J`` the gradient of the open-loop total cost by backpropagation
    through the rollout (``kkt_residual``); it is ``‖∇J‖`` without bounds and is
    zero exactly at a stationary point (∇J = 0 on the free coordinates, pointing
    out of the box on those held at a bound). ``ilqr`` reports ``converged`` only
    when it is at most ``tol · max(1, |J|)``. ``None`` from a solver that does
    not compute it.
    """

    states: Array
    actions: Array
    K: Array
    k: Array
    cost: Array
    converged: Array
    iterations: Array
    cost_history: Array
    projected_gradient_norm: Array | None = None

    def policy(self, t: int | Array, x: Array) -> Array:
        """The time-varying feedback controller around the trajectory (clipped as the solver clipped)."""
        return self.actions[t] + self.K[t] @ (x - self.states[t])


def _system_step(system: System, x: Array, u: Array) -> Array:
    return system.step(x, u)


def _system_cost(system: System, x: Array, u: Array) -> Array:
    return -system.reward(x, u)


def as_problem(problem: System | Problem, bounds: bool = True) -> Problem:
    """A ``Problem`` for a ``System`` (cost = −reward, its action box) or the ``Problem`` itself."""
    if isinstance(problem, Problem):
        if not bounds:
            return problem._replace(action_low=None, action_high=None)
        return problem
    if isinstance(problem, System):
        if problem.discrete:
            raise ValueError(f"{problem.name} has discrete actions; trajectory optimizers need continuous "
                             "actions (use its continuous variant, e.g. CartPoleSwingUp or AcrobotContinuous).")
        low = high = None
        if bounds:
            low, high = np.asarray(problem.action_low), np.asarray(problem.action_high)
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                low = high = None
        # Partial keeps the system a traced pytree and the function static, so a second solve of the same
        # system class reuses the compiled program.
        return Problem(dynamics=jax.tree_util.Partial(_system_step, problem),
                       cost=jax.tree_util.Partial(_system_cost, problem),
                       action_low=None if low is None else jnp.asarray(low),
                       action_high=None if high is None else jnp.asarray(high))
    if isinstance(problem, tuple) and len(problem) in (2, 3) and all(callable(f) for f in problem):
        return Problem(*problem)
    raise TypeError(f"Expected a pathwise System or a Problem(dynamics, cost[, final_cost]), got {type(problem)}.")


def check_inputs(name: str, problem: System | Problem, x0: Array, actions: Array | int) -> tuple[Array, Array]:
    """``x0`` as (n,) and ``actions`` as (T, m) floats, with messages naming the mistake.

    ``actions`` may be a horizon T for a ``System`` (zeros of its action size); a
    ``System`` also fixes the shapes of ``x0`` and of each action.
    """
    if isinstance(actions, (float, np.floating)) or isinstance(actions, (bool, np.bool_)):
        raise ValueError(f"{name}: the horizon must be a whole number of steps >= 1 (or actions0 an array of shape "
                         f"(T, m)), got {actions!r}; e.g. {name}(system, x0, 100).")
    if isinstance(actions, np.integer):
        actions = int(actions)
    if isinstance(actions, int):
        if not isinstance(problem, System):
            raise ValueError(f"{name}: give actions0 of shape (T, m) for a Problem (a horizon alone does not say m).")
        if actions < 1:
            raise ValueError(f"{name}: the horizon must be >= 1, got {actions}.")
        actions = jnp.zeros((actions, problem.action_dim))
    # NumPy on concrete values: inside a jax trace jnp.isfinite of a captured constant is itself traced
    if not isinstance(x0, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(x0))):
        raise ValueError(f"{name}: x0 contains NaN or inf: {np.asarray(x0)}.")
    if not isinstance(actions, jax.core.Tracer) and not np.all(np.isfinite(np.asarray(actions))):
        raise ValueError(f"{name}: actions0 contains NaN or inf.")
    x0, actions = jnp.asarray(x0), jnp.asarray(actions)
    if x0.ndim != 1:
        raise ValueError(f"{name}: x0 must be one state of shape (n,), got shape {x0.shape}. "
                         "Use jax.vmap over the solver for a batch of initial states.")
    if actions.ndim != 2 or actions.shape[0] < 1:
        raise ValueError(f"{name}: actions0 must have shape (T, m) with T >= 1, got shape {actions.shape}. "
                         "For a scalar action use shape (T, 1), e.g. jnp.zeros((T, 1)).")
    if isinstance(problem, System):
        if x0.shape != (problem.state_dim,):
            raise ValueError(f"{name}: x0 must be a {problem.name} state of shape ({problem.state_dim},), got "
                             f"{x0.shape}. For an observation use system.state_from_obs(obs).")
        if actions.shape[1] != problem.action_dim:
            raise ValueError(f"{name}: actions0 must have shape (T, {problem.action_dim}) for {problem.name}, "
                             f"got {actions.shape}.")
    dtype = jnp.result_type(x0.dtype, actions.dtype, jnp.float32)
    return x0.astype(dtype), actions.astype(dtype)


def clip_actions(problem: Problem, actions: Array) -> Array:
    """``actions`` ``(T, action_dim)`` clipped into the problem's action box, unchanged if it has none."""
    if problem.action_low is None:
        return actions
    return jnp.clip(actions, problem.action_low, problem.action_high)


def simulate(problem: Problem, x0: Array, actions: Array) -> Array:
    """States ``x_0 .. x_T`` of the open-loop action sequence."""

    def step(x, u):
        x2 = problem.dynamics(x, u)
        return x2, x2

    _, xs = jax.lax.scan(step, x0, actions)
    return jnp.concatenate([x0[None], xs])


def trajectory_cost(problem: Problem, states: Array, actions: Array) -> Array:
    """Σ_t c(x_t, u_t) + c_T(x_T) of a given trajectory."""
    cost = jnp.sum(jax.vmap(problem.cost)(states[:-1], actions))
    if problem.final_cost is not None:
        cost = cost + problem.final_cost(states[-1])
    return cost


def kkt_residual(problem: Problem, x0: Array, actions: Array) -> Array:
    """``‖u − clip(u − ∇J(u))‖``: the projected-gradient norm of the total cost in the actions.

    ``J(u) = Σ_t c(x_t, u_t) + c_T(x_T)`` along the open-loop rollout from ``x0``;
    ``∇J`` by ``jax.grad`` through ``simulate`` (the adjoint recursion). ``clip``
    is to the problem's action box (no clip, hence ``‖∇J‖``, without one). Zero
    exactly at a first-order KKT point of ``min J(u)`` over the box.
    """
    grad = jax.grad(lambda u: trajectory_cost(problem, simulate(problem, x0, u), u))(actions)
    if problem.action_low is None:
        return jnp.linalg.norm(grad)
    return jnp.linalg.norm(actions - jnp.clip(actions - grad, problem.action_low, problem.action_high))


def total_cost(problem: System | Problem, x0: Array, actions: Array) -> tuple[Array, Array]:
    """``(states, cost)`` of running ``actions`` open loop from ``x0``."""
    problem = as_problem(problem)
    states = simulate(problem, x0, actions)
    return states, trajectory_cost(problem, states, actions)
