"""Model-predictive control: re-plan over a receding horizon at every step, act on the first action.

At each state the solver (iLQR by default, or gradient shooting) optimizes the
next ``horizon`` actions, warm-started from the previous plan shifted by one
step, so a few iterations per step suffice once the first plan is found. The
controller is a pair of pure functions like every pathwise policy with memory::

    mpc = pw.control.MPC(pw.systems.Pendulum(), horizon=40)
    plan = mpc.init(state)                    # full solve from scratch
    plan, action = mpc.step(plan, state)      # jittable: warm-started re-plan

``mpc.rollout(state0, steps)`` runs it closed loop on its own model (a
``lax.scan``), and ``MPCPolicy`` drives a Gymnasium env (observation in,
action out) through ``system.state_from_obs``. A learned dynamics model is a
``System`` too, so MPC runs on it unchanged.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.control.multistart import initial_guesses, multistart
from pathwise.control.solution import Problem, as_problem, clip_actions, kkt_residual
from pathwise.systems.base import System
from pathwise.types import Array


class Plan(NamedTuple):
    """The controller's memory: the action plan to warm-start from and the state it predicted next.

    ``converged`` and ``projected_gradient_norm`` describe the last inner solve:
    the KKT residual ``‖u − clip(u − ∇J)‖`` of its actions (see
    ``Solution.projected_gradient_norm``), and whether it was within the solver's
    ``tol · max(1, |J|)``. A warm-started step runs only ``iterations`` iterations,
    so ``converged`` may well be False there; the action is applied regardless.
    """

    actions: Array  # (horizon, m)
    predicted: Array  # (n,) the state the plan expects after its first action
    cost: Array  # the plan's cost at the last solve
    converged: Array | None = None
    projected_gradient_norm: Array | None = None


class MPC(eqx.Module):
    """Receding-horizon control over ``system`` (a ``System`` or a ``Problem``).

    ``restarts=True`` re-solves every step from the constant initial guesses as well as from the
    warm start and keeps the cheapest plan (``pathwise.control.multistart``: one vmapped solve of
    all starts; about as many times the work as there are starts; escapes iLQR's local minima).
    """

    system: System | Problem
    horizon: int = eqx.field(static=True, default=40)
    iterations: int = eqx.field(static=True, default=5)
    init_iterations: int = eqx.field(static=True, default=100)
    solver: Literal["ilqr", "shooting"] = eqx.field(static=True, default="ilqr")
    action_dim: int = eqx.field(static=True, default=0)
    restarts: bool = eqx.field(static=True, default=False)

    def __init__(self, system: System | Problem, horizon: int = 40, iterations: int = 5,
                 init_iterations: int = 100, solver: Literal["ilqr", "shooting"] = "ilqr",
                 action_dim: int | None = None, restarts: bool = False):
        for name, value in (("horizon", horizon), ("iterations", iterations), ("init_iterations", init_iterations)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"MPC: {name} must be a whole number >= 1, got {value!r}; e.g. {name}=30.")
        if horizon < 1:
            raise ValueError(f"MPC: horizon must be >= 1, got {horizon}.")
        if iterations < 1 or init_iterations < 1:
            raise ValueError(f"MPC: iterations and init_iterations must be >= 1, got {iterations}, "
                             f"{init_iterations}.")
        if solver not in ("ilqr", "shooting"):
            raise ValueError(f"MPC: unknown solver {solver!r}; use 'ilqr' or 'shooting'.")
        if isinstance(system, System):
            as_problem(system)  # raises for discrete systems
            action_dim = system.action_dim
        elif action_dim is None:
            raise ValueError("MPC: give action_dim=m for a Problem (a System knows its own).")
        self.system, self.horizon, self.iterations = system, int(horizon), int(iterations)
        self.init_iterations, self.solver, self.action_dim = int(init_iterations), solver, int(action_dim)
        self.restarts = bool(restarts)

    def _solve(self, state: Array, starts: Array, iterations: int):
        """Solve from every action sequence in ``starts`` in parallel (``multistart``); the cheapest solution.

        The cheapest, converged or not: a warm-started step runs few iterations and rarely converges, and its
        plan is applied regardless.
        """
        return multistart(self.system, state, starts, solver=self.solver, max_iterations=iterations).best

    def _plan(self, state: Array, actions: Array, iterations: int) -> tuple[Plan, Array]:
        starts = actions[None]
        if self.restarts:  # also re-solve from the constant initial guesses; keep the cheapest plan
            starts = jnp.concatenate([starts, self.initial_guesses(actions.dtype)])
        sol = self._solve(state, starts, iterations)
        action = clip_actions(as_problem(self.system), sol.actions[:1])[0]
        shifted = jnp.concatenate([sol.actions[1:], sol.actions[-1:]])
        return Plan(shifted, sol.states[1], sol.cost, sol.converged, self._residual(state, sol)), action

    def _residual(self, state: Array, sol) -> Array:
        """The solution's projected-gradient norm (computed here for a solver that does not report it)."""
        if sol.projected_gradient_norm is not None:
            return sol.projected_gradient_norm
        return kkt_residual(as_problem(self.system), state, sol.actions)

    def init(self, state: Array) -> Plan:
        """A plan found from scratch (the best from ``initial_guesses``, ``init_iterations`` iterations each)."""
        state = jnp.asarray(state)
        guesses = self.initial_guesses(jnp.result_type(state.dtype, jnp.float32))
        sol = self._solve(state, guesses, self.init_iterations)
        return Plan(sol.actions, state, sol.cost, sol.converged, self._residual(state, sol))

    def initial_guesses(self, dtype=jnp.float32) -> Array:
        """Constant action sequences the first plan starts from, solved in parallel, best kept: the box midpoint
        (zero without a box) and, in a box, midpoint ± half the half-width (iLQR is local; a swing-up from rest
        needs a push). ``pathwise.control.initial_guesses`` with its defaults."""
        return initial_guesses(self.system, self.horizon, action_dim=self.action_dim, dtype=dtype,
                               pushes=(0.5,) if as_problem(self.system).action_low is not None else ())

    def step(self, plan: Plan, state: Array) -> tuple[Plan, Array]:
        """Warm-started re-plan from ``state``: the new plan and the action to apply now."""
        return self._plan(jnp.asarray(state), plan.actions, self.iterations)

    def __call__(self, state: Array) -> Array:
        """Memoryless use (plans from scratch every call): the first action of a full solve."""
        return self._plan(jnp.asarray(state), jnp.zeros((self.horizon, self.action_dim)),
                          self.init_iterations)[1]

    def rollout(self, state0: Array, steps: int) -> tuple[Array, Array, Array]:
        """Closed loop on the controller's own model: ``(states (steps+1, n), actions (steps, m), rewards)``.

        Rewards are those of the ``System`` (minus the stage cost for a ``Problem``).
        """
        problem = as_problem(self.system)

        def body(carry, _):
            x, plan = carry
            plan, u = self.step(plan, x)
            return (problem.dynamics(x, u), plan), (x, u, -problem.cost(x, u))

        (x_last, _), (xs, us, rs) = jax.lax.scan(body, (state0, self.init(state0)), None, length=steps)
        return jnp.concatenate([xs, x_last[None]]), us, rs


def mpc_expert(system: System, horizon: int = 40, iterations: int = 5, init_iterations: int = 100) -> MPC:
    """An MPC controller as an expert with memory (``init(state)``, ``step(plan, state)``) for imitation."""
    return MPC(system, horizon=horizon, iterations=iterations, init_iterations=init_iterations)


@eqx.filter_jit
def _init(mpc: MPC, state: Array) -> Plan:
    return mpc.init(state)


@eqx.filter_jit
def _step(mpc: MPC, plan: Plan, state: Array) -> tuple[Plan, Array]:
    return mpc.step(plan, state)


class MPCPolicy:
    """MPC as a Gymnasium policy: ``action = policy(obs)``, for ``pathwise.envs.evaluate`` and friends.

    ``mpc`` is an ``MPC`` or any receding-horizon planner over a ``System`` with the same ``init(state)``,
    ``step(plan, state)`` and a plan's ``predicted`` state, such as ``pw.control.SamplingMPC`` (CEM, MPPI).

    The observation is turned into the model's state by ``system.state_from_obs``.
    The previous plan is reused (warm start) while the observed state is the one it
    predicted (within ``replan_tol``); a state it did not predict — a new episode, a
    large disturbance — triggers a plan from scratch. Call ``reset()`` to force one.
    """

    def __init__(self, mpc: MPC, replan_tol: float = 0.5):
        if not isinstance(getattr(mpc, "system", None), System):
            raise TypeError("MPCPolicy needs an MPC (or SamplingMPC) over a System (it maps observations to states).")
        self.mpc, self.replan_tol = mpc, float(replan_tol)
        self.plan: Plan | None = None

    def reset(self) -> None:
        """Forget the current plan, so that the next call plans from scratch (call it at a new episode)."""
        self.plan = None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        system = self.mpc.system
        state = system.state_from_obs(jnp.asarray(obs, jnp.float32))
        # compared as observations, so that angles differing by 2π count as the same state
        if self.plan is None or float(jnp.max(jnp.abs(jnp.asarray(obs) - system.observe(self.plan.predicted)))) \
                > self.replan_tol:
            self.plan = _init(self.mpc, state)
        self.plan, action = _step(self.mpc, self.plan, state)
        return np.asarray(action, np.float32)
