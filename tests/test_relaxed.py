"""Gumbel-softmax and straight-through samples: limits, forward values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise.distributions import Bernoulli, Categorical
from pathwise.estimators import (gumbel_softmax, straight_through_bernoulli, straight_through_categorical)

KEY = jax.random.PRNGKey(0)
LOGITS = jnp.array([0.5, -0.3, 1.2, 0.1])
GUMBEL = jax.random.gumbel(jax.random.PRNGKey(1), (4,))


def test_gumbel_softmax_is_a_distribution_and_approaches_the_gumbel_max_sample():
    hard = jax.nn.one_hot(Categorical(LOGITS).sample_from_noise(GUMBEL), 4)
    errors = [float(jnp.abs(gumbel_softmax(GUMBEL, LOGITS, tau) - hard).max()) for tau in (1.0, 0.3, 0.1, 0.01)]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-3
    y = gumbel_softmax(KEY, LOGITS, 0.7)
    np.testing.assert_allclose(y.sum(), 1.0, rtol=1e-6)
    assert bool(jnp.all(y > 0))


def test_gumbel_softmax_large_tau_is_uniform():
    np.testing.assert_allclose(gumbel_softmax(GUMBEL, LOGITS, 1e4), 0.25, atol=1e-3)


def test_hard_gumbel_softmax_forward_is_one_hot_backward_is_soft():
    tau = 0.5
    hard = gumbel_softmax(GUMBEL, LOGITS, tau, hard=True)
    np.testing.assert_array_equal(hard, jax.nn.one_hot(jnp.argmax(LOGITS + GUMBEL), 4))
    j_hard = jax.jacobian(lambda l: gumbel_softmax(GUMBEL, l, tau, hard=True))(LOGITS)
    j_soft = jax.jacobian(lambda l: gumbel_softmax(GUMBEL, l, tau))(LOGITS)
    np.testing.assert_allclose(j_hard, j_soft, rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(j_soft).max()) > 1e-3  # a gradient that can be wrong


def test_straight_through_categorical():
    out = straight_through_categorical(GUMBEL, LOGITS)
    np.testing.assert_array_equal(out, jax.nn.one_hot(Categorical(LOGITS).sample_from_noise(GUMBEL), 4))
    j = jax.jacobian(lambda l: straight_through_categorical(GUMBEL, l))(LOGITS)
    np.testing.assert_allclose(j, jax.jacobian(jax.nn.softmax)(LOGITS), rtol=1e-5, atol=1e-7)


def test_straight_through_bernoulli():
    logits = jnp.array([-0.4, 0.0, 2.0])
    u = jnp.array([0.3, 0.7, 0.5])
    out = straight_through_bernoulli(u, logits)
    np.testing.assert_array_equal(out, Bernoulli(logits).sample_from_noise(u))
    np.testing.assert_array_equal(out, [1.0, 0.0, 1.0])
    g = jax.grad(lambda l: jnp.dot(jnp.array([1.0, 2.0, 3.0]), straight_through_bernoulli(u, l)))(logits)
    s = jax.nn.sigmoid(logits)
    np.testing.assert_allclose(g, jnp.array([1.0, 2.0, 3.0]) * s * (1 - s), rtol=1e-6)


def test_key_sampling_frequencies_match_probabilities():
    n = 4000
    samples = jax.vmap(lambda k: straight_through_categorical(k, LOGITS))(jax.random.split(KEY, n))
    p = np.asarray(jax.nn.softmax(LOGITS))
    np.testing.assert_array_less(np.abs(np.asarray(samples.mean(0)) - p), 5 * np.sqrt(p * (1 - p) / n))


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_non_positive_temperature_raises(tau):
    with pytest.raises(ValueError, match="tau must be positive"):
        gumbel_softmax(KEY, LOGITS, tau)


def test_wrong_noise_shape_raises():
    with pytest.raises(ValueError, match="noise must have the logits' shape"):
        gumbel_softmax(jnp.zeros(3), LOGITS, 1.0)
