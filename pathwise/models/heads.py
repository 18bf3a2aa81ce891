"""Learned reward and termination: the parts of the task a model learns where none is registered.

Lecture, "Model-based RL": the model-based loop needs the reward of the imagined transitions; where it is
not known as a function of observations it is learned from the same data ``D`` as the dynamics:

* ``RewardHead``: ``r̂_ψ(o, a, o') ≈ r``, fitted by least squares on the observed rewards (normalized);
* ``TerminationHead``: ``p_ω(o') = σ(ℓ_ω(o')) ≈ P(terminated | o')``, a logistic model fitted by binary
  cross-entropy on the observed ``terminated`` flags (never on time-limit truncations, which say nothing
  about the state).

Both heads carry their input normalizers (fitted on the data, not trained), so each is one pytree; the
dynamics model holds them (:class:`pathwise.models.DynamicsModel`, ``learn_reward``/``learn_termination``)
and :func:`pathwise.models.fit` trains them in the same minibatch steps as the dynamics.
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.models.normalizer import Normalizer
from pathwise.networks import MLP
from pathwise.types import Array, PRNGKey


class RewardHead(eqx.Module):
    """``r̂_ψ(o, a, o') = denorm(net(norm(o, a, o')))``, a scalar reward on observations."""

    net: MLP
    in_norm: Normalizer
    out_norm: Normalizer

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int], *, key: PRNGKey, act: str = "silu"):
        size = 2 * obs_dim + action_dim
        self.net = MLP(size, 1, hidden, key=key, act=act)
        self.in_norm, self.out_norm = Normalizer.identity(size), Normalizer.identity(1)

    def with_normalizers(self, obs: Array, actions: Array, next_obs: Array, rewards: Array,
                         count: Array | None = None) -> "RewardHead":
        """The same network with its normalizers fitted on a batch of transitions and their rewards (its first
        ``count`` rows, if given: ``Normalizer.from_data``)."""
        xp = np if isinstance(obs, np.ndarray) else jnp
        inputs = xp.concatenate([obs, actions, next_obs], axis=-1)
        return eqx.tree_at(lambda h: (h.in_norm, h.out_norm), self,
                           (Normalizer.from_data(inputs, count=count),
                            Normalizer.from_data(rewards.reshape(-1, 1), count=count)))

    def normalized(self, obs: Array, action: Array, next_obs: Array) -> Array:
        """The prediction in normalized reward units (what the loss compares)."""
        return self.net(self.in_norm.normalize(jnp.concatenate([obs, action, next_obs], axis=-1)))[0]

    def __call__(self, obs: Array, action: Array, next_obs: Array) -> Array:
        """The predicted reward ``r̂(o, a, o')``, a scalar; differentiable in all three."""
        return self.out_norm.denormalize(self.normalized(obs, action, next_obs))[0]


class TerminationHead(eqx.Module):
    """``p_ω(o) = σ(net(norm(o)))``: the probability that observation ``o`` ends the episode."""

    net: MLP
    in_norm: Normalizer

    def __init__(self, obs_dim: int, hidden: Sequence[int], *, key: PRNGKey, act: str = "silu"):
        self.net = MLP(obs_dim, 1, hidden, key=key, act=act)
        self.in_norm = Normalizer.identity(obs_dim)

    def with_normalizers(self, next_obs: Array, count: Array | None = None) -> "TerminationHead":
        """The same network with its input normalizer fitted on the observations it will judge (the first
        ``count``, if given)."""
        return eqx.tree_at(lambda h: h.in_norm, self, Normalizer.from_data(next_obs, count=count))

    def logit(self, obs: Array) -> Array:
        """``ℓ_ω(o)``, the log-odds of termination (scalar)."""
        return self.net(self.in_norm.normalize(obs))[0]

    def probability(self, obs: Array) -> Array:
        """``p_ω(o) = σ(ℓ_ω(o))``."""
        return jax.nn.sigmoid(self.logit(obs))

    def __call__(self, obs: Array) -> Array:
        """Whether ``o`` ends the episode: ``p_ω(o) > 0.5`` (a bool scalar, as ``System.terminated``)."""
        return self.logit(obs) > 0.0


def _weighted_mean(x: Array, weights: Array) -> Array:
    return (x * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def reward_loss(head: RewardHead, obs: Array, actions: Array, next_obs: Array, rewards: Array,
                weights: Array) -> Array:
    """``min_ψ Σ (r̂_ψ(o, a, o') − r)²`` in normalized reward units, weighted mean over the batch."""
    pred = jax.vmap(head.normalized)(obs, actions, next_obs)
    target = head.out_norm.normalize(rewards.reshape(-1, 1))[:, 0]
    return _weighted_mean((pred - target) ** 2, weights)


def termination_loss(head: TerminationHead, next_obs: Array, terminated: Array, weights: Array) -> Array:
    """Binary cross-entropy ``−[d log p_ω(o') + (1 − d) log(1 − p_ω(o'))]``, weighted mean over the batch."""
    logits = jax.vmap(head.logit)(next_obs)
    d = terminated.astype(logits.dtype)
    # log σ(ℓ) = −softplus(−ℓ), log(1 − σ(ℓ)) = −softplus(ℓ): stable for any logit
    bce = d * jax.nn.softplus(-logits) + (1.0 - d) * jax.nn.softplus(logits)
    return _weighted_mean(bce, weights)


__all__ = ["RewardHead", "TerminationHead", "reward_loss", "termination_loss"]
