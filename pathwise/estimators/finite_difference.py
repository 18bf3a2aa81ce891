"""Finite-difference gradient estimates (lecture: "Numerically: finite differencing").

Central differences along directions v:

    D_v f(θ) ≈ (f(θ + ε v) − f(θ − ε v)) / (2ε)

either along every coordinate e_i (2d evaluations, error O(ε²)) or along k random
Gaussian directions v ~ N(0, I), ĝ = 1/k Σ_j D_{v_j} f(θ) v_j (Gaussian smoothing /
SPSA-style: unbiased for ∇f as ε → 0 because E[v vᵀ] = I, at any k). Parameters
are any pytree; it is flattened with ``ravel_pytree``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from pathwise.estimators.objective import StochasticObjective
from pathwise.types import Array, PRNGKey, PyTree


def check_eps(eps) -> None:
    """Raise ValueError for a concrete non-positive step."""
    if not isinstance(eps, jax.core.Tracer) and not float(np.asarray(eps)) > 0:
        raise ValueError(f"finite_difference: eps must be positive, got {eps!r}; try eps=1e-3 for float32.")


def central_differences(f: Callable[[PyTree], Array], params: PyTree, eps, directions: Array) -> Array:
    """(f(θ + ε v_j) − f(θ − ε v_j)) / (2ε) for each row v_j of ``directions`` (in flattened θ)."""
    flat, unravel = ravel_pytree(params)
    return jax.vmap(lambda v: (f(unravel(flat + eps * v)) - f(unravel(flat - eps * v))) / (2.0 * eps))(directions)


def finite_difference(f: Callable[[PyTree], Array], params: PyTree, eps=1e-3, *, directions: int | None = None,
                      key: PRNGKey | None = None) -> PyTree:
    """Central-difference gradient of a deterministic scalar ``f`` at ``params`` (a pytree like ``params``).

    ``directions=None``: coordinate-wise, ĝ_i = D_{e_i} f. ``directions=k``: k random
    Gaussian directions, ĝ = 1/k Σ_j D_{v_j} f · v_j (needs ``key``).
    """
    check_eps(eps)
    flat, unravel = ravel_pytree(params)
    if directions is None:
        return unravel(central_differences(f, params, eps, jnp.eye(flat.size, dtype=flat.dtype)))
    if key is None:
        raise ValueError("finite_difference: random directions need key=jax.random.PRNGKey(...).")
    if int(directions) < 1:
        raise ValueError(f"finite_difference: directions must be a positive int or None, got {directions!r}.")
    v = jax.random.normal(key, (int(directions), flat.size), flat.dtype)
    return unravel(jnp.mean(central_differences(f, params, eps, v)[:, None] * v, axis=0))


def finite_difference_estimate(objective: StochasticObjective, params: PyTree, key: PRNGKey, n: int, eps=1e-2,
                               *, random_directions: bool = False) -> PyTree:
    """FD estimate of ∇ E_ξ[F(θ, ξ)] from a budget of ``n`` evaluations of F, with common random numbers.

    Coordinate-wise: m = max(1, n // 2d) noise draws shared by all 2d perturbed
    evaluations, ĝ_i = D_{e_i} (1/m Σ_j F(·, ξ_j)). Random directions: n // 2 pairs,
    each with its own ξ_j and v_j, ĝ = 1/k Σ_j D_{v_j} F(·, ξ_j) v_j.
    """
    check_eps(eps)
    flat, unravel = ravel_pytree(params)
    if not random_directions:
        m = max(1, n // (2 * flat.size))
        xis = jax.vmap(lambda k: objective.sample_noise(params, k))(jax.random.split(key, m))
        mean_value = lambda p: jnp.mean(jax.vmap(objective.value, (None, 0))(p, xis))
        return finite_difference(mean_value, params, eps)
    k = max(1, n // 2)
    k_dir, k_noise = jax.random.split(key)
    v = jax.random.normal(k_dir, (k, flat.size), flat.dtype)
    xis = jax.vmap(lambda kk: objective.sample_noise(params, kk))(jax.random.split(k_noise, k))

    def one(v_j, xi_j):
        f = lambda p: objective.value(p, xi_j)
        return central_differences(f, params, eps, v_j[None])[0] * v_j

    return unravel(jnp.mean(jax.vmap(one)(v, xis), axis=0))
