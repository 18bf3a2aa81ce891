"""Distributions with explicit noise: ``Normal``, ``TanhNormal``, ``Categorical``, ``Bernoulli``.

Every distribution is an ``eqx.Module`` (a pytree holding its parameters) for
ONE unbatched event: ``log_prob`` sums over all elements, and batches are a
``jax.vmap`` outside. The noise is explicit so that a sample is a
deterministic function of the parameters and a standard noise draw,

    a = g(θ, ξ),   ξ ~ p(ξ)       (lecture: "Re-parametrization trick")

``sample_noise(key)`` draws ξ, ``sample_from_noise(ξ)`` applies g, and
``sample(key)`` does both. For ``Normal``/``TanhNormal`` g is differentiable in
θ (``reparameterizable = True``: a = μ + σ ξ, ξ ~ N(0, I)); for
``Categorical``/``Bernoulli`` g is a piecewise-constant argmax/threshold of
Gumbel/uniform noise and carries no gradient (``reparameterizable = False``;
use the score function or the relaxations in ``pathwise.estimators.relaxed``).

``GaussianPolicy`` and ``CategoricalPolicy`` map an observation to one of these. ``colored_normal`` draws the
standard-normal noise of a whole episode at once, correlated in time (pink noise and its kin).
"""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.networks import MLP, angle_features, as_bounds
from pathwise.types import Array, PRNGKey

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def _is_concrete(x) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def _check_positive(name: str, value: Array, cls: str, fix: str) -> None:
    """Raise ValueError if a concrete ``value`` has a non-positive or non-finite entry (skipped under tracing)."""
    if not _is_concrete(value):
        return
    v = np.asarray(value)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{cls}: {name} must be positive and finite, got min {np.min(v)!r} in {v.shape}-array; "
                         f"{fix}")


# -- continuous, reparameterizable ------------------------------------------------

class Normal(eqx.Module):
    """Diagonal Gaussian N(mean, diag(std²)) over an array event; a = mean + std * ξ, ξ ~ N(0, I)."""

    mean: Array
    std: Array
    reparameterizable: ClassVar[bool] = True

    def __init__(self, mean, std):
        mean, std = jnp.asarray(mean, jnp.result_type(float)), jnp.asarray(std, jnp.result_type(float))
        _check_positive("std", std, "Normal", "pass a positive std, or use Normal.from_log_std(mean, log_std).")
        self.mean, self.std = jnp.broadcast_arrays(mean, std)

    @classmethod
    def from_log_std(cls, mean, log_std) -> "Normal":
        """N(mean, exp(log_std)²): the usual parameterization of a learned std (always positive)."""
        return cls(mean, jnp.exp(jnp.asarray(log_std)))

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """Shape of one noise draw ξ: the event shape, ``mean.shape``."""
        return self.mean.shape

    def sample_noise(self, key: PRNGKey) -> Array:
        """ξ ~ N(0, I) of shape ``noise_shape``."""
        return jax.random.normal(key, self.noise_shape, self.mean.dtype)

    def sample_from_noise(self, noise: Array) -> Array:
        """The reparameterization a = μ + σ ξ (differentiable in μ and σ)."""
        return self.mean + self.std * noise

    def sample(self, key: PRNGKey) -> Array:
        """One sample of the event's shape: ``sample_from_noise(sample_noise(key))``."""
        return self.sample_from_noise(self.sample_noise(key))

    def infer_noise(self, x: Array) -> Array:
        """ξ = (x − μ)/σ: the noise that reproduces the recorded sample ``x``."""
        return (x - self.mean) / self.std

    def log_prob(self, x: Array) -> Array:
        """log N(x; μ, σ²) summed over the event: Σ −(x−μ)²/(2σ²) − log σ − ½ log 2π."""
        z = (x - self.mean) / self.std
        return jnp.sum(-0.5 * z**2 - jnp.log(self.std) - 0.5 * _LOG_2PI)

    def entropy(self, key: PRNGKey | None = None) -> Array:
        """Exact entropy Σ (½ log 2πe + log σ); ``key`` is unused (kept for a uniform signature)."""
        del key
        return jnp.sum(0.5 * (_LOG_2PI + 1.0) + jnp.log(self.std))

    def mode(self) -> Array:
        """μ: the most likely value (the deterministic action of a Gaussian policy)."""
        return self.mean


