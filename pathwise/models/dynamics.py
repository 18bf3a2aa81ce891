"""Learned dynamics ``f_φ(x, u) ≈ x'``: an MLP (or an ensemble of them) that predicts the change of observation.

Lecture, "Model-based RL": learn ``f_φ`` by minimizing ``Σ ||f_φ(x, u) − x'||²``
over the collected tuples ``D = {(x, u, x')}``. The network sees normalized
inputs ``(x, u)`` and predicts the normalized change ``Δ = x' − x``; both
normalizers are fitted on the data set and stored inside the module, so a
model is one pytree that can be jitted, differentiated and checkpointed.

Options:

* an ensemble of ``ensemble_size`` independently initialized members, stored as one network whose array leaves
  carry a leading member axis and evaluated with ``vmap`` (one program for all members); the prediction is the
  mean over the ``num_elites`` members with the lowest validation loss (the elites; all members by default);
* Gaussian outputs (a probabilistic ensemble, PETS: Chua et al., 2018): each member predicts a mean and a
  log-variance of ``Δ``, soft-bounded between a learned minimum and maximum (appendix A.1), and is fitted by
  the Gaussian negative log-likelihood ``gaussian_nll``;
* learned reward and termination heads (:mod:`pathwise.models.heads`), fitted in the same steps.

What an ensemble offers beyond its mean: ``distribution`` (the moments of the elites' mixture, aleatoric plus
epistemic), ``disagreement`` (the variance of the members' means, an exploration bonus) and
``member_prediction`` (one member, for trajectory sampling).
"""

from __future__ import annotations

from typing import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.models.heads import RewardHead, TerminationHead, reward_loss, termination_loss
from pathwise.models.normalizer import Normalizer
from pathwise.networks import MLP, angle_features
from pathwise.types import Array, PRNGKey

#: Initial soft bounds of a member's normalized log-variance (Chua et al., 2018: max 0.5, min -10), then learned.
MIN_LOG_VAR, MAX_LOG_VAR = -10.0, 0.5
#: Weight of the bound regularizer ``λ (Σ max − Σ min)`` that keeps the learned bounds tight (Chua et al., 2018).
LOG_VAR_BOUND_WEIGHT = 0.01


