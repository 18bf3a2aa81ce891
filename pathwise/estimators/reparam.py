"""The pathwise (reparameterization) gradient estimator.

Lecture, "Re-parametrization trick": with y = μ(x) + σ(x) ξ, ξ ~ N(0, 1),

    ∇θ E_ξ[f(g(θ, ξ))] = E_ξ[∇θ f(g(θ, ξ))] ≈ 1/n Σ_i ∇θ F(θ, ξ_i)

It needs a reparameterizable distribution (``reparameterizable = True``) and an f
differentiable in the sample. A piecewise-constant f (``round``, integer casts,
comparisons) has zero derivative almost everywhere, so the "estimate" would be
silently zero: eager calls detect that (and NaN or integer-valued f) and raise.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from pathwise.estimators.objective import StochasticObjective, distribution_objective
from pathwise.types import Array, PRNGKey, PyTree

NOT_REPARAM = ("pathwise: the distribution is not reparameterizable (discrete samples have no pathwise derivative); "
               "use score_function(...), or a relaxation from pathwise.estimators.relaxed (gumbel_softmax, "
               "straight_through_categorical/bernoulli).")


def per_sample_gradients(objective: StochasticObjective, params: PyTree, xis: PyTree) -> tuple[Array, PyTree]:
    """F(θ, ξ_i) and ∇θ F(θ, ξ_i) for each noise sample (leading axis n)."""
    try:
        return jax.vmap(jax.value_and_grad(objective.value), (None, 0))(params, xis)
    except TypeError as err:  # e.g. an integer-valued f: jax refuses to differentiate it
        raise ValueError(f"pathwise: f cannot be differentiated ({err}). The pathwise estimator needs a real-valued "
                         "f that is differentiable in the sample; use score_function(...) instead.") from err


def check_differentiable(values: Array, grads: PyTree) -> None:
    """Raise if (concrete) gradients are NaN, or all exactly zero while the sampled values vary."""
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((values, grads))):
        return  # under jit: call pathwise(...) eagerly once to run this check
    flat = np.asarray(jax.vmap(lambda g: ravel_pytree(g)[0])(grads))
    if not np.all(np.isfinite(flat)):
        raise ValueError("pathwise: the per-sample gradient of f contains NaN or inf; check f for singularities "
                         "(log of 0, sqrt at 0, division) at the sampled points.")
    if np.all(flat == 0) and np.ptp(np.asarray(values)) > 0:
        raise ValueError("pathwise: f is not differentiable in the sample: its gradient is exactly zero at every "
                         "sample although f varies (piecewise-constant f such as round, argmax, comparisons or "
                         "integer casts). Use score_function(...) or finite differences instead.")


def pathwise_estimate(objective: StochasticObjective, params: PyTree, key: PRNGKey, n: int, *,
                      check: bool = True) -> PyTree:
    """ĝ = 1/n Σ_i ∇θ F(θ, ξ_i), ξ_i ~ p(ξ): the pathwise estimate of ∇θ E[F] (pytree like ``params``)."""
    if not objective.reparameterizable:
        raise ValueError(NOT_REPARAM)
    xis = jax.vmap(lambda k: objective.sample_noise(params, k))(jax.random.split(key, n))
    values, grads = per_sample_gradients(objective, params, xis)
    if check:
        check_differentiable(values, grads)
    return jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)


def pathwise(f: Callable[[Array], Array], dist_fn: Callable[[PyTree], Any], params: PyTree, key: PRNGKey,
             n: int, *, check: bool = True) -> PyTree:
    """Pathwise estimate of ∇θ E_{x ~ dist_fn(θ)}[f(x)] from ``n`` reparameterized samples x = g(θ, ξ)."""
    return pathwise_estimate(distribution_objective(f, dist_fn, params), params, key, n, check=check)
