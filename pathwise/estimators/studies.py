"""The two variance studies: the lecture's Gaussian example and a Pendulum policy gradient.

(a) ``gaussian_study``, lecture "Variance in the gaussian case": x ~ N(μ, σ²),
    g = ∂/∂μ E[f(x)]. The score-function sample ĝ = z f(μ + zσ)/σ has variance
    ≈ f(μ)²/σ² as σ → 0 (slope −2 on a log-log plot), while the pathwise sample
    f'(μ + zσ) stays bounded. For f = x², Var_score = μ⁴/σ² + 14μ² + 15σ² exactly
    (plotted as the dashed line).
(b) ``pendulum_study``: the gradient of the H-step return of a linear Gaussian policy
    a = W o + b + σ ξ through the true dynamics ``pathwise.systems.Pendulum`` (explicit
    noise ξ and random initial states), for score function (with and without a
    baseline, reward-to-go), pathwise (backprop through the rollout) and finite
    differences, sweeping σ or the horizon H.

Each study returns the table rows and writes ``<out_dir>/estimators_<name>.{csv,md,png}``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pathwise.distributions import Normal
from pathwise.estimators.compare import loglog_slope, plot_sweep, sweep, write_table
from pathwise.estimators.objective import StochasticObjective, distribution_objective
from pathwise.rollout import rollout
from pathwise.systems import Pendulum

GAUSSIAN_FUNCTIONS = {
    # name: (f, closed-form ∂/∂μ E[f(x)] for x ~ N(μ, σ²))
    "square": (lambda x: x**2, lambda mu, s: 2.0 * mu),
    "square_sin": (lambda x: x**2 + jnp.sin(3.0 * x),
                   lambda mu, s: 2.0 * mu + 3.0 * np.cos(3.0 * mu) * np.exp(-4.5 * s**2)),
}
GAUSSIAN_ESTIMATORS = ("score", "score_baseline", "pathwise", "finite_difference")
PENDULUM_ESTIMATORS = ("score", "score_baseline", "pathwise", "finite_difference", "random_fd")


def gaussian_objective(sigma: float, f_name: str = "square") -> StochasticObjective:
    """E_{x ~ N(μ, σ²)}[f(x)] as a function of θ = μ (σ fixed)."""
    f, _ = GAUSSIAN_FUNCTIONS[f_name]
    return distribution_objective(f, lambda mu: Normal(mu, sigma), jnp.array(0.0))


def gaussian_study(out_dir: str, *, mu: float = 1.0, sigmas: Sequence[float] = tuple(np.logspace(-3, 0, 10)),
                   f_name: str = "square", n_samples: int = 16, n_repeats: int = 400, slope_below: float = 0.1,
                   estimators: Sequence[str] = GAUSSIAN_ESTIMATORS, seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Variance of ∂/∂μ estimates against σ; the score slope is fitted on σ ≤ ``slope_below``."""
    if f_name not in GAUSSIAN_FUNCTIONS:
        raise ValueError(f"gaussian_study: unknown f {f_name!r}; choose one of {sorted(GAUSSIAN_FUNCTIONS)}.")
    if min(sigmas) <= 0:
        raise ValueError(f"gaussian_study: sigmas must be positive, got {list(sigmas)}.")
    grad_mu = GAUSSIAN_FUNCTIONS[f_name][1]
    build = lambda s: (gaussian_objective(s, f_name), jnp.array(mu), jnp.array([grad_mu(mu, s)]))
    rows = sweep("sigma", sigmas, build, estimators=estimators, n_samples=n_samples,
                 n_repeats=n_repeats, key=jax.random.PRNGKey(seed), progress=progress)
    small = [r for r in rows if r["estimator"] == "score" and r["sigma"] <= slope_below]
    slope = loglog_slope([r["sigma"] for r in small], [r["variance_per_sample"] for r in small])
    for r in rows:
        r["score_slope"] = slope
    stem = os.path.join(out_dir, "estimators_gaussian")
    write_table(rows, stem)
    extra = {}
    if f_name == "square":
        s = np.asarray(sigmas, float)
        extra["score, exact: μ⁴/σ² + 14μ² + 15σ²"] = (s, mu**4 / s**2 + 14 * mu**2 + 15 * s**2)
    plot_sweep(rows, "sigma", stem + ".png", f"∂/∂μ E[f(x)], x ~ N(μ={mu}, σ²), f={f_name}; "
               f"score slope (σ ≤ {slope_below}) = {slope:.2f}", extra)
    return rows