class TanhNormal(eqx.Module):
    """a = low + (tanh(u) + 1)/2 · (high − low), u ~ N(mean, std²): a Gaussian squashed into the box [low, high].

    ``mean``/``std`` are those of the pre-squash Gaussian u. ``log_prob`` applies the
    change of variables log p(a) = log N(u) − Σ log|da/du| with
    log|da/du| = log((high−low)/2) + log(1 − tanh²u), and log(1 − tanh²u) =
    2 (log 2 − u − softplus(−2u)) is evaluated in that stable form.
    """

    mean: Array
    std: Array
    low: Array
    high: Array
    reparameterizable: ClassVar[bool] = True
    # Boundary clip for atanh when inverting a recorded action (float32 tanh saturates at |u| ≈ 9).
    eps: ClassVar[float] = 1e-6

    def __init__(self, mean, std, low=-1.0, high=1.0):
        base = Normal(mean, std)
        low, high = jnp.asarray(low, base.mean.dtype), jnp.asarray(high, base.mean.dtype)
        _check_positive("high - low", high - low, "TanhNormal", "pass an action box with low < high elementwise.")
        self.mean, self.std = base.mean, base.std
        self.low, self.high = low, high

    @classmethod
    def from_log_std(cls, mean, log_std, low=-1.0, high=1.0) -> "TanhNormal":
        """u ~ N(mean, exp(log_std)²) squashed into [low, high]: the parameterization of a learned std."""
        return cls(mean, jnp.exp(jnp.asarray(log_std)), low, high)

    @property
    def base(self) -> Normal:
        """The pre-squash Gaussian over u."""
        return Normal(self.mean, self.std)

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """Shape of one noise draw ξ: the event shape, ``mean.shape``."""
        return self.mean.shape

    def squash(self, u: Array) -> Array:
        """a = low + (tanh(u) + 1)/2 · (high − low): maps the pre-squash u (any real) into the open box."""
        return self.low + (jnp.tanh(u) + 1.0) * 0.5 * (self.high - self.low)

    def unsquash(self, a: Array) -> Array:
        """u = atanh(y), y = 2(a − low)/(high − low) − 1 clipped to (−1+eps, 1−eps)."""
        y = 2.0 * (a - self.low) / (self.high - self.low) - 1.0
        return jnp.arctanh(jnp.clip(y, -1.0 + self.eps, 1.0 - self.eps))

    def sample_noise(self, key: PRNGKey) -> Array:
        """ξ ~ N(0, I) of shape ``noise_shape`` (the noise of the pre-squash Gaussian)."""
        return jax.random.normal(key, self.noise_shape, self.mean.dtype)

    def sample_from_noise(self, noise: Array) -> Array:
        """a = squash(μ + σ ξ) (differentiable in μ and σ)."""
        return self.squash(self.mean + self.std * noise)

    def sample(self, key: PRNGKey) -> Array:
        """One sample of the event's shape: ``sample_from_noise(sample_noise(key))``."""
        return self.sample_from_noise(self.sample_noise(key))

    def infer_noise(self, a: Array) -> Array:
        """ξ = (atanh(y(a)) − μ)/σ: the noise that reproduces the recorded action ``a`` (SVG(1), SVG(∞))."""
        return (self.unsquash(a) - self.mean) / self.std

    def _log_det_jacobian(self, u: Array) -> Array:
        log_one_minus_tanh2 = 2.0 * (_LOG_2 - u - jax.nn.softplus(-2.0 * u))
        log_half_width = jnp.log(0.5 * (self.high - self.low))
        return jnp.sum(jnp.broadcast_to(log_half_width, u.shape) + log_one_minus_tanh2)

    def log_prob(self, a: Array) -> Array:
        """log p(a) = log N(u; μ, σ²) − Σ log|da/du| at u = atanh(y(a)) (actions on the boundary are clipped)."""
        u = self.unsquash(a)
        return self.base.log_prob(u) - self._log_det_jacobian(u)

    def log_prob_from_noise(self, noise: Array) -> Array:
        """log p(a) at a = sample_from_noise(ξ), without the atanh round trip (exact even where tanh saturates)."""
        u = self.mean + self.std * noise
        return self.base.log_prob(u) - self._log_det_jacobian(u)

    def entropy(self, key: PRNGKey | None = None, num_samples: int = 16) -> Array:
        """Monte Carlo estimate H(a) = H(u) + E_ξ[Σ log|da/du|] with ``num_samples`` draws (no closed form).

        Unbiased for the true entropy; needs ``key``.
        """
        if key is None:
            raise ValueError("TanhNormal.entropy has no closed form; pass key=... for a Monte Carlo estimate.")
        xi = jax.random.normal(key, (num_samples, *self.noise_shape), self.mean.dtype)
        u = self.mean + self.std * xi
        return self.base.entropy() + jnp.mean(jax.vmap(self._log_det_jacobian)(u))

    def mode(self) -> Array:
        """squash(μ): the deterministic action (the median of a; the mode of u mapped through tanh)."""
        return self.squash(self.mean)


