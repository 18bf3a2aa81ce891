"""Gradient estimators against closed forms (tolerance: 5 standard errors of the estimator, fixed seeds)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import pathwise.estimators as pe
from pathwise.distributions import Bernoulli, Categorical, Normal
from pathwise.estimators.objective import StochasticObjective

KEY = jax.random.PRNGKey(0)
GAUSS_PARAMS = {"mean": jnp.array(0.7), "std": jnp.array(0.6)}


def gauss(p):
    return Normal(p["mean"], p["std"])


def square(x):
    return x**2


def repeated(estimate, n_repeats=40):
    """(n_repeats, d) flattened estimates from independent keys, and their mean and standard error."""
    est = jax.jit(jax.vmap(lambda k: ravel_pytree(estimate(k))[0]))(jax.random.split(KEY, n_repeats))
    est = np.asarray(est, np.float64)
    return est.mean(0), est.std(0, ddof=1) / np.sqrt(n_repeats)


def assert_within_5_se(estimate, truth, n_repeats=40):
    mean, se = repeated(estimate, n_repeats)
    truth = np.asarray(ravel_pytree(truth)[0])
    assert np.all(se > 0), "degenerate estimator: zero spread"
    np.testing.assert_array_less(np.abs(mean - truth), 5 * se + 1e-6)


# -- Gaussian: ∂/∂μ E[x²] = 2μ, ∂/∂σ E[x²] = 2σ ----------------------------------

GAUSS_TRUTH = {"mean": 2 * 0.7, "std": 2 * 0.6}


@pytest.mark.parametrize("baseline", ["none", "mean"])
def test_score_function_gaussian_matches_closed_form(baseline):
    assert_within_5_se(lambda k: pe.score_function(square, gauss, GAUSS_PARAMS, k, 256, baseline=baseline),
                       GAUSS_TRUTH)


def test_pathwise_gaussian_matches_closed_form():
    assert_within_5_se(lambda k: pe.pathwise(square, gauss, GAUSS_PARAMS, k, 64, check=False), GAUSS_TRUTH)


def test_pathwise_variance_is_below_score_variance_for_small_sigma():
    p = {"mean": jnp.array(1.0), "std": jnp.array(0.1)}
    _, se_score = repeated(lambda k: pe.score_function(square, gauss, p, k, 64))
    _, se_path = repeated(lambda k: pe.pathwise(square, gauss, p, k, 64, check=False))
    assert se_path[0] * 10 < se_score[0]


# -- categorical and Bernoulli: ∂/∂l E[v_c] = p ⊙ (v − E[v]) ------------------------

def test_score_function_categorical_matches_closed_form():
    logits, values = jnp.array([0.2, -0.5, 1.0, 0.0]), jnp.array([1.0, -2.0, 0.5, 3.0])
    p = jax.nn.softmax(logits)
    truth = p * (values - jnp.dot(p, values))
    f = lambda c: values[c]
    assert_within_5_se(lambda k: pe.score_function(f, Categorical, logits, k, 256, baseline="mean"), truth)


def test_score_function_bernoulli_matches_closed_form():
    logits = jnp.array([0.3, -1.0])
    f = lambda z: 2.0 * z[0] - z[1] + 3.0 * z[0] * z[1]
    p = jax.nn.sigmoid(logits)
    # E f = 2 p0 − p1 + 3 p0 p1; ∂/∂l_i = ∂E/∂p_i · p_i (1 − p_i)
    truth = jnp.array([(2 + 3 * p[1]) * p[0] * (1 - p[0]), (-1 + 3 * p[0]) * p[1] * (1 - p[1])])
    assert_within_5_se(lambda k: pe.score_function(f, Bernoulli, logits, k, 256), truth)


def test_pathwise_of_discrete_distribution_raises():
    with pytest.raises(ValueError, match="not reparameterizable"):
        pe.pathwise(lambda c: c * 1.0, Categorical, jnp.zeros(3), KEY, 8)
    obj = pe.distribution_objective(lambda z: z.sum(), Bernoulli, jnp.zeros(2))
    assert [r["estimator"] for r in pe.compare(obj, jnp.zeros(2), ("score", "pathwise"), 8, 4, 64)] == ["score"]


@pytest.mark.parametrize("f", [jnp.round, lambda x: jnp.floor(x) * 2.0], ids=["round", "floor"])
def test_pathwise_of_piecewise_constant_f_raises(f):
    with pytest.raises(ValueError, match="not differentiable in the sample"):
        pe.pathwise(f, gauss, {"mean": jnp.array(0.0), "std": jnp.array(2.0)}, KEY, 32)


def test_pathwise_of_integer_valued_f_raises():
    with pytest.raises(ValueError, match="cannot be differentiated"):
        pe.pathwise(lambda x: (x > 0).astype(jnp.int32), gauss, GAUSS_PARAMS, KEY, 8)


def test_pathwise_of_constant_f_is_zero_not_an_error():
    g = pe.pathwise(lambda x: 0.0 * x + 1.0, gauss, GAUSS_PARAMS, KEY, 8)
    np.testing.assert_allclose(ravel_pytree(g)[0], 0.0)


def test_non_positive_sigma_raises_when_building_the_objective():
    with pytest.raises(ValueError, match="std must be positive"):
        pe.score_function(square, gauss, {"mean": jnp.array(0.0), "std": jnp.array(0.0)}, KEY, 8)


def test_unknown_baseline_raises():
    with pytest.raises(ValueError, match="unknown baseline"):
        pe.score_function(square, gauss, GAUSS_PARAMS, KEY, 8, baseline="median")


# -- a sequence: x_{t+1} = x_t + a_t, a_t ~ N(θ, σ²), r_t = −x_{t+1}² ---------------------

T, X0, SIGMA = 4, 0.5, 0.3


def _random_walk_objective():
    def sample_noise(params, key):
        return jax.random.normal(key, (T,))

    def rewards_of(actions):
        return -(X0 + jnp.cumsum(actions)) ** 2

    def value(theta, xi):
        return jnp.sum(rewards_of(theta + SIGMA * xi))

    def log_probs_and_rewards(theta, xi):
        actions = jax.lax.stop_gradient(theta) + SIGMA * xi
        return jax.vmap(lambda a: Normal(theta, SIGMA).log_prob(a))(actions), rewards_of(actions)

    return StochasticObjective(sample_noise, value, log_probs_and_rewards, True)


def test_sequence_estimators_match_closed_form():
    theta = jnp.array(-0.2)
    t = np.arange(1, T + 1)
    truth = -np.sum(2 * t * (X0 + t * float(theta)))  # d/dθ −Σ_t [(x0 + tθ)² + tσ²]
    obj = _random_walk_objective()
    for kwargs in ({"use_reward_to_go": True, "baseline": "mean"}, {"use_reward_to_go": False}):
        assert_within_5_se(lambda k: pe.score_function_estimate(obj, theta, k, 128, **kwargs), truth)
    assert_within_5_se(lambda k: pe.pathwise_estimate(obj, theta, k, 32, check=False), truth)
    assert_within_5_se(lambda k: pe.finite_difference_estimate(obj, theta, k, 64, 1e-2), truth)


def test_reward_to_go_against_loop_and_bootstrap():
    r = np.array([[1.0, 2.0, -1.0, 0.5], [0.0, 0.0, 1.0, 1.0]])
    gamma, boot = 0.9, 2.0
    ref = np.zeros_like(r)
    for b in range(2):
        g = boot
        for t in reversed(range(4)):
            g = r[b, t] + gamma * g
            ref[b, t] = g
    np.testing.assert_allclose(pe.reward_to_go(jnp.asarray(r), gamma, boot), ref, rtol=1e-6)


def test_surrogate_gradient_is_score_times_stopped_advantage():
    theta = jnp.array([0.3, -0.1])
    x = jnp.array([0.5, 0.2])
    log_prob = lambda th: Normal(th, 1.0).log_prob(x)
    adv = lambda th: jnp.sum(th**2)  # depends on θ, but must be treated as a constant
    g = jax.grad(lambda th: pe.score_function_surrogate(log_prob(th), adv(th), 0.5))(theta)
    np.testing.assert_allclose(g, jax.grad(log_prob)(theta) * (adv(theta) - 0.5), rtol=1e-6)


def test_baseline_helpers():
    v = jnp.array([1.0, 2.0, 6.0])
    np.testing.assert_allclose(pe.leave_one_out_mean(v), [4.0, 3.5, 1.5])
    s = pe.running_mean_update(pe.running_mean_init(), v, 0.5)
    s = pe.running_mean_update(s, jnp.array([0.0]), 0.5)
    np.testing.assert_allclose(s.mean, 1.5)
    loss = pe.value_baseline_loss(lambda o: o[0] * 2.0, jnp.array([[1.0], [2.0]]), jnp.array([2.0, 3.0]))
    np.testing.assert_allclose(loss, 0.25)


# -- finite differences ------------------------------------------------------------

def smooth(p):
    return jnp.sin(p["w"]).sum() * p["b"] + jnp.sum(p["w"] ** 2) * jnp.exp(0.3 * p["b"])


SMOOTH_PARAMS = {"w": jnp.array([[0.3, -0.4], [1.1, 0.2]]), "b": jnp.array(0.7)}


def test_finite_difference_matches_jax_grad_on_pytree():
    fd = ravel_pytree(pe.finite_difference(smooth, SMOOTH_PARAMS, 1e-2))[0]
    np.testing.assert_allclose(fd, ravel_pytree(jax.grad(smooth)(SMOOTH_PARAMS))[0], rtol=2e-3, atol=2e-3)


def test_random_direction_finite_difference_is_unbiased():
    g = np.asarray(ravel_pytree(jax.grad(smooth)(SMOOTH_PARAMS))[0])
    k = 4000
    est = np.asarray(ravel_pytree(pe.finite_difference(smooth, SMOOTH_PARAMS, 1e-2, directions=k, key=KEY))[0])
    se = np.sqrt((g @ g + g**2) / k)  # Var[(vᵀg) v_i] = |g|² + g_i² for v ~ N(0, I)
    np.testing.assert_array_less(np.abs(est - g), 5 * se)


def test_finite_difference_bad_input():
    with pytest.raises(ValueError, match="eps must be positive"):
        pe.finite_difference(smooth, SMOOTH_PARAMS, 0.0)
    with pytest.raises(ValueError, match="need key"):
        pe.finite_difference(smooth, SMOOTH_PARAMS, 1e-2, directions=3)


# -- compare -----------------------------------------------------------------------

def test_compare_rows_and_reference():
    obj = pe.distribution_objective(square, gauss, GAUSS_PARAMS)
    rows = pe.compare(obj, GAUSS_PARAMS, ("score", "pathwise"), n_samples=16, n_repeats=50,
                      reference_samples=20000)
    by = {r["estimator"]: r for r in rows}
    np.testing.assert_allclose(by["pathwise"]["reference_norm"], np.hypot(1.4, 1.2), rtol=0.02)
    assert by["pathwise"]["cosine"] > 0.95 and by["pathwise"]["total_variance"] < by["score"]["total_variance"]
    assert len(by["score"]["variance"]) == 2
    with pytest.raises(ValueError, match="unknown estimators"):
        pe.compare(obj, GAUSS_PARAMS, ("reinforce",))


def test_estimator_does_not_recompile():
    traces = []

    def f(x):
        traces.append(1)
        return square(x)

    est = jax.jit(lambda p, k: pe.score_function(f, gauss, p, k, 16))
    est(GAUSS_PARAMS, KEY)
    est({"mean": jnp.array(0.1), "std": jnp.array(2.0)}, jax.random.PRNGKey(3))
    assert est._cache_size() == 1
    n_traces = len(traces)
    est({"mean": jnp.array(0.2), "std": jnp.array(1.0)}, jax.random.PRNGKey(4))
    assert len(traces) == n_traces