def linear_gaussian_policy(params: dict[str, jax.Array], sigma: float):
    """π(a | o) = N(W o + b, σ²): returns (policy(obs, xi) for rollouts, log π(a | o))."""
    act = lambda obs, xi: params["W"] @ obs + params["b"] + sigma * xi
    log_prob = lambda obs, a: Normal(params["W"] @ obs + params["b"], sigma).log_prob(a)
    return act, log_prob


def pendulum_objective(sigma: float, horizon: int, system: Pendulum | None = None) -> StochasticObjective:
    """Expected H-step return of the linear Gaussian policy on Pendulum; ξ = (initial state, policy noise)."""
    system = Pendulum() if system is None else system

    def sample_noise(params, key):
        k_s0, k_xi = jax.random.split(key)
        return {"s0": system.reset(k_s0), "xi": jax.random.normal(k_xi, (horizon, system.action_dim))}

    def value(params, xi):
        act, _ = linear_gaussian_policy(params, sigma)
        return jnp.sum(rollout(system, act, xi["s0"], horizon, policy_noise=xi["xi"]).rewards)

    def log_probs_and_rewards(params, xi):
        act, _ = linear_gaussian_policy(jax.lax.stop_gradient(params), sigma)
        traj = jax.lax.stop_gradient(rollout(system, act, xi["s0"], horizon, policy_noise=xi["xi"]))
        _, log_prob = linear_gaussian_policy(params, sigma)
        return jax.vmap(log_prob)(traj.observations, traj.actions), traj.rewards

    return StochasticObjective(sample_noise, value, log_probs_and_rewards, True)


def pendulum_params(seed: int = 0, scale: float = 0.5) -> dict[str, jax.Array]:
    """A fixed random linear policy (W: 1×3, b: 1)."""
    k_w, k_b = jax.random.split(jax.random.PRNGKey(seed))
    return {"W": scale * jax.random.normal(k_w, (1, 3)), "b": scale * jax.random.normal(k_b, (1,))}


def pendulum_study(out_dir: str, *, sweep_over: str = "sigma", values: Sequence[float] | None = None,
                   sigma: float = 0.3, horizon: int = 30, n_samples: int = 32, n_repeats: int = 100,
                   reference_samples: int = 20_000, estimators: Sequence[str] = PENDULUM_ESTIMATORS,
                   seed: int = 0, progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Score function vs pathwise vs finite differences for a Pendulum policy, sweeping σ or the horizon."""
    if sweep_over not in ("sigma", "horizon"):
        raise ValueError(f"pendulum_study: sweep_over must be 'sigma' or 'horizon', got {sweep_over!r}.")
    default = (0.03, 0.1, 0.3, 1.0) if sweep_over == "sigma" else (5, 10, 20, 40, 80)
    values = tuple(default if values is None else values)
    if min(values) <= 0:
        raise ValueError(f"pendulum_study: {sweep_over} values must be positive, got {list(values)}.")
    params = pendulum_params(seed)
    if sweep_over == "sigma":
        build = lambda s: (pendulum_objective(float(s), horizon), params, None)
    else:
        build = lambda h: (pendulum_objective(sigma, int(h)), params, None)
    rows = sweep(sweep_over, values, build, estimators=estimators, n_samples=n_samples, n_repeats=n_repeats,
                 reference_samples=reference_samples, key=jax.random.PRNGKey(seed), progress=progress)
    stem = os.path.join(out_dir, f"estimators_pendulum_{sweep_over}")
    write_table(rows, stem)
    fixed = f"H={horizon}" if sweep_over == "sigma" else f"σ={sigma}"
    plot_sweep(rows, sweep_over, stem + ".png", f"Pendulum: ∇ of the return of a linear Gaussian policy ({fixed})")
    return rows
