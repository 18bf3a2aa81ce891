"""A functional ring buffer for off-policy learners (DDPG, SVG(0), SVG(1), ...).

The buffer is a pytree: ``storage`` has the structure of one stored item
(e.g. a :class:`pathwise.types.Transition`) with a leading ``capacity`` axis,
``ptr`` is the next slot to write and ``size`` the number of filled slots.
``add``, ``add_batch`` and ``sample`` are pure and jittable; when the buffer
is full the oldest entries are overwritten first.

A :class:`MixedReplay` joins a buffer of real transitions and one of model-generated
ones (MBPO's two buffers): ``sample`` draws a fixed fraction of every minibatch from
each, so an algorithm that samples its data through ``sample`` trains on both unchanged.
"""

from __future__ import annotations

import math

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise.types import Array, PRNGKey, PyTree


class ReplayBuffer(NamedTuple):
    """Ring buffer state: ``storage`` (leading axis = capacity), ``ptr`` and ``size`` (int32 scalars)."""

    storage: PyTree
    ptr: Array
    size: Array

    @property
    def capacity(self) -> int:
        """Number of slots (a static Python int)."""
        return jax.tree.leaves(self.storage)[0].shape[0]


def init(example: PyTree, capacity: int) -> ReplayBuffer:
    """An empty buffer with ``capacity`` slots shaped and typed like ``example`` (one unbatched item)."""
    if int(capacity) < 1:
        raise ValueError(f"Replay capacity must be a positive integer, got {capacity!r}.")
    leaves = jax.tree.leaves(example)
    if not leaves:
        raise ValueError("Replay example has no array leaves; pass one item, e.g. a Transition of arrays.")
    storage = jax.tree.map(lambda x: jnp.zeros((int(capacity), *jnp.shape(x)), jnp.asarray(x).dtype), example)
    return ReplayBuffer(storage, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def add(buffer: ReplayBuffer, item: PyTree) -> ReplayBuffer:
    """Store one item at ``ptr`` (overwriting the oldest entry when full)."""
    return add_batch(buffer, jax.tree.map(lambda x: jnp.asarray(x)[None], item))


def add_batch(buffer: ReplayBuffer, batch: PyTree, count: Array | int | None = None) -> ReplayBuffer:
    """Store ``n`` items (leading axis ``n``) in order, wrapping around; if ``n > capacity`` the last ones win.

    With ``count`` (an int or traced int array, ``0 <= count <= n <= capacity``) only the first ``count``
    items are stored and the rest is padding: episodes of varying length then share one compiled function.
    """
    capacity = buffer.capacity
    n = jax.tree.leaves(batch)[0].shape[0]
    if count is not None:
        if n > capacity:
            raise ValueError(f"Padded batch of {n} items exceeds the replay capacity {capacity}; "
                             "raise the capacity or add fewer items at a time.")
        count = jnp.asarray(count, jnp.int32)
        # padding rows get an out-of-range slot, which mode="drop" discards
        slots = jnp.where(jnp.arange(n) < count, (buffer.ptr + jnp.arange(n)) % capacity, capacity)
        storage = jax.tree.map(lambda s, x: s.at[slots].set(jnp.asarray(x).astype(s.dtype), mode="drop"),
                               buffer.storage, batch)
        return ReplayBuffer(storage, ((buffer.ptr + count) % capacity).astype(jnp.int32),
                            jnp.minimum(buffer.size + count, capacity).astype(jnp.int32))
    keep = min(n, capacity)  # only the newest `capacity` items can survive a wrap
    batch = jax.tree.map(lambda x: jnp.asarray(x)[n - keep:], batch)
    slots = (buffer.ptr + (n - keep) + jnp.arange(keep)) % capacity
    storage = jax.tree.map(lambda s, x: s.at[slots].set(x.astype(s.dtype)), buffer.storage, batch)
    ptr = ((buffer.ptr + n) % capacity).astype(jnp.int32)
    size = jnp.minimum(buffer.size + n, capacity).astype(jnp.int32)
    return ReplayBuffer(storage, ptr, size)


class MixedReplay(eqx.Module):
    """Real transitions and model-generated ones, sampled in a fixed proportion (Janner et al. 2019, MBPO).

    ``sample`` draws ``ceil(real_ratio * batch_size)`` rows of every minibatch from ``real`` and the rest from
    ``model`` (all from ``real`` while ``model`` is empty). ``storage``, ``ptr``, ``size`` and ``capacity`` are
    those of ``real``, so statistics of the data set (e.g. normalizers) see the real transitions only.
    """

    real: ReplayBuffer
    model: ReplayBuffer
    real_ratio: float = eqx.field(static=True)

    @property
    def storage(self) -> PyTree:
        """The real buffer's storage."""
        return self.real.storage

    @property
    def ptr(self) -> Array:
        """The real buffer's next slot."""
        return self.real.ptr

    @property
    def size(self) -> Array:
        """The number of real transitions."""
        return self.real.size

    @property
    def capacity(self) -> int:
        """The real buffer's capacity."""
        return self.real.capacity


def sample(buffer: ReplayBuffer | MixedReplay, key: PRNGKey, batch_size: int) -> PyTree:
    """``batch_size`` items drawn uniformly with replacement from the filled slots (of both buffers of a
    :class:`MixedReplay`, in its proportion).

    Raises ``ValueError`` if the buffer is concretely empty; under ``jit`` an
    empty buffer returns zeros (slot 0), so check ``size`` before you trace.
    """
    if isinstance(buffer, MixedReplay):
        k_real, k_model = jax.random.split(key)
        real, model = sample(buffer.real, k_real, batch_size), _draw(buffer.model, k_model, batch_size)
        n_real = min(batch_size, math.ceil(buffer.real_ratio * batch_size))
        use_model = (jnp.arange(batch_size) >= n_real) & (buffer.model.size > 0)
        return jax.tree.map(lambda r, m: jnp.where(use_model.reshape((-1,) + (1,) * (r.ndim - 1)), m, r), real, model)
    if not isinstance(buffer.size, jax.core.Tracer) and int(buffer.size) == 0:
        raise ValueError("Cannot sample from an empty replay buffer; add transitions first (add / add_batch).")
    return _draw(buffer, key, batch_size)


def _draw(buffer: ReplayBuffer, key: PRNGKey, batch_size: int) -> PyTree:
    """``batch_size`` rows drawn uniformly from the filled slots (slot 0 when empty)."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda s: s[idx], buffer.storage)


def ordered(buffer: ReplayBuffer) -> PyTree:
    """The filled entries oldest first (not jittable: the result's length is ``size``)."""
    size, capacity = int(buffer.size), buffer.capacity
    start = (int(buffer.ptr) - size) % capacity
    idx = (start + jnp.arange(size)) % capacity
    return jax.tree.map(lambda s: s[idx], buffer.storage)


__all__ = ["MixedReplay", "ReplayBuffer", "add", "add_batch", "init", "ordered", "sample"]
