"""A stochastic objective J(θ) = E_ξ[F(θ, ξ)] in the form every estimator here consumes.

The noise ξ is drawn independently of θ (explicit noise), so one description
serves all estimators:

- pathwise:           ∇θ J = E_ξ[∇θ F(θ, ξ)]                    (needs F differentiable in θ)
- score function:     ∇θ J = E[Σ_t ∇θ log p_θ(x_t | ·) G_t]      (x drawn at θ held fixed)
- finite differences: (F(θ + εv, ξ) − F(θ − εv, ξ)) / 2ε with common ξ

``log_probs_and_rewards(θ, ξ)`` returns, for the sample generated from ξ at
``stop_gradient(θ)``, the log-likelihoods under θ and the rewards: scalars for a
one-shot objective E[f(x)], or length-T vectors for a sequence (then reward-to-go
weighting applies), with Σ rewards = F(θ, ξ) at the same θ.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from pathwise.types import Array, PRNGKey, PyTree


class StochasticObjective(NamedTuple):
    """J(θ) = E_ξ[F(θ, ξ)] with explicit noise; see the module docstring for each field's role."""

    sample_noise: Callable[[PyTree, PRNGKey], PyTree]
    """``sample_noise(params, key) -> ξ`` (params only fix shapes; ξ does not depend on their values)."""
    value: Callable[[PyTree, PyTree], Array]
    """``value(params, ξ) -> F(θ, ξ)``, the scalar sample of the objective."""
    log_probs_and_rewards: Callable[[PyTree, PyTree], tuple[Array, Array]]
    """``(params, ξ) -> (log p_θ(x), rewards)`` for the sample x generated at ``stop_gradient(params)``."""
    reparameterizable: bool
    """Whether ``value`` is differentiable in θ (False for discrete samples: no pathwise estimator)."""


def distribution_objective(f: Callable[[Array], Array], dist_fn: Callable[[PyTree], Any],
                           params: PyTree) -> StochasticObjective:
    """E_{x ~ dist_fn(θ)}[f(x)] for any ``pathwise.distributions`` distribution.

    Args:
      f: scalar function of one sample.
      dist_fn: ``params -> distribution`` (``Normal``, ``TanhNormal``, ``Categorical``, ``Bernoulli``, ...).
      params: example parameters (only their structure is used, to read the distribution's
        ``reparameterizable`` flag without computing anything).
    """

    def sample_noise(params, key):
        return dist_fn(jax.lax.stop_gradient(params)).sample_noise(key)

    def value(params, xi):
        return f(dist_fn(params).sample_from_noise(xi))

    def log_probs_and_rewards(params, xi):
        x = jax.lax.stop_gradient(dist_fn(jax.lax.stop_gradient(params)).sample_from_noise(xi))
        return dist_fn(params).log_prob(x), f(x)

    dist_type = type(jax.eval_shape(dist_fn, params))
    return StochasticObjective(sample_noise, value, log_probs_and_rewards, is_reparameterizable(dist_type))


def is_reparameterizable(dist_type: type) -> bool:
    """The class's ``reparameterizable`` flag; a class without one is treated as not reparameterizable."""
    return bool(getattr(dist_type, "reparameterizable", False))