class DynamicsModel(eqx.Module):
    """``f_φ(x, u) = x + denorm(net(norm(x, u)))`` (the elite members' mean when ``ensemble_size > 1``).

    ``nets`` is one ``MLP`` whose array leaves carry a leading member axis (``ensemble_size`` members, 1 for a
    single network). ``log_var_bounds`` is ``[2, obs_dim]`` (learned max, min; Gaussian models only),
    ``elites`` a bool mask over members (None: every member is an elite), and the heads are None unless asked for.
    The observation entries ``angles`` (unwrapped angles, e.g. reacher's shoulder) enter the networks as their cos
    and sin, so that a prediction is periodic in them; their change Δ is still predicted unwrapped.
    """

    nets: MLP
    in_norm: Normalizer
    out_norm: Normalizer
    log_var_bounds: Array | None
    elites: Array | None
    reward_head: RewardHead | None
    termination_head: TerminationHead | None
    obs_dim: int = eqx.field(static=True)
    action_dim: int = eqx.field(static=True)
    ensemble_size: int = eqx.field(static=True)
    gaussian: bool = eqx.field(static=True)
    num_elites: int = eqx.field(static=True)
    angles: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, obs_dim: int, action_dim: int, hidden: Sequence[int] = (200, 200), *, key: PRNGKey,
                 ensemble_size: int = 1, gaussian: bool = False, act: str = "silu", num_elites: int = 0,
                 learn_reward: bool = False, learn_termination: bool = False, angles: Sequence[int] = ()):
        if obs_dim < 1 or action_dim < 1:
            raise ValueError(f"DynamicsModel: obs_dim and action_dim must be >= 1, got {obs_dim}, {action_dim}.")
        if ensemble_size < 1:
            raise ValueError(f"DynamicsModel: ensemble_size must be >= 1, got {ensemble_size}.")
        if not 0 <= num_elites <= ensemble_size:
            raise ValueError(f"DynamicsModel: num_elites={num_elites} must be between 1 and ensemble_size="
                             f"{ensemble_size} (0: every member).")
        out = 2 * obs_dim if gaussian else obs_dim
        keys = jax.random.split(key, ensemble_size)
        self.angles = tuple(angles)
        size = obs_dim + len(self.angles) + action_dim
        self.nets = eqx.filter_vmap(lambda k: MLP(size, out, hidden, key=k, act=act))(keys)
        self.in_norm = Normalizer.identity(size)
        self.out_norm = Normalizer.identity(obs_dim)
        bounds = jnp.stack([jnp.full(obs_dim, MAX_LOG_VAR), jnp.full(obs_dim, MIN_LOG_VAR)]).astype(jnp.float32)
        self.log_var_bounds = bounds if gaussian else None
        self.num_elites = num_elites or ensemble_size
        first = jnp.arange(ensemble_size) < self.num_elites  # until a fit ranks them
        self.elites = first if self.num_elites < ensemble_size else None
        self.reward_head = RewardHead(obs_dim, action_dim, hidden, key=jax.random.fold_in(key, 1), act=act) \
            if learn_reward else None
        self.termination_head = TerminationHead(obs_dim, hidden, key=jax.random.fold_in(key, 2), act=act) \
            if learn_termination else None
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.ensemble_size, self.gaussian = ensemble_size, gaussian

    def with_normalizers(self, obs: Array, actions: Array, next_obs: Array, rewards: Array | None = None,
                         count: Array | None = None) -> "DynamicsModel":
        """The same networks with input/output normalizers (and the heads') fitted on a batch of transitions (its
        first ``count`` rows, if given: the filled part of a replay buffer, under jit)."""
        xp = np if all(isinstance(x, np.ndarray) for x in (obs, actions, next_obs)) else jnp
        in_norm = Normalizer.from_data(xp.concatenate([angle_features(obs, self.angles), actions], axis=-1),
                                       count=count)
        out_norm = Normalizer.from_data(next_obs - obs, count=count)
        model = eqx.tree_at(lambda m: (m.in_norm, m.out_norm), self, (in_norm, out_norm))
        if model.reward_head is not None and rewards is not None:
            head = model.reward_head.with_normalizers(obs, actions, next_obs, rewards, count)
            model = eqx.tree_at(lambda m: m.reward_head, model, head)
        if model.termination_head is not None:
            head = model.termination_head.with_normalizers(next_obs, count)
            model = eqx.tree_at(lambda m: m.termination_head, model, head)
        return model

    def _bounded(self, raw: Array) -> Array:
        """Soft bounds ``max − softplus(max − v)`` then ``min + softplus(v − min)`` (Chua et al., 2018, A.1)."""
        max_lv, min_lv = self.log_var_bounds[0], self.log_var_bounds[1]
        log_var = max_lv - jax.nn.softplus(max_lv - raw)
        return min_lv + jax.nn.softplus(log_var - min_lv)

    def inputs(self, obs: Array, action: Array) -> Array:
        """The networks' normalized input: the observation (its ``angles`` entries as cos and sin), then the
        action."""
        return self.in_norm.normalize(jnp.concatenate([angle_features(obs, self.angles), action], axis=-1))

    def normalized_outputs(self, obs: Array, action: Array) -> tuple[Array, Array]:
        """Per-member normalized ``(mean, log_var)`` of ``Δ``, each ``[ensemble_size, obs_dim]``.

        ``log_var`` is zeros for a deterministic model.
        """
        z = self.inputs(obs, action)
        out = eqx.filter_vmap(lambda net: net(z))(self.nets)
        if not self.gaussian:
            return out, jnp.zeros_like(out)
        return out[:, : self.obs_dim], self._bounded(out[:, self.obs_dim:])

    def member_weights(self) -> Array:
        """Weight of each member in the prediction: ``1 / num_elites`` for an elite, 0 otherwise."""
        mask = jnp.ones(self.ensemble_size, bool) if self.elites is None else self.elites
        return mask.astype(jnp.float32) / self.num_elites

    def member_predictions(self, obs: Array, action: Array) -> Array:
        """Each member's predicted next observation (its mean), ``[ensemble_size, obs_dim]``."""
        mean, _ = self.normalized_outputs(obs, action)
        return obs + self.out_norm.denormalize(mean)

    def member_prediction(self, obs: Array, action: Array, member: Array) -> Array:
        """Member ``member``'s (an int, may be traced) predicted next observation; only that member runs."""
        net = jax.tree.map(lambda x: x[member], self.nets)  # every array leaf carries the member axis
        out = net(self.inputs(obs, action))
        return obs + self.out_norm.denormalize(out[: self.obs_dim])

    def random_member(self, key: PRNGKey) -> Array:
        """A member index drawn uniformly from the elites."""
        return jax.random.choice(key, self.ensemble_size, p=self.member_weights())

    def __call__(self, obs: Array, action: Array) -> Array:
        """The predicted next observation: the mean over the elite members."""
        preds = self.member_predictions(obs, action)
        if self.elites is None:
            return preds.mean(axis=0)
        return (self.member_weights()[:, None] * preds).sum(axis=0)

    def distribution(self, obs: Array, action: Array) -> tuple[Array, Array]:
        """Mean and variance of the next observation under the elites' equal-weight mixture (raw units).

        ``Var = Σ_m w_m (σ_m² + μ_m²) − μ²``: each member's predicted (aleatoric) variance plus the spread of the
        members' means (epistemic). A deterministic single model has variance 0.
        """
        mean, log_var = self.normalized_outputs(obs, action)
        w = self.member_weights()[:, None]
        mu = obs + self.out_norm.denormalize(mean)
        var = (jnp.exp(log_var) if self.gaussian else jnp.zeros_like(log_var)) * self.out_norm.std ** 2
        center = (w * mu).sum(axis=0)
        return center, (w * (var + (mu - center) ** 2)).sum(axis=0)

    def disagreement(self, obs: Array, action: Array) -> Array:
        """Variance of the elite members' predicted means, averaged over dimensions, in normalized units of ``Δ``
        (scale free): 0 where the members agree; an optimism bonus ``r + β · disagreement`` explores the rest."""
        mean, _ = self.normalized_outputs(obs, action)
        w = self.member_weights()[:, None]
        center = (w * mean).sum(axis=0)
        return (w * (mean - center) ** 2).sum(axis=0).mean()


