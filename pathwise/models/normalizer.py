"""``Normalizer``: an affine map with its statistics stored as arrays (data statistics, never trained)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from pathwise.types import Array


class Normalizer(eqx.Module):
    """Affine map ``z = (x − mean) / std`` with statistics stored as arrays."""

    mean: Array
    std: Array

    @staticmethod
    def identity(dim: int) -> "Normalizer":
        """The map that changes nothing: mean 0 and std 1 over ``dim`` entries (float32)."""
        return Normalizer(jnp.zeros(dim, jnp.float32), jnp.ones(dim, jnp.float32))

    @staticmethod
    def from_data(x: Array, min_std: float = 1e-6, count: Array | None = None) -> "Normalizer":
        """Mean and standard deviation over the leading axis (std floored at ``min_std``); with ``count``, over the
        first ``count`` rows only (the filled part of a replay buffer, under jit).

        NumPy input is reduced with NumPy (no XLA program per data-set size); JAX input (also traced) with JAX.
        """
        if count is not None:
            x = jnp.asarray(x, jnp.float32)
            mask = (jnp.arange(x.shape[0]) < count)[:, None].astype(x.dtype)
            n = jnp.maximum(count, 1).astype(x.dtype)
            mean = jnp.sum(mask * x, axis=0) / n
            return Normalizer(mean, jnp.maximum(jnp.sqrt(jnp.sum(mask * (x - mean) ** 2, axis=0) / n), min_std))
        if isinstance(x, np.ndarray):
            x = x.astype(np.float64)
            return Normalizer(jnp.asarray(x.mean(axis=0), jnp.float32),
                              jnp.asarray(np.maximum(x.std(axis=0), min_std), jnp.float32))
        x = jnp.asarray(x, jnp.float32)
        return Normalizer(x.mean(axis=0), jnp.maximum(x.std(axis=0), min_std))

    def normalize(self, x: Array) -> Array:
        """z = (x − mean) / std, elementwise over the last axis (any leading batch axes broadcast)."""
        return (x - self.mean) / self.std

    def denormalize(self, z: Array) -> Array:
        """x = z · std + mean, the inverse of ``normalize``."""
        return z * self.std + self.mean


__all__ = ["Normalizer"]
