"""Learned dynamics ``f_φ(x, u) ≈ x'``: an MLP that predicts the change of observation.

Lecture, "Model-based RL": learn ``f_φ`` by minimizing ``Σ ||f_φ(x, u) − x'||²``
over the collected tuples ``D = {(x, u, x')}``. The network sees normalized
inputs ``(x, u)`` and predicts the normalized change ``Δ = x' − x``; both
normalizers are fitted on the data set and stored inside the module, so a
model is one pytree that can be jitted, differentiated and checkpointed.

Options: an ensemble of ``ensemble_size`` independently initialized members
(their mean is the prediction) and Gaussian outputs (each member predicts a
mean and a log-variance of ``Δ``; ``gaussian_nll`` is then the fitting loss).
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.networks import MLP
from pathwise.types import Array, PRNGKey

MIN_LOG_VAR, MAX_LOG_VAR = -10.0, 4.0


class Normalizer(eqx.Module):
    """Affine map ``z = (x − mean) / std`` with statistics stored as arrays."""

    mean: Array
    std: Array

    @staticmethod
    def identity(dim: int) -> "Normalizer":
        """The map that changes nothing: mean 0 and std 1 over ``dim`` entries (float32)."""
        return Normalizer(jnp.zeros(dim, jnp.float32), jnp.ones(dim, jnp.float32))

    @staticmethod
    def from_data(x: Array, min_std: float = 1e-6) -> "Normalizer":
        """Mean and standard deviation over the leading axis (std floored at ``min_std``).

        NumPy input is reduced with NumPy (no XLA program per data-set size); JAX input (also traced) with JAX.
        """
        if isinstance(x, np.ndarray):
            x = x.astype(np.float64)
            return Normalizer(jnp.asarray(x.mean(axis=0), jnp.float32),
                              jnp.asarray(np.maximum(x.std(axis=0), min_std), jnp.float32))
        x = jnp.asarray(x, jnp.float32)
        return Normalizer(x.mean(axis=0), jnp.maximum(x.std(axis=0), min_std))

    def normalize(self, x: Array) -> Array:
        """z = (x − mean) / std, elementwise over the last axis (any leading batch axes broadcast)."""
        return (x - self.mean) / self.std

    def denormalize(self, z: Array) -> Array:
        """x = z · std + mean, the inverse of ``normalize``."""
        return z * self.std + self.mean


class DynamicsModel(eqx.Module):
    """``f_φ(x, u) = x + denorm(net(norm(x, u)))`` (the ensemble mean when ``ensemble_size > 1``).

    ``nets`` is one ``MLP`` whose array leaves carry a leading member axis
    (``ensemble_size`` members, 1 for a single network).
    """

    nets: MLP
    in_norm: Normalizer
    out_norm: Normalizer
    obs_dim: int = eqx.field(static=True)
    action_dim: int = eqx.field(static=True)
    ensemble_size: int = eqx.field(static=True)
    gaussian: bool = eqx.field(static=True)

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int] = (200, 200), *, key: PRNGKey,
                 ensemble_size: int = 1, gaussian: bool = False, act: str = "silu"):
        if obs_dim < 1 or action_dim < 1:
            raise ValueError(f"DynamicsModel: obs_dim and action_dim must be >= 1, got {obs_dim}, {action_dim}.")
        if ensemble_size < 1:
            raise ValueError(f"DynamicsModel: ensemble_size must be >= 1, got {ensemble_size}.")
        out = 2 * obs_dim if gaussian else obs_dim
        keys = jax.random.split(key, ensemble_size)
        self.nets = eqx.filter_vmap(lambda k: MLP(obs_dim + action_dim, out, hidden, key=k, act=act))(keys)
        self.in_norm = Normalizer.identity(obs_dim + action_dim)
        self.out_norm = Normalizer.identity(obs_dim)
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.ensemble_size, self.gaussian = ensemble_size, gaussian

    def with_normalizers(self, obs: Array, actions: Array, next_obs: Array) -> "DynamicsModel":
        """The same network with input/output normalizers fitted on a batch of transitions."""
        xp = np if all(isinstance(x, np.ndarray) for x in (obs, actions, next_obs)) else jnp
        in_norm = Normalizer.from_data(xp.concatenate([obs, actions], axis=-1))
        out_norm = Normalizer.from_data(next_obs - obs)
        return eqx.tree_at(lambda m: (m.in_norm, m.out_norm), self, (in_norm, out_norm))

    def normalized_outputs(self, obs: Array, action: Array) -> tuple[Array, Array]:
        """Per-member normalized ``(mean, log_var)`` of ``Δ``, each ``[ensemble_size, obs_dim]``.

        ``log_var`` is zeros for a deterministic model.
        """
        z = self.in_norm.normalize(jnp.concatenate([obs, action], axis=-1))
        out = eqx.filter_vmap(lambda net: net(z))(self.nets)
        if not self.gaussian:
            return out, jnp.zeros_like(out)
        mean, raw = out[:, : self.obs_dim], out[:, self.obs_dim:]
        # Soft bounds keep the variance away from 0 and infinity (Chua et al., 2018, appendix A.1).
        log_var = MAX_LOG_VAR - jax.nn.softplus(MAX_LOG_VAR - raw)
        return mean, MIN_LOG_VAR + jax.nn.softplus(log_var - MIN_LOG_VAR)

    def member_predictions(self, obs: Array, action: Array) -> Array:
        """Each member's predicted next observation, ``[ensemble_size, obs_dim]``."""
        mean, _ = self.normalized_outputs(obs, action)
        return obs + self.out_norm.denormalize(mean)

    def __call__(self, obs: Array, action: Array) -> Array:
        """The predicted next observation (the members' mean)."""
        return self.member_predictions(obs, action).mean(axis=0)


def mse_loss(model: DynamicsModel, obs: Array, actions: Array, next_obs: Array, weights: Array) -> Array:
    """Lecture: min_φ Σ ||f_φ(x, u) − x'||², in normalized Δ units, weighted mean over the batch, summed over members."""
    target = model.out_norm.normalize(next_obs - obs)
    mean, _ = jax.vmap(model.normalized_outputs)(obs, actions)  # [B, E, d]
    err = ((mean - target[:, None, :]) ** 2).mean(axis=-1).sum(axis=-1)
    return (err * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def gaussian_nll(model: DynamicsModel, obs: Array, actions: Array, next_obs: Array, weights: Array) -> Array:
    """−log N(Δ; μ_φ(x, u), diag σ²_φ(x, u)) up to a constant, in normalized units, summed over members."""
    target = model.out_norm.normalize(next_obs - obs)
    mean, log_var = jax.vmap(model.normalized_outputs)(obs, actions)
    nll = 0.5 * (((mean - target[:, None, :]) ** 2) * jnp.exp(-log_var) + log_var).mean(axis=-1).sum(axis=-1)
    return (nll * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def model_loss(model: DynamicsModel, obs: Array, actions: Array, next_obs: Array, weights: Array) -> Array:
    """The fitting loss of ``model``: ``gaussian_nll`` for Gaussian models, else ``mse_loss``."""
    loss = gaussian_nll if model.gaussian else mse_loss
    return loss(model, obs, actions, next_obs, weights)
