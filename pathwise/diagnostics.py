"""Diagnostics of the lecture's "poor conditioning" of optimization through long rollouts.

Substituting the dynamics into the objective makes the return a deep
composition, ``J = c(x_0, u_0) + c(f(x_0, u_0), u_1) + ... + c(f(f(...)), u_T)``.
Its gradient with respect to an early action or to the policy parameters
holds products of the step Jacobians,

    ∂x_T/∂x_t = Π_{s=t}^{T-1} ∂f/∂x(x_s, u_s)          (open loop)
    ∂x_T/∂x_t = Π_{s=t}^{T-1} [f_x + f_u ∂π/∂x](x_s)   (closed loop, policy π_θ)

which grow or shrink geometrically with the horizon: early actions matter
exponentially more (or less) than late ones, and the Hessian over the action
sequence has eigenvalues spread over many orders of magnitude. Gradient descent
on such a problem ("shooting") crawls, while iLQR, which solves for the whole
sequence by dynamic programming, does not.

``gradient_norms`` measures all of this as a function of the horizon;
``shooting_vs_ilqr`` runs the solvers side by side on one problem. Both return
plain dicts of NumPy arrays (plotting lives in ``benchmarks/bench_conditioning.py``).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, PyTree

DEFAULT_HORIZONS = (10, 25, 50, 100, 200, 400)
MEASURES = ("return", "param_grad_norm", "action_grad_norm", "open_loop_jacobian_norm",
            "closed_loop_jacobian_norm")


def as_apply(policy: Any) -> tuple[Callable[[PyTree, Array], Array], PyTree]:
    """``(apply(params, obs) -> action, params)`` for an equinox policy module or such a pair."""
    if isinstance(policy, tuple) and len(policy) == 2 and callable(policy[0]):
        return policy
    if callable(policy):
        params, static = eqx.partition(policy, eqx.is_inexact_array)
        return (lambda p, obs: eqx.combine(p, static)(obs)), params
    raise TypeError(f"Expected a policy (an equinox module, policy(obs) -> action) or a pair "
                    f"(apply(params, obs), params), got {type(policy)}.")


def closed_loop(system: System, apply: Callable, params: PyTree, x0: Array, horizon: int):
    """States (T, n), actions (T, m), rewards (T,) of the policy from ``x0`` (no noise)."""

    def step(x, _):
        u = apply(params, system.observe(x))
        return system.step(x, u), (x, u, system.reward(x, u))

    _, (xs, us, rs) = jax.lax.scan(step, x0, None, length=horizon)
    return xs, us, rs


def open_loop_rewards(system: System, x0: Array, actions: Array) -> Array:
    """Rewards (T,) of running ``actions`` open loop from ``x0``."""

    def step(x, u):
        return system.step(x, u), system.reward(x, u)

    return jax.lax.scan(step, x0, actions)[1]


def _open_loop_states(system: System, x0: Array, actions: Array) -> Array:
    def step(x, u):
        x2 = system.step(x, u)
        return x2, x2

    return jnp.concatenate([x0[None], jax.lax.scan(step, x0, actions)[1]])


def _closed_loop_states(system: System, apply: Callable, params: PyTree, x0: Array, horizon: int) -> Array:
    def step(x, _):
        x2 = system.step(x, apply(params, system.observe(x)))
        return x2, x2

    return jnp.concatenate([x0[None], jax.lax.scan(step, x0, None, length=horizon)[1]])


def _tree_norms(tree: PyTree) -> Array:
    """Euclidean norm over all leaves, per entry of their shared leading axis."""
    leaves = jax.tree.leaves(tree)
    return jnp.sqrt(sum(jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1) for leaf in leaves))


def _measure_one(system: System, apply: Callable, params: PyTree, x0: Array, horizons: tuple[int, ...]):
    """Every measure for one initial state, at every horizon, from one rollout of the longest horizon."""
    T, idx = max(horizons), jnp.asarray(horizons) - 1
    partial_returns = lambda rewards: jnp.cumsum(rewards)[idx]  # noqa: E731 - J_H for every H at once

    # d J_H / d theta: one VJP per horizon (jacrev over the k partial returns)
    d_theta = jax.jacrev(lambda p: partial_returns(closed_loop(system, apply, p, x0, T)[2]))(params)
    _, us, rs = closed_loop(system, apply, params, x0, T)
    # d J_H / d u with the policy's own actions held fixed (open loop)
    d_u = jax.jacrev(lambda u: partial_returns(open_loop_rewards(system, x0, u)))(us)  # (k, T, m)
    # products of step Jacobians, d x_H / d x_0, by forward mode (n tangents)
    jac_open = jax.jacfwd(lambda x: _open_loop_states(system, x, us))(x0)[idx + 1]
    jac_closed = jax.jacfwd(lambda x: _closed_loop_states(system, apply, params, x, T))(x0)[idx + 1]
    spectral = lambda j: jnp.linalg.svd(j, compute_uv=False)[..., 0]  # noqa: E731
    return {
        "return": partial_returns(rs),
        "param_grad_norm": _tree_norms(d_theta),
        "action_grad_norm": jnp.sqrt(jnp.sum(d_u**2, axis=(1, 2))),
        "open_loop_jacobian_norm": spectral(jac_open),
        "closed_loop_jacobian_norm": spectral(jac_closed),
        "action_grad_by_t": jnp.linalg.norm(d_u[-1], axis=-1),  # ||dJ_T/du_t|| for the longest horizon
    }


def _hessian_spectrum(system: System, x0: Array, actions: Array) -> Array:
    """Eigenvalue magnitudes |λ| (ascending) of the Hessian of the open-loop return over ``actions`` (T·m of them)."""
    T, m = actions.shape
    flat = lambda u: jnp.sum(open_loop_rewards(system, x0, u.reshape(T, m)))  # noqa: E731
    H = jax.hessian(flat)(actions.reshape(-1))
    return jnp.sort(jnp.abs(jnp.linalg.eigvalsh(0.5 * (H + H.T))))


def _initial_states(system: System, states0, key, num_states, dtype) -> Array:
    if states0 is None:
        key = jax.random.PRNGKey(0) if key is None else key
        states0 = jax.vmap(system.reset)(jax.random.split(key, num_states))
    states0 = jnp.asarray(states0)
    if states0.ndim == 1:
        states0 = states0[None]
    if states0.ndim != 2 or states0.shape[1] != system.state_dim:
        raise ValueError(f"gradient_norms: states0 must have shape (N, {system.state_dim}) or "
                         f"({system.state_dim},), got {states0.shape}.")
    if not bool(jnp.all(jnp.isfinite(states0))):
        raise ValueError("gradient_norms: states0 contains NaN or inf.")
    return states0 if dtype is None else states0.astype(dtype)


def _check_horizons(horizons) -> tuple[int, ...]:
    horizons = tuple(int(h) for h in horizons)
    if not horizons or min(horizons) < 1 or list(horizons) != sorted(set(horizons)):
        raise ValueError(f"gradient_norms: horizons must be distinct positive ints in increasing order, "
                         f"got {horizons}.")
    return horizons


def gradient_norms(
    system: System,
    policy: Any,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    *,
    states0: Array | None = None,
    key: PRNGKey | None = None,
    num_states: int = 8,
    hessian: bool = False,
    dtype: Any = None,
) -> dict[str, Any]:
    """How the gradients of the return scale with the horizon (the lecture's "poor conditioning").

    For each initial state (``states0``, or ``num_states`` draws of ``system.reset``) the
    policy is rolled out for ``max(horizons)`` steps without process noise and ignoring
    termination (the dynamics' own gradients are what is measured), and for every horizon H:

    - ``return``: J_H = Σ_{t<H} r_t;
    - ``param_grad_norm``: ‖∂J_H/∂θ‖ through the closed loop (BPTT's gradient);
    - ``action_grad_norm``: ‖∂J_H/∂u_{0:H}‖ with the policy's actions held fixed (shooting's gradient);
    - ``open_loop_jacobian_norm`` / ``closed_loop_jacobian_norm``: ‖∂x_H/∂x_0‖₂, the product of
      step Jacobians without / with the policy's feedback;
    - with ``hessian=True``, ``hessian_max_eig``, ``hessian_min_eig`` and ``hessian_condition``
      (max/min of |eigenvalues| of ∂²J_H/∂u² over the H·m actions, float precision permitting).

    Also ``action_grad_by_t``: ‖∂J_T/∂u_t‖ for t < T = max(horizons) (early actions vs late).

    ``policy`` is an equinox module ``policy(obs) -> action`` or a pair ``(apply(params, obs), params)``;
    ``dtype`` (e.g. ``jnp.float64`` with x64 enabled) casts the states and parameters.
    Returns NumPy arrays: each measure as the median over initial states, shape (len(horizons),),
    and under ``"per_state"`` the full (len(horizons), N) arrays.
    """
    if not isinstance(system, System) or system.discrete:
        raise ValueError(f"gradient_norms needs a continuous-action pathwise System, got {system!r:.80}.")
    horizons = _check_horizons(horizons)
    apply, params = as_apply(policy)
    if dtype is not None:
        params = jax.tree.map(lambda a: a.astype(dtype), params)
    states0 = _initial_states(system, states0, key, num_states, dtype)
    measured = jax.jit(jax.vmap(lambda x0: _measure_one(system, apply, params, x0, horizons)))(states0)
    per_state = {name: np.asarray(v).T for name, v in measured.items() if name != "action_grad_by_t"}
    if hessian:
        per_state.update(_hessians(system, apply, params, states0, horizons))
    out: dict[str, Any] = {"horizons": np.asarray(horizons), "num_states": int(states0.shape[0])}
    out.update({name: np.median(v, axis=1) for name, v in per_state.items()})
    out["action_grad_by_t"] = np.median(np.asarray(measured["action_grad_by_t"]), axis=0)
    out["per_state"] = per_state
    return out


def _hessians(system, apply, params, states0, horizons) -> dict[str, np.ndarray]:
    """Hessian spectra over the action sequence, one compiled program per horizon (shapes differ)."""
    T = max(horizons)
    us = jax.jit(jax.vmap(lambda x0: closed_loop(system, apply, params, x0, T)[1]))(states0)
    rows = {"hessian_max_eig": [], "hessian_min_eig": [], "hessian_condition": []}
    for H in horizons:
        eig = np.asarray(jax.jit(jax.vmap(lambda x0, u: _hessian_spectrum(system, x0, u)))(states0, us[:, :H]))
        rows["hessian_max_eig"].append(eig[:, -1])
        rows["hessian_min_eig"].append(eig[:, 0])
        with np.errstate(divide="ignore"):
            rows["hessian_condition"].append(eig[:, -1] / eig[:, 0])
    return {name: np.stack(v) for name, v in rows.items()}


SOLVERS = ("adam", "lbfgs", "ilqr")


def _solver(name: str, system: System, max_iterations: int, options: dict[str, Any]) -> Callable:
    if name == "ilqr":
        from pathwise.control.ilqr import ilqr

        return lambda x0, a0: ilqr(system, x0, a0, max_iterations=max_iterations, **options)
    from pathwise.control.shooting import shooting

    if name not in ("adam", "lbfgs"):
        raise ValueError(f"shooting_vs_ilqr: unknown solver {name!r}; choose from {SOLVERS}.")
    return lambda x0, a0: shooting(system, x0, a0, optimizer=name, max_iterations=max_iterations, **options)


def shooting_vs_ilqr(
    system: System,
    x0: Array,
    horizon: int,
    *,
    actions0: Array | None = None,
    max_iterations: int = 100,
    solvers: Sequence[str] = SOLVERS,
    options: dict[str, dict[str, Any]] | None = None,
    repeats: int = 3,
) -> dict[str, dict[str, Any]]:
    """Cost against iteration (and wall-clock) of gradient shooting (Adam, L-BFGS) and iLQR on one problem.

    Every solver starts from ``actions0`` (zeros by default) at ``x0`` and runs at most
    ``max_iterations`` iterations; ``options[name]`` passes keyword arguments to one solver
    (e.g. ``{"adam": {"learning_rate": 0.1}}``). Each solve is compiled once, then timed ``repeats``
    times (``seconds`` is the median: a solve can take only milliseconds, so one timing is noisy).
    Returns ``{name: {"cost_history", "cost", "return", "iterations", "converged", "seconds",
    "seconds_per_iteration", "actions", "states"}}`` (NumPy values; ``return`` = −cost).
    """
    x0 = jnp.asarray(x0, jnp.float32) if not jnp.issubdtype(jnp.asarray(x0).dtype, jnp.floating) else jnp.asarray(x0)
    actions0 = jnp.zeros((int(horizon), system.action_dim), x0.dtype) if actions0 is None else jnp.asarray(actions0)
    if actions0.shape[0] != horizon:
        raise ValueError(f"shooting_vs_ilqr: actions0 must have {horizon} rows (the horizon), got {actions0.shape}.")
    options = options or {}
    unknown = set(options) - set(solvers)
    if unknown:
        raise ValueError(f"shooting_vs_ilqr: options for solvers not run: {sorted(unknown)}.")
    results = {}
    for name in solvers:
        solve = jax.jit(_solver(name, system, max_iterations, options.get(name, {})))
        jax.block_until_ready(solve(x0, actions0))  # compile
        times = []
        for _ in range(max(int(repeats), 1)):
            start = time.perf_counter()
            sol = jax.block_until_ready(solve(x0, actions0))
            times.append(time.perf_counter() - start)
        seconds = float(np.median(times))
        iterations = int(sol.iterations)
        results[name] = {
            "cost_history": np.asarray(sol.cost_history), "cost": float(sol.cost), "return": -float(sol.cost),
            "iterations": iterations, "converged": bool(sol.converged), "seconds": seconds,
            "seconds_per_iteration": seconds / max(iterations, 1),
            "actions": np.asarray(sol.actions), "states": np.asarray(sol.states),
        }
    return results
