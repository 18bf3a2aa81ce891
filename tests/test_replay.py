"""Replay ring buffer: wrap-around order, valid-only sampling, jit without recompilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import replay
from pathwise.types import Transition


def _transition(i):
    """A Transition whose every field encodes the integer ``i`` (so entries are identifiable)."""
    i = jnp.asarray(i, jnp.float32)
    return Transition(obs=jnp.full((3,), i), action=jnp.full((1,), -i), reward=i, next_obs=jnp.full((3,), i + 1),
                      terminated=jnp.asarray(False), truncated=jnp.asarray(False))


def _batch(start, n):
    return jax.vmap(_transition)(jnp.arange(start, start + n))


def test_init_shapes_and_dtypes():
    buf = replay.init(_transition(0), 5)
    assert buf.capacity == 5
    assert buf.storage.obs.shape == (5, 3) and buf.storage.reward.shape == (5,)
    assert buf.storage.terminated.dtype == jnp.bool_
    assert int(buf.size) == 0 and int(buf.ptr) == 0


def test_add_wraps_around_keeping_newest_in_order():
    buf = replay.init(_transition(0), 4)
    for i in range(7):
        buf = replay.add(buf, _transition(i))
    assert int(buf.size) == 4 and int(buf.ptr) == 7 % 4
    np.testing.assert_array_equal(replay.ordered(buf).reward, [3, 4, 5, 6])
    # raw slots: 4,5,6 overwrote slots 0,1,2; slot 3 still holds 3
    np.testing.assert_array_equal(buf.storage.reward, [4, 5, 6, 3])


def test_add_batch_matches_sequential_adds():
    seq = replay.init(_transition(0), 5)
    bat = replay.init(_transition(0), 5)
    for start, n in [(0, 3), (3, 4), (7, 2)]:
        for i in range(start, start + n):
            seq = replay.add(seq, _transition(i))
        bat = replay.add_batch(bat, _batch(start, n))
    jax.tree.map(np.testing.assert_array_equal, seq, bat)
    np.testing.assert_array_equal(replay.ordered(bat).reward, [4, 5, 6, 7, 8])


def test_add_batch_larger_than_capacity_keeps_last_items():
    buf = replay.add_batch(replay.init(_transition(0), 3), _batch(0, 8))
    assert int(buf.size) == 3 and int(buf.ptr) == 8 % 3
    np.testing.assert_array_equal(replay.ordered(buf).reward, [5, 6, 7])


def test_sample_only_returns_filled_entries_uniformly():
    buf = replay.add_batch(replay.init(_transition(0), 100), _batch(10, 4))  # slots 0..3 hold 10..13
    batch = replay.sample(buf, jax.random.PRNGKey(0), 4000)
    values = np.asarray(batch.reward)
    assert set(np.unique(values)) == {10.0, 11.0, 12.0, 13.0}
    counts = np.bincount(values.astype(int) - 10, minlength=4)
    # uniform: each count ~ Binomial(4000, 1/4), sd ~ 27; 5 sd tolerance
    assert np.all(np.abs(counts - 1000) < 140), counts
    # items stay consistent across fields
    np.testing.assert_array_equal(batch.obs[:, 0], batch.reward)
    np.testing.assert_array_equal(batch.next_obs[:, 0], batch.reward + 1)


def test_sample_empty_raises_clear_error():
    with pytest.raises(ValueError, match="empty replay buffer"):
        replay.sample(replay.init(_transition(0), 4), jax.random.PRNGKey(0), 2)


def test_init_rejects_bad_capacity():
    with pytest.raises(ValueError, match="positive integer"):
        replay.init(_transition(0), 0)


def test_jitted_add_and_sample_compile_once():
    add = jax.jit(replay.add_batch)
    sample = jax.jit(replay.sample, static_argnums=2)
    buf = replay.init(_transition(0), 6)
    key = jax.random.PRNGKey(1)
    for start in range(0, 20, 4):
        buf = add(buf, _batch(start, 4))
        key, sub = jax.random.split(key)
        out = sample(buf, sub, 8)
        # sampled entries lie in the window of the newest min(size, capacity) items
        lo = max(0, start + 4 - 6)
        assert np.all((np.asarray(out.reward) >= lo) & (np.asarray(out.reward) < start + 4))
    assert add._cache_size() == 1
    assert sample._cache_size() == 1
    np.testing.assert_array_equal(replay.ordered(buf).reward, np.arange(14, 20))


def test_add_batch_with_count_stores_only_the_valid_prefix_and_compiles_once():
    add = jax.jit(lambda b, x, c: replay.add_batch(b, x, c))  # own wrapper: jit caches are per function
    ref = replay.init(_transition(0), 5)
    buf = ref
    start = 0
    for count in [3, 0, 4, 2]:  # padded batches of 4; only `count` rows are real
        buf = add(buf, _batch(start, 4), jnp.asarray(count))
        for i in range(start, start + count):
            ref = replay.add(ref, _transition(i))
        start += count
    jax.tree.map(np.testing.assert_array_equal, buf, ref)
    np.testing.assert_array_equal(replay.ordered(buf).reward, [4, 5, 6, 7, 8])
    assert add._cache_size() == 1


def test_add_batch_with_count_rejects_batch_larger_than_capacity():
    with pytest.raises(ValueError, match="exceeds the replay capacity"):
        replay.add_batch(replay.init(_transition(0), 3), _batch(0, 4), 2)
