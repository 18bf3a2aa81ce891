"""The variance studies: 1/σ² growth of the score-function variance, Pendulum gradients against finite differences."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import pathwise.estimators as pe
from pathwise.estimators.studies import gaussian_study, pendulum_objective, pendulum_params, pendulum_study


def test_gaussian_study_score_variance_grows_like_inverse_sigma_squared(tmp_path):
    sigmas = np.logspace(-3, -1, 4)
    rows = gaussian_study(str(tmp_path), sigmas=sigmas, estimators=("score", "pathwise"), n_repeats=400)
    slope = rows[0]["score_slope"]
    assert abs(slope - (-2.0)) < 0.2, slope
    path = {r["sigma"]: r["variance_per_sample"] for r in rows if r["estimator"] == "pathwise"}
    score = {r["sigma"]: r["variance_per_sample"] for r in rows if r["estimator"] == "score"}
    # f = x²: the pathwise sample 2(μ + σz) has variance exactly 4σ² (≤ 4·0.1²); allow 50% sampling error.
    assert max(path.values()) < 1.5 * 4 * 0.1**2
    assert score[sigmas[0]] > 1e4 * path[sigmas[0]]
    for ext in ("csv", "md", "png"):
        assert os.path.getsize(tmp_path / f"estimators_gaussian.{ext}") > 0


def test_gaussian_study_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="sigmas must be positive"):
        gaussian_study(str(tmp_path), sigmas=(0.1, 0.0))
    with pytest.raises(ValueError, match="unknown f"):
        gaussian_study(str(tmp_path), f_name="cube")


def test_pendulum_pathwise_gradient_matches_finite_differences_with_common_noise():
    params = pendulum_params()
    obj = pendulum_objective(0.3, 8)
    xis = jax.vmap(lambda k: obj.sample_noise(params, k))(jax.random.split(jax.random.PRNGKey(2), 16))
    mean_return = lambda p: jnp.mean(jax.vmap(obj.value, (None, 0))(p, xis))
    g = ravel_pytree(jax.grad(mean_return)(params))[0]
    fd = ravel_pytree(pe.finite_difference(mean_return, params, 1e-2))[0]
    np.testing.assert_allclose(fd, g, rtol=2e-2, atol=2e-2 * float(jnp.abs(g).max()))


def test_pendulum_study_writes_table_and_pathwise_beats_score(tmp_path):
    rows = pendulum_study(str(tmp_path), values=(0.3,), horizon=5, n_samples=8, n_repeats=8,
                          reference_samples=500, estimators=("score", "pathwise"))
    by = {r["estimator"]: r for r in rows}
    assert by["pathwise"]["cosine"] > 0.8
    assert by["pathwise"]["total_variance"] < by["score"]["total_variance"]
    assert os.path.getsize(tmp_path / "estimators_pendulum_sigma.png") > 0
    with pytest.raises(ValueError, match="sweep_over"):
        pendulum_study(str(tmp_path), sweep_over="gamma")
