"""The score-function (likelihood-ratio, REINFORCE) gradient estimator and its baselines.

Lecture, "Likelihood Ratio Policy Gradient":

    ∇θ E_{x ~ p_θ}[f(x)] = E[∇θ log p_θ(x) f(x)] ≈ 1/n Σ_i ∇θ log p_θ(x_i) (f(x_i) − b)

for sequences, ∇θ log P(τ; θ) = Σ_t ∇θ log π_θ(u_t | s_t) and, by causality, each
term may be weighted by the reward-to-go G_t = Σ_{k≥t} γ^{k−t} r_k instead of R(τ).
Any baseline b that does not depend on x_i keeps the estimate unbiased.
Written as a surrogate whose ``jax.grad`` is the estimator: Σ log p · stop_gradient(G − b).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from pathwise.estimators.objective import StochasticObjective, distribution_objective
from pathwise.types import Array, PRNGKey, PyTree

BASELINES = ("none", "mean")


def score_function_surrogate(log_probs: Array, returns: Array, baseline: Array | float | None = None) -> Array:
    """L(θ) = Σ log p_θ · stop_gradient(G − b): ∇θ L is the score-function estimate (a sum: divide by n)."""
    advantage = returns if baseline is None else returns - baseline
    return jnp.sum(log_probs * jax.lax.stop_gradient(advantage))


def clipped_surrogate(log_probs: Array, old_log_probs: Array, weights: Array, clip_ratio: float) -> Array:
    """PPO's clipped surrogate per entry (Schulman et al., 2017): ``min(ρ w, clip(ρ, 1 − ε, 1 + ε) w)`` with
    ``ρ = exp(log_probs − old_log_probs)`` (the old ones and the weights held fixed). At ρ = 1 its gradient is
    ``w ∇ log p``, the score-function surrogate's; an entry whose ratio has left [1 − ε, 1 + ε] in the direction
    ``w`` favours contributes none."""
    w = jax.lax.stop_gradient(weights)
    ratio = jnp.exp(log_probs - jax.lax.stop_gradient(old_log_probs))
    return jnp.minimum(ratio * w, jnp.clip(ratio, 1 - clip_ratio, 1 + clip_ratio) * w)


def reward_to_go(rewards: Array, gamma: float | Array = 1.0, bootstrap: Array | float = 0.0) -> Array:
    """G_t = r_t + γ G_{t+1} over the last axis, with G_T = ``bootstrap`` (e.g. V(s_T) for a truncated episode)."""
    r = jnp.moveaxis(jnp.asarray(rewards), -1, 0)

    def back(g_next, r_t):
        g = r_t + gamma * g_next
        return g, g

    _, g = jax.lax.scan(back, jnp.broadcast_to(jnp.asarray(bootstrap, r.dtype), r.shape[1:]), r, reverse=True)
    return jnp.moveaxis(g, 0, -1)


def leave_one_out_mean(values: Array) -> Array:
    """b_i = mean of the other samples' values (axis 0): a baseline independent of sample i, so unbiased."""
    n = values.shape[0]
    if n < 2:
        return jnp.zeros_like(values)
    return (jnp.sum(values, axis=0, keepdims=True) - values) / (n - 1)


def standardize(values: Array, mask: Array) -> Array:
    """``(x − mean) / (std + 1e-8)`` over the entries where ``mask`` is 1, and 0 where it is 0: advantages scaled
    to zero mean and unit variance over a batch's real steps (padding excluded)."""
    n = jnp.maximum(mask.sum(), 1.0)
    mu = jnp.sum(mask * values) / n
    std = jnp.sqrt(jnp.sum(mask * (values - mu) ** 2) / n)
    return (values - mu) / (std + 1e-8) * mask


class RunningMean(NamedTuple):
    """Exponential moving average of returns, a baseline carried across iterations."""

    mean: Array
    count: Array


def running_mean_init(shape: tuple[int, ...] = ()) -> RunningMean:
    """An empty running mean: ``mean`` zeros of ``shape`` (float32) and ``count`` 0, so that the first
    ``running_mean_update`` sets the mean to its batch's mean rather than shrinking it towards 0."""
    return RunningMean(jnp.zeros(shape, jnp.float32), jnp.zeros((), jnp.int32))


def running_mean_update(state: RunningMean, values: Array, decay: float | Array = 0.9) -> RunningMean:
    """m ← decay·m + (1 − decay)·mean(values) (axis 0); the first update sets m = mean(values)."""
    batch_mean = jnp.mean(values, axis=0)
    mean = jnp.where(state.count == 0, batch_mean, decay * state.mean + (1.0 - decay) * batch_mean)
    return RunningMean(mean, state.count + 1)


def value_baseline_loss(value_fn: Callable[[Array], Array], observations: Array, returns: Array) -> Array:
    """½ mean (V(s_t) − G_t)²: regress a learned value baseline onto the (reward-to-go) returns."""
    return 0.5 * jnp.mean((jax.vmap(value_fn)(observations) - returns) ** 2)


def _baseline_values(weights: Array, baseline: str | Array | float) -> Array:
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise ValueError(f"score_function: unknown baseline {baseline!r}; use one of {BASELINES} or an array "
                             "(a running mean or learned values, broadcast against the returns).")
        return jnp.zeros_like(weights) if baseline == "none" else leave_one_out_mean(weights)
    return jnp.asarray(baseline, weights.dtype)


def score_function_estimate(objective: StochasticObjective, params: PyTree, key: PRNGKey, n: int, *,
                            baseline: str | Array | float = "none", use_reward_to_go: bool = True) -> PyTree:
    """ĝ = 1/n Σ_i Σ_t ∇θ log p_θ(x_{i,t}) (G_{i,t} − b_{i,t}) (pytree like ``params``).

    For a one-shot objective G_i = f(x_i). ``baseline``: "none", "mean" (leave-one-out
    mean over the n samples, per time step) or an array/float. ``use_reward_to_go=False``
    weights every step by the whole return R(τ_i). Rewards are undiscounted, matching
    F(θ, ξ) = Σ_t r_t of the objective.
    """
    xis = jax.vmap(lambda k: objective.sample_noise(params, k))(jax.random.split(key, n))
    _, rewards = jax.vmap(objective.log_probs_and_rewards, (None, 0))(jax.lax.stop_gradient(params), xis)
    if rewards.ndim == 1:
        weights = rewards
    elif use_reward_to_go:
        weights = reward_to_go(rewards)
    else:
        weights = jnp.broadcast_to(reward_to_go(rewards)[:, :1], rewards.shape)
    b = _baseline_values(weights, baseline)

    def surrogate(p):
        log_probs, _ = jax.vmap(objective.log_probs_and_rewards, (None, 0))(p, xis)
        return score_function_surrogate(log_probs, weights, b) / n

    return jax.grad(surrogate)(params)


def score_function(f: Callable[[Array], Array], dist_fn: Callable[[PyTree], Any], params: PyTree, key: PRNGKey,
                   n: int, *, baseline: str | Array | float = "none") -> PyTree:
    """Score-function estimate of ∇θ E_{x ~ dist_fn(θ)}[f(x)] from ``n`` samples (any distribution)."""
    return score_function_estimate(distribution_objective(f, dist_fn, params), params, key, n, baseline=baseline)