# -- discrete, not reparameterizable ----------------------------------------------

class Categorical(eqx.Module):
    """Categorical over the last axis of ``logits`` (leading axes are independent variables, summed in log_prob).

    Sampling is the Gumbel-max trick c = argmax(logits + g), g ~ Gumbel(0, 1):
    exact, but piecewise constant in the logits, so no pathwise gradient.
    """

    logits: Array
    reparameterizable: ClassVar[bool] = False

    def __init__(self, logits):
        logits = jnp.asarray(logits, jnp.result_type(float))
        if logits.ndim == 0:
            raise ValueError("Categorical: logits must have a class axis (shape (..., K)), got a scalar.")
        self.logits = logits

    @property
    def num_classes(self) -> int:
        """K, the size of the last (class) axis of ``logits``."""
        return self.logits.shape[-1]

    @property
    def log_probs(self) -> Array:
        """log softmax(logits) over the class axis: the log-probability of every class, shape ``logits.shape``."""
        return jax.nn.log_softmax(self.logits, axis=-1)

    @property
    def probs(self) -> Array:
        """softmax(logits) over the class axis, shape ``logits.shape``."""
        return jax.nn.softmax(self.logits, axis=-1)

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """Shape of one noise draw: ``logits.shape`` (one noise value per class or per variable)."""
        return self.logits.shape

    def sample_noise(self, key: PRNGKey) -> Array:
        """Standard Gumbel noise, one per class."""
        return jax.random.gumbel(key, self.noise_shape, self.logits.dtype)

    def sample_from_noise(self, noise: Array) -> Array:
        """Gumbel-max: argmax(logits + g) as an int32 index (no gradient)."""
        return jnp.argmax(jax.lax.stop_gradient(self.logits) + noise, axis=-1).astype(jnp.int32)

    def sample(self, key: PRNGKey) -> Array:
        """One sample of the event's shape: ``sample_from_noise(sample_noise(key))``."""
        return self.sample_from_noise(self.sample_noise(key))

    def log_prob(self, x: Array) -> Array:
        """Σ log softmax(logits)[x] over the leading axes."""
        idx = jnp.asarray(x).astype(jnp.int32)
        return jnp.sum(jnp.take_along_axis(self.log_probs, idx[..., None], axis=-1))

    def entropy(self, key: PRNGKey | None = None) -> Array:
        """Exact entropy −Σ p log p (``key`` unused)."""
        del key
        return -jnp.sum(self.probs * self.log_probs)

    def mode(self) -> Array:
        """argmax(logits) over the class axis as int32: the most likely class of each variable."""
        # a non-negative axis: jax2onnx 0.17's batching rule for argmax shifts axis=-1 to 0 under vmap, so an
        # exported policy (pathwise.export) would take the argmax over the batch
        return jnp.argmax(self.logits, axis=self.logits.ndim - 1).astype(jnp.int32)


