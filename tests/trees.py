"""Comparisons of pytrees (states, carries, Equinox modules) shared by the algorithm tests."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def raw(x):
    """``x`` as an array that NumPy can compare: a typed PRNG key as its key data."""
    x = jnp.asarray(x)
    return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def assert_trees_equal(a, b):
    """``a`` and ``b`` have the same structure and bit-identical leaves (PRNG keys compared by their data)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(raw(x), raw(y)), a, b)


def arrays(module):
    """The array leaves of an Equinox module (or any pytree), in order."""
    return jax.tree.leaves(eqx.filter(module, eqx.is_array))


def same(a, b) -> bool:
    """Whether every array of ``a`` equals ``b``'s."""
    return all(np.array_equal(x, y) for x, y in zip(arrays(a), arrays(b)))


def moved(a, b) -> bool:
    """Whether any array of ``a`` differs from ``b``'s."""
    return not same(a, b)
