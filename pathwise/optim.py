"""The one optimizer every algorithm uses: Optax Adam behind optional clipping, skipping non-finite steps.

:func:`adam` builds ``optax.apply_if_finite(chain(clip_by_global_norm, adam(schedule)))`` once per
distinct set of hyperparameters (cached): a gradient with a NaN or inf entry leaves the parameters
and Adam's moments unchanged, and the optimizer state counts it (:func:`skipped`). :func:`init` and
:func:`apply` act on the trainable arrays of an Equinox module: its floating-point array leaves.
Constants a module must keep fixed (a policy's action box) are static fields, so they are never
trained.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax.numpy as jnp
import optax

from pathwise.types import Array, PyTree

#: apply_if_finite gives up after this many consecutive non-finite steps; the driver stops a run long before.
_NEVER_GIVE_UP = 2**30


@functools.lru_cache(maxsize=None)
def adam(learning_rate: float, max_grad_norm: float = 0.0, decay_steps: int = 0, final_fraction: float = 1.0,
         warmup_steps: int = 0) -> optax.GradientTransformation:
    """Adam at ``learning_rate``; with ``max_grad_norm > 0`` after global-norm clipping.

    ``decay_steps > 0``: cosine decay to ``final_fraction * learning_rate`` over that many applied steps
    (after a linear warmup from 0 over ``warmup_steps`` if > 0); then constant.
    """
    inner = optax.adam(schedule(learning_rate, decay_steps, final_fraction, warmup_steps))
    if max_grad_norm > 0:
        inner = optax.chain(optax.clip_by_global_norm(max_grad_norm), inner)
    return optax.apply_if_finite(inner, _NEVER_GIVE_UP)


def schedule(learning_rate: float, decay_steps: int = 0, final_fraction: float = 1.0,
             warmup_steps: int = 0) -> optax.Schedule | float:
    """The learning rate as a function of the number of applied steps (see :func:`adam`)."""
    if decay_steps <= 0:
        return learning_rate
    if warmup_steps <= 0:
        return optax.cosine_decay_schedule(learning_rate, decay_steps, alpha=final_fraction)
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, max(decay_steps, warmup_steps + 1),
                                              learning_rate * final_fraction)


def params(module: PyTree) -> PyTree:
    """The trainable part of ``module``: its floating-point array leaves (None elsewhere)."""
    return eqx.filter(module, eqx.is_inexact_array)


def init(optimizer: optax.GradientTransformation, module: PyTree) -> PyTree:
    """The optimizer state for ``module``'s trainable arrays."""
    return optimizer.init(params(module))


def apply(module: PyTree, grads: PyTree, opt_state: PyTree, optimizer: optax.GradientTransformation
          ) -> tuple[PyTree, PyTree]:
    """One optimizer step of ``module`` along ``grads`` (a non-finite gradient is skipped and counted)."""
    updates, opt_state = optimizer.update(params(grads), opt_state, params(module))
    return eqx.apply_updates(module, updates), opt_state


def skipped(opt_state: PyTree) -> Array:
    """How many steps so far this optimizer skipped because the gradient was not finite."""
    return opt_state.total_notfinite


def last_skipped(opt_state: PyTree) -> Array:
    """1 if the latest step was skipped (non-finite gradient), else 0."""
    return 1 - opt_state.last_finite.astype(jnp.int32)


__all__ = ["adam", "apply", "init", "last_skipped", "params", "schedule", "skipped"]