class Bernoulli(eqx.Module):
    """Independent Bernoulli variables with P(x = 1) = sigmoid(logits); samples are 0./1. floats.

    Sampling thresholds uniform noise, x = [u < sigmoid(logits)]: no pathwise gradient.
    """

    logits: Array
    reparameterizable: ClassVar[bool] = False

    def __init__(self, logits):
        self.logits = jnp.asarray(logits, jnp.result_type(float))

    @property
    def probs(self) -> Array:
        """P(x = 1) = sigmoid(logits), shape ``logits.shape``."""
        return jax.nn.sigmoid(self.logits)

    @property
    def noise_shape(self) -> tuple[int, ...]:
        """Shape of one noise draw: ``logits.shape`` (one noise value per class or per variable)."""
        return self.logits.shape

    def sample_noise(self, key: PRNGKey) -> Array:
        """u ~ Uniform(0, 1), one per variable."""
        return jax.random.uniform(key, self.noise_shape, self.logits.dtype)

    def sample_from_noise(self, noise: Array) -> Array:
        """x = [u < sigmoid(logits)] as 0./1. floats for uniform noise u (no gradient in the logits)."""
        return (noise < jax.nn.sigmoid(jax.lax.stop_gradient(self.logits))).astype(self.logits.dtype)

    def sample(self, key: PRNGKey) -> Array:
        """One sample of the event's shape: ``sample_from_noise(sample_noise(key))``."""
        return self.sample_from_noise(self.sample_noise(key))

    def log_prob(self, x: Array) -> Array:
        """Σ x log σ(l) + (1 − x) log σ(−l), via log-sigmoids for stability."""
        return jnp.sum(x * jax.nn.log_sigmoid(self.logits) + (1.0 - x) * jax.nn.log_sigmoid(-self.logits))

    def entropy(self, key: PRNGKey | None = None) -> Array:
        """Exact entropy −Σ [p log p + (1 − p) log(1 − p)] over the variables (``key`` unused)."""
        del key
        p = self.probs
        return -jnp.sum(p * jax.nn.log_sigmoid(self.logits) + (1.0 - p) * jax.nn.log_sigmoid(-self.logits))

    def mode(self) -> Array:
        """1. where P(x = 1) > ½ (logits > 0), else 0."""
        return (self.logits > 0).astype(self.logits.dtype)


# -- policies ---------------------------------------------------------------------

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
"""GaussianPolicy's default clip range of log σ (σ from 0.0067 to 7.4); the learners' options start from it."""


class GaussianPolicy(eqx.Module):
    """obs -> Normal (unbounded) or TanhNormal (when ``low``/``high`` are given) with a learned log-std.

    ``state_dependent_std=True``: the MLP outputs [μ, log σ]; otherwise log σ is a
    free parameter vector. log σ is clipped to [log_std_min, log_std_max] (zero
    gradient outside the range). For ``rollout(..., policy_noise=ξ)`` call
    ``policy.act(obs, xi)``: the reparameterized action a = g(μ(s), σ(s), ξ). The observation entries
    ``angles`` (unwrapped angles) reach the MLP as their cos and sin.
    """

    net: MLP
    log_std: Array | None
    low: tuple[float, ...] | None = eqx.field(static=True)  # the action box: constants, never trained
    high: tuple[float, ...] | None = eqx.field(static=True)
    action_dim: int = eqx.field(static=True)
    log_std_min: float = eqx.field(static=True)
    log_std_max: float = eqx.field(static=True)
    angles: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int] = (64, 64), *, key: PRNGKey,
                 low=None, high=None, state_dependent_std: bool = False, init_log_std: float = 0.0,
                 log_std_min: float = LOG_STD_MIN, log_std_max: float = LOG_STD_MAX, act: str = "tanh", final_scale: float = 0.1,
                 angles: Sequence[int] = ()):
        if not log_std_min < log_std_max:
            raise ValueError(f"GaussianPolicy: need log_std_min < log_std_max, got {log_std_min}, {log_std_max}.")
        if (low is None) != (high is None):
            raise ValueError("GaussianPolicy: pass both low and high for a squashed policy, or neither.")
        out = 2 * action_dim if state_dependent_std else action_dim
        self.angles = tuple(angles)
        self.net = MLP(obs_dim + len(self.angles), out, hidden, key=key, act=act, final_scale=final_scale)
        self.log_std = None if state_dependent_std else jnp.full((action_dim,), init_log_std, jnp.float32)
        self.low = None if low is None else as_bounds(low, action_dim)
        self.high = None if high is None else as_bounds(high, action_dim)
        self.action_dim, self.log_std_min, self.log_std_max = action_dim, log_std_min, log_std_max

    def mean_and_log_std(self, obs: Array) -> tuple[Array, Array]:
        """(μ(obs), log σ), each ``(action_dim,)``, log σ clipped to [log_std_min, log_std_max].

        For a squashed policy these are the parameters of the pre-squash Gaussian u; log σ is the MLP's second
        half with ``state_dependent_std``, else the free parameter vector.
        """
        out = self.net(angle_features(obs, self.angles))
        if self.log_std is None:
            mean, log_std = out[: self.action_dim], out[self.action_dim:]
        else:
            mean, log_std = out, self.log_std
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)

    def __call__(self, obs: Array) -> Normal | TanhNormal:
        mean, log_std = self.mean_and_log_std(obs)
        if self.low is None:
            return Normal.from_log_std(mean, log_std)
        return TanhNormal.from_log_std(mean, log_std, *self.box(mean.dtype))

    def box(self, dtype=jnp.float32) -> tuple[Array, Array]:
        """``(low, high)`` of a squashed policy as arrays."""
        if self.low is None:
            raise ValueError("GaussianPolicy.box: this policy is not squashed into an action box.")
        return jnp.asarray(self.low, dtype), jnp.asarray(self.high, dtype)

    def act(self, obs: Array, xi: Array) -> Array:
        """The reparameterized action for explicit standard-normal noise ξ (shape ``(action_dim,)``)."""
        return self(obs).sample_from_noise(xi)