def member_errors(model: DynamicsModel, obs: Array, actions: Array, next_obs: Array) -> Array:
    """Per transition and member, ``[B, ensemble_size]``: the squared error (deterministic) or the Gaussian
    negative log-likelihood up to a constant (Gaussian) of ``Δ`` in normalized units, averaged over dimensions."""
    target = model.out_norm.normalize(next_obs - obs)[:, None, :]
    mean, log_var = jax.vmap(model.normalized_outputs)(obs, actions)  # [B, E, d]
    if not model.gaussian:
        return ((mean - target) ** 2).mean(axis=-1)
    return 0.5 * (((mean - target) ** 2) * jnp.exp(-log_var) + log_var).mean(axis=-1)


def member_losses(model: DynamicsModel, obs: Array, actions: Array, next_obs: Array, weights: Array) -> Array:
    """Each member's weighted mean loss over the batch, ``[ensemble_size]`` (the elites are the lowest)."""
    err = member_errors(model, obs, actions, next_obs)
    return (err * weights[:, None]).sum(axis=0) / jnp.maximum(weights.sum(), 1.0)


def mse_loss(model: DynamicsModel, obs: Array, actions: Array, next_obs: Array, weights: Array) -> Array:
    """Lecture: min_φ Σ ||f_φ(x, u) − x'||², in normalized Δ units, weighted mean over the batch, summed over members."""
    target = model.out_norm.normalize(next_obs - obs)
    mean, _ = jax.vmap(model.normalized_outputs)(obs, actions)  # [B, E, d]
    err = ((mean - target[:, None, :]) ** 2).mean(axis=-1).sum(axis=-1)
    return (err * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def gaussian_nll(model: DynamicsModel, obs: Array, actions: Array, next_obs: Array, weights: Array) -> Array:
    """−log N(Δ; μ_φ(x, u), diag σ²_φ(x, u)) up to a constant, in normalized units, summed over members, plus
    ``λ (Σ max log σ² − Σ min log σ²)`` on the learned bounds (Chua et al., 2018, eq. 1 and appendix A.1)."""
    nll = member_losses(model, obs, actions, next_obs, weights).sum()
    bounds = model.log_var_bounds
    return nll + LOG_VAR_BOUND_WEIGHT * (bounds[0].sum() - bounds[1].sum())


def model_loss(model: DynamicsModel, obs: Array, actions: Array, next_obs: Array, weights: Array,
               rewards: Array | None = None, terminated: Array | None = None) -> Array:
    """The fitting loss of ``model``: ``gaussian_nll`` for Gaussian models, else ``mse_loss``; plus the reward
    head's squared error (given ``rewards``) and the termination head's cross-entropy (given ``terminated``)."""
    loss = (gaussian_nll if model.gaussian else mse_loss)(model, obs, actions, next_obs, weights)
    if model.reward_head is not None and rewards is not None:
        loss = loss + reward_loss(model.reward_head, obs, actions, next_obs, rewards, weights)
    if model.termination_head is not None and terminated is not None:
        loss = loss + termination_loss(model.termination_head, next_obs, terminated, weights)
    return loss


def trainable(model: DynamicsModel):
    """The filter spec of what ``fit`` trains: every floating-point array except the normalizers' statistics."""
    return jax.tree.map(lambda x: False if isinstance(x, Normalizer) else eqx.is_inexact_array(x), model,
                        is_leaf=lambda x: isinstance(x, Normalizer))


__all__ = ["DynamicsModel", "LOG_VAR_BOUND_WEIGHT", "MAX_LOG_VAR", "MIN_LOG_VAR", "Normalizer", "gaussian_nll",
           "member_errors", "member_losses", "model_loss", "mse_loss", "trainable"]
