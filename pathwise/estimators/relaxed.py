"""Relaxed and straight-through samples for discrete variables.

Lecture, "Re-parametrization trick for categorical distributions":

    y = G(log p) = softmax((log p + ε) / τ),   ε = −log(−log u),  u ~ U[0, 1]

As τ → 0, y tends to the one-hot of argmax(log p + ε), an exact categorical sample
(Gumbel-max). "Backpropagating through discrete variables": in the forward pass
use the hard sample, in the backward pass the gradient of a soft surrogate —
``hard + soft − stop_gradient(soft)`` has the value of ``hard`` and the derivative
of ``soft``. The surrogate is the relaxed sample G (straight-through Gumbel), the
class probabilities softmax(logits) (straight-through categorical), or the
sigmoid (straight-through binary neuron).

Every function takes either a PRNG key (noise drawn here) or the noise itself:
Gumbel noise of ``logits.shape`` for the categorical ones, uniform noise for the
Bernoulli one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pathwise.types import Array, PRNGKey


def _is_key(x) -> bool:
    x = jnp.asarray(x) if not hasattr(x, "dtype") else x
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key) or (x.dtype == jnp.uint32 and x.shape == (2,))


def _noise(key_or_noise: PRNGKey | Array, shape: tuple[int, ...], dtype, draw) -> Array:
    if _is_key(key_or_noise):
        return draw(key_or_noise, shape, dtype)
    noise = jnp.asarray(key_or_noise, dtype)
    if noise.shape != shape:
        raise ValueError(f"relaxed: noise must have the logits' shape {shape}, got {noise.shape}.")
    return noise


def check_temperature(tau) -> None:
    """Raise ValueError for a concrete non-positive (or non-finite) temperature."""
    if isinstance(tau, jax.core.Tracer):
        return
    t = np.asarray(tau)
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"relaxed: temperature tau must be positive, got {tau!r}; small tau (e.g. 0.1) is close "
                         "to a one-hot sample, large tau to uniform.")


def straight_through(hard: Array, soft: Array) -> Array:
    """Forward value ``hard``, backward gradient of ``soft``."""
    return soft + jax.lax.stop_gradient(hard - soft)


def gumbel_softmax(key_or_noise: PRNGKey | Array, logits: Array, tau: float | Array = 1.0,
                   hard: bool = False) -> Array:
    """y = softmax((logits + ε)/τ) over the last axis; ``hard``: forward one_hot(argmax y), backward ∇y."""
    check_temperature(tau)
    logits = jnp.asarray(logits)
    eps = _noise(key_or_noise, logits.shape, logits.dtype, jax.random.gumbel)
    soft = jax.nn.softmax((logits + eps) / tau, axis=-1)
    if not hard:
        return soft
    return straight_through(jax.nn.one_hot(jnp.argmax(soft, axis=-1), logits.shape[-1], dtype=soft.dtype), soft)


def straight_through_categorical(key_or_noise: PRNGKey | Array, logits: Array) -> Array:
    """Forward: one-hot categorical sample (Gumbel-max); backward: the gradient of p = softmax(logits)."""
    logits = jnp.asarray(logits)
    eps = _noise(key_or_noise, logits.shape, logits.dtype, jax.random.gumbel)
    hard = jax.nn.one_hot(jnp.argmax(logits + eps, axis=-1), logits.shape[-1], dtype=logits.dtype)
    return straight_through(hard, jax.nn.softmax(logits, axis=-1))


def straight_through_bernoulli(key_or_noise: PRNGKey | Array, logits: Array) -> Array:
    """Binary neuron: forward z = [u < σ(logits)] ∈ {0, 1}; backward the sigmoid's gradient ∂σ(logits)."""
    logits = jnp.asarray(logits)
    u = _noise(key_or_noise, logits.shape, logits.dtype, jax.random.uniform)
    p = jax.nn.sigmoid(logits)
    return straight_through((u < p).astype(logits.dtype), p)