class CategoricalPolicy(eqx.Module):
    """obs -> Categorical(mlp(obs)) over ``num_actions`` actions."""

    net: MLP

    def __init__(self, obs_dim: int, num_actions: int, hidden: Sequence[int] = (64, 64), *, key: PRNGKey,
                 act: str = "tanh", final_scale: float = 0.01):
        self.net = MLP(obs_dim, num_actions, hidden, key=key, act=act, final_scale=final_scale)

    def __call__(self, obs: Array) -> Categorical:
        return Categorical(self.net(obs))

    def act(self, obs: Array, gumbel: Array) -> Array:
        """Gumbel-max action for explicit Gumbel noise (no gradient; see estimators.relaxed for relaxations)."""
        return self(obs).sample_from_noise(gumbel)


def colored_normal(key: PRNGKey, steps: int, dim: int, color: float, dtype=jnp.float32) -> Array:
    """``(steps, dim)`` standard-normal noise whose power spectrum over the ``steps`` falls as ``1/f^color``.

    Each of the ``dim`` columns is a stationary Gaussian sequence of mean 0 and variance exactly 1 at every step:
    ``color`` 0 is white noise (the steps independent), 1 pink, 2 red (Brownian-like); the larger ``color``, the
    longer a draw keeps its sign. Made in the frequency domain: at each frequency ``f_k = k/steps`` (``k = 0 ..
    steps//2``) a Gaussian coefficient scaled by ``f_k^(-color/2)`` (``f_0`` taken as ``1/steps``, the lowest
    frequency the sequence can hold), real at ``k = 0`` and at ``k = steps/2`` where each has twice the variance of a
    complex coefficient's part, as the transform of white noise has; the inverse real FFT, divided by the standard
    deviation that these scales give every step. Pink noise as exploration: Eberhard et al. 2023, "Pink Noise Is All
    You Need".
    """
    if steps < 1 or dim < 1:
        raise ValueError(f"colored_normal: steps={steps} and dim={dim} must be at least 1.")
    if not (math.isfinite(color) and color >= 0):
        raise ValueError(f"colored_normal: color={color} must be a finite exponent >= 0 (0 white, 1 pink, 2 red).")
    k = np.arange(steps // 2 + 1)
    freq = np.maximum(k, 1) / steps
    scale = freq ** (-color / 2.0)
    real_only = (k == 0) | (2 * k == steps)  # DC and (even steps) Nyquist: real coefficients of twice the variance
    scale = np.where(real_only, scale * math.sqrt(2.0), scale)
    # Var x_t = (1/steps²) Σ_k w_k scale_k²: w = 1 for a real coefficient, 4 for a complex one (its real and
    # imaginary parts, each appearing twice with the conjugate)
    std = math.sqrt(float(np.sum(np.where(real_only, 1.0, 4.0) * scale ** 2))) / steps
    k_re, k_im = jax.random.split(key)
    re = jax.random.normal(k_re, (dim, k.size), jnp.float32)
    im = jnp.where(jnp.asarray(real_only), 0.0, jax.random.normal(k_im, (dim, k.size), jnp.float32))
    coefficients = jnp.asarray(scale, jnp.float32) * (re + 1j * im)
    return (jnp.fft.irfft(coefficients, n=steps, axis=-1).T / std).astype(dtype)
