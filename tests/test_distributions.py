"""Distributions against scipy, change-of-variables integrals and Monte Carlo frequencies (fixed seeds)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from pathwise.distributions import Bernoulli, Categorical, CategoricalPolicy, GaussianPolicy, Normal, TanhNormal

KEY = jax.random.PRNGKey(0)


def test_normal_log_prob_and_entropy_match_scipy():
    mean, std = np.array([0.3, -1.0, 2.0]), np.array([0.5, 1.5, 0.1])
    x = np.array([0.1, 0.7, 2.05])
    d = Normal(mean, std)
    np.testing.assert_allclose(d.log_prob(x), scipy.stats.norm.logpdf(x, mean, std).sum(), rtol=1e-5)
    np.testing.assert_allclose(d.entropy(), scipy.stats.norm.entropy(mean, std).sum(), rtol=1e-5)
    np.testing.assert_allclose(Normal.from_log_std(mean, np.log(std)).std, std, rtol=1e-6)


def test_normal_reparameterization_and_noise_inversion():
    d = Normal(jnp.array([1.0, -2.0]), jnp.array([0.5, 3.0]))
    xi = d.sample_noise(KEY)
    a = d.sample_from_noise(xi)
    np.testing.assert_allclose(a, d.mean + d.std * xi, rtol=1e-6)
    np.testing.assert_allclose(d.infer_noise(a), xi, rtol=1e-5, atol=1e-6)
    # d a / d mean = 1 and d a / d std = xi: the pathwise derivative.
    g = jax.grad(lambda m, s: Normal(m, s).sample_from_noise(xi).sum(), argnums=(0, 1))(d.mean, d.std)
    np.testing.assert_allclose(g[0], 1.0)
    np.testing.assert_allclose(g[1], xi, rtol=1e-6)


def test_normal_sample_moments():
    d = Normal(jnp.array(1.5), jnp.array(0.7))
    x = jax.vmap(d.sample)(jax.random.split(KEY, 20000))
    # 5 standard errors of the mean and of the sample std (se ≈ σ/√(2n)).
    assert abs(float(x.mean()) - 1.5) < 5 * 0.7 / np.sqrt(20000)
    assert abs(float(x.std()) - 0.7) < 5 * 0.7 / np.sqrt(2 * 20000)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan])
def test_non_positive_std_raises(bad):
    with pytest.raises(ValueError, match="std must be positive"):
        Normal(0.0, jnp.array([1.0, bad]))
    with pytest.raises(ValueError, match="std must be positive"):
        TanhNormal(0.0, bad)


def test_bad_box_raises():
    with pytest.raises(ValueError, match="low < high"):
        TanhNormal(0.0, 1.0, low=1.0, high=-1.0)


def test_traced_std_is_not_checked_but_works_under_jit():
    f = jax.jit(lambda m, s: Normal(m, s).log_prob(jnp.zeros(2)))
    assert np.isfinite(f(jnp.zeros(2), jnp.ones(2)))


def test_tanh_normal_density_integrates_to_one_and_matches_autodiff_jacobian():
    d = TanhNormal(0.4, 0.8, low=-2.0, high=2.0)
    grid = np.linspace(-2.0, 2.0, 20001)
    density = np.exp(np.asarray(jax.vmap(d.log_prob)(jnp.asarray(grid, jnp.float32)), np.float64))
    assert abs(scipy.integrate.simpson(density, x=grid) - 1.0) < 1e-3
    # Independent reference: log N(u) - log |d squash / du| with the derivative from jax.grad.
    u = jnp.array(0.9)
    ref = scipy.stats.norm.logpdf(0.9, 0.4, 0.8) - np.log(float(jax.grad(d.squash)(u)))
    np.testing.assert_allclose(d.log_prob(d.squash(u)), ref, rtol=1e-4)
    np.testing.assert_allclose(d.log_prob_from_noise((u - 0.4) / 0.8), ref, rtol=1e-4)


def test_tanh_normal_samples_in_box_and_noise_round_trip():
    low, high = jnp.array([-2.0, 0.0]), jnp.array([2.0, 1.0])
    d = TanhNormal(jnp.array([0.3, -0.5]), jnp.array([0.6, 1.2]), low, high)
    xi = jax.vmap(d.sample_noise)(jax.random.split(KEY, 256))
    a = jax.vmap(d.sample_from_noise)(xi)
    assert bool(jnp.all((a >= low) & (a <= high)))
    np.testing.assert_allclose(jax.vmap(d.infer_noise)(a), xi, atol=2e-3)
    np.testing.assert_allclose(d.mode(), d.squash(d.mean))


def test_tanh_normal_log_prob_is_finite_when_saturated():
    d = TanhNormal(jnp.array([30.0]), jnp.array([0.1]))
    assert np.isfinite(d.log_prob_from_noise(jnp.array([0.0])))
    assert np.isfinite(d.log_prob(jnp.array([1.0])))  # boundary action: clipped, finite
    g = jax.grad(lambda m: TanhNormal(m, 0.1).log_prob_from_noise(jnp.array([0.0])).sum())(jnp.array([30.0]))
    assert np.all(np.isfinite(g))


def test_tanh_normal_entropy_estimate_matches_monte_carlo_of_log_prob():
    d = TanhNormal(jnp.array([0.5]), jnp.array([0.7]), -1.0, 1.0)
    h = float(d.entropy(KEY, num_samples=20000))
    xi = jax.random.normal(jax.random.PRNGKey(1), (20000, 1))
    lp = jax.vmap(d.log_prob_from_noise)(xi)
    assert abs(h - float(-lp.mean())) < 5 * float(lp.std()) / np.sqrt(20000)
    with pytest.raises(ValueError, match="pass key"):
        d.entropy()


def test_categorical_log_prob_entropy_and_sampling_frequencies():
    logits = jnp.array([0.5, -1.0, 1.2, 0.0])
    d = Categorical(logits)
    p = np.asarray(jax.nn.softmax(logits))
    np.testing.assert_allclose(d.log_prob(2), np.log(p[2]), rtol=1e-5)
    np.testing.assert_allclose(d.entropy(), scipy.stats.entropy(p), rtol=1e-5)
    n = 20000
    c = jax.vmap(d.sample)(jax.random.split(KEY, n))
    freq = np.bincount(np.asarray(c), minlength=4) / n
    np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / n))
    assert int(d.mode()) == 2
    assert not Categorical.reparameterizable and Normal.reparameterizable and TanhNormal.reparameterizable


def test_categorical_batch_log_prob_sums_independent_variables():
    logits = jnp.array([[0.0, 1.0], [2.0, -1.0]])
    lp = jax.nn.log_softmax(logits)
    np.testing.assert_allclose(Categorical(logits).log_prob(jnp.array([1, 0])), lp[0, 1] + lp[1, 0], rtol=1e-6)
    with pytest.raises(ValueError, match="class axis"):
        Categorical(1.0)


def test_bernoulli_matches_scipy_and_frequencies():
    logits = jnp.array([-0.8, 1.5])
    d = Bernoulli(logits)
    p = np.asarray(jax.nn.sigmoid(logits))
    x = np.array([1.0, 0.0])
    np.testing.assert_allclose(d.log_prob(x), scipy.stats.bernoulli.logpmf(x, p).sum(), rtol=1e-5)
    np.testing.assert_allclose(d.entropy(), scipy.stats.bernoulli.entropy(p).sum(), rtol=1e-5)
    n = 20000
    s = jax.vmap(d.sample)(jax.random.split(KEY, n))
    np.testing.assert_array_less(np.abs(np.asarray(s.mean(0)) - p), 5 * np.sqrt(p * (1 - p) / n))
    np.testing.assert_allclose(d.mode(), [0.0, 1.0])
    assert not Bernoulli.reparameterizable


def test_discrete_samples_carry_no_gradient():
    g = jax.grad(lambda l: Bernoulli(l).sample_from_noise(jnp.array([0.3])).sum())(jnp.array([0.2]))
    np.testing.assert_allclose(g, 0.0)


def test_gaussian_policy_shapes_clipping_and_reparameterized_act():
    pol = GaussianPolicy(3, 2, (8,), key=KEY, init_log_std=-10.0, log_std_min=-4.0)
    d = pol(jnp.ones(3))
    assert isinstance(d, Normal) and d.mean.shape == (2,)
    np.testing.assert_allclose(d.std, np.exp(-4.0), rtol=1e-6)  # clipped from -10
    sq = GaussianPolicy(3, 1, (8,), key=KEY, low=-2.0, high=2.0, state_dependent_std=True)
    d2 = sq(jnp.ones(3))
    assert isinstance(d2, TanhNormal) and d2.std.shape == (1,)
    xi = jnp.array([0.3])
    np.testing.assert_allclose(sq.act(jnp.ones(3), xi), d2.sample_from_noise(xi))
    with pytest.raises(ValueError, match="both low and high"):
        GaussianPolicy(3, 1, key=KEY, low=-1.0)


def test_categorical_policy_and_no_recompile():
    pol = CategoricalPolicy(4, 3, (8,), key=KEY)
    traces = []

    @jax.jit
    def logp(policy, obs, a):
        traces.append(1)
        return policy(obs).log_prob(a)

    logp(pol, jnp.ones(4), jnp.array(1))
    out = logp(pol, jnp.zeros(4), jnp.array(2))
    assert len(traces) == 1 and np.isfinite(out)
