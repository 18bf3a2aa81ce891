"""SVG(∞): the value gradient of whole real episodes, through a learned model with inferred noise.

Lecture, SVG(∞) (Heess et al., 2015, Algorithm 1): learn ``f``; given a real
trajectory, infer all noise variables — the model noise
``ζ_t = s_{t+1} − f(s_t, a_t)`` and the policy noise ``ξ_t`` with
``a_t = π(s_t, ξ_t; θ)`` — then freeze them and differentiate the replayed
return through the entire deterministic graph

    J(θ) = Σ_t γ^t r(s_t, a_t),   a_t = π(s_t, ξ_t; θ),   s_{t+1} = f(s_t, a_t) + ζ_t,   s_0 real.

At the current θ the replay *is* the real episode, so "errors don't
accumulate: the model is used to backprop gradients, not to simulate
experience". The replayed return is ``J_T`` with the zero bootstrap of the value-gradient core
(:func:`pathwise.algorithms.svg_core.value_gradient_objective`) with the inferred noises
(:func:`pathwise.models.noise.frozen_noise`) as its model and policy noise. It runs in the model-based
loop (:mod:`pathwise.loops.model_based`): after each real episode the loop refits ``f``; ``update`` infers
ζ and ξ of the ``recent_episodes`` most recent real episodes once, at the policy that collected the
newest one, freezes them, and takes ``grad_steps`` Adam steps on ∇θ J of the replays.

What the defaults (= the Pendulum-v1 preset) add to that, each optional, and why:

- ``segment_length``/``num_segments``: each Adam step replays windows of recorded steps starting at
  random recorded states, with their inferred noises (a handful of whole episodes from as many start
  states are too few to fit a swing-up).
- ``random_episodes = 1``: a uniform warm-up episode, which trains the model and is replayed like the
  others (it gives the first updates action variety).
- ``policy_noise_clip``: the inferred ξ are clipped. The uniform warm-up episode's actions are far off the
  policy (ξ = (atanh(a/2) − μ)/σ is large at a small σ), and a recorded action the float32 squash
  saturated infers |ξ| beyond the policy's range: unclipped, those replays put the action in the flat
  part of tanh whatever μ does, the gradient pushes μ into saturation and the policy does not learn.
  For |ξ| above the clip the replayed action differs from the recorded one (the model with ζ carries
  the difference); own-policy noises are N(0, 1) and almost never clipped.
- ``learn_std = False``: a fixed exploration std (learned, σ can shrink until some start states are
  never swung up).
- ``mean_penalty``: λ‖μ(s_t)‖² subtracted from each replayed reward keeps the pre-squash mean out of
  saturation.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from pathwise import optim
from pathwise.algorithms.base import AlgorithmInfo, CommonConfig
from pathwise.algorithms.svg_core import value_gradient_objective, zero_bootstrap
from pathwise.config import at_least, positive, unit_interval
from pathwise.distributions import GaussianPolicy
from pathwise.loops.model_based import ModelData, ModelOptions
from pathwise.models.noise import frozen_noise
from pathwise.spec import EnvSpec
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, PyTree, Transition

INFO = AlgorithmInfo("svg-inf", loops=("model_based",),
                     summary="SVG(inf): value gradients of replayed real episodes through a learned model.")


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig, ModelOptions):
    """SVG(∞) options (defaults for Pendulum-v1)."""

    RENAMED: ClassVar[dict[str, str]] = {"learning_rate": "actor_lr"}  # before 0.3

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the tanh-Gaussian policy."""
    init_log_std: float = -1.6
    """Initial log std of the policy's pre-squash Gaussian (state independent; learned if ``learn_std``)."""
    gamma: float = 0.99
    """Discount of the replayed return."""
    grad_steps: int = 200
    """Adam steps per real episode, each on all stored recent episodes."""
    truncate_every: int = 0
    """If k > 0, stop gradients through the state every k steps (0: the whole episode, as SVG(∞))."""
    segment_length: int = 50
    """If H > 0, replay ``num_segments`` windows of H real steps starting at random recorded states of the
    stored episodes per Adam step, instead of the whole episodes (0: whole episodes)."""
    num_segments: int = 64
    """Windows per Adam step when ``segment_length > 0``."""
    recent_episodes: int = 10
    """Recent real episodes kept and replayed (Pendulum-v1: all of a 2,000-step run)."""
    learn_std: bool = False
    """Learn the policy's log std with the replayed return (False: keep ``init_log_std``, a fixed exploration level)."""
    mean_penalty: float = 0.01
    """λ: maximize Σ_t γ^t (r_t − λ‖μ(s_t)‖²), a penalty on the pre-squash mean along the replay, so the tanh
    squash does not saturate (where the replay's action gradient vanishes and exploration noise no longer moves
    the action)."""
    policy_noise_clip: float = 3.0
    """If c > 0, clip the inferred policy noises ξ to [−c, c] (0: exact inference). A recorded action the
    tanh squash saturated (float32 rounds tanh(u) to ±1 beyond |u| ≈ 9; the inversion clips at |u| ≈ 7.25)
    infers a large |ξ| that pins the replayed action in the dead zone of the squash whatever the mean does."""
    reinfer_noise: bool = False
    """Re-infer ξ at every Adam step (False: infer ζ and ξ once per episode, at the policy before the update).

    Re-inferred at the current θ, the replay always reproduces the recorded actions, so every Adam step
    sees the same action gradient and keeps pushing the policy the same way (the pre-squash mean can run
    into saturation within a few episodes); frozen noises make the replay move with θ.
    """
    actor_lr: float = 1e-3
    """Adam step size of the policy."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip of the policy update (0 disables)."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + positive(self, "grad_steps", "num_segments", "actor_lr") + \
            at_least(self, 0, "truncate_every", "segment_length", "mean_penalty", "policy_noise_clip",
                     "max_grad_norm") + unit_interval(self, "gamma")


class State(NamedTuple):
    """Everything SVG(∞) learns (the model and the recorded episodes live in the loop's carry)."""

    policy: GaussianPolicy
    opt_state: PyTree


def replayed_return(policy: GaussianPolicy, system: System, episode: Transition, length: Array,
                    gamma: float, truncate_every: int = 0, noises: tuple[Array, Array] | None = None,
                    mean_penalty: float = 0.0) -> Array:
    """SVG(∞): ``J(θ) = Σ_{t<length} γ^t [r(s_t, π(s_t, ξ_t; θ)) − λ‖μ(s_t)‖²]``, ``s_{t+1} = f(s_t, a_t) + ζ_t``.

    ``J_T`` of the value-gradient core with the zero bootstrap; the noises are inferred and frozen. ``episode``
    is zero-padded past ``length``: the padded rows repeat the last real transition, have reward weight 0,
    and the replay restarts (without gradient) from the recorded observation there, so every value in the
    graph stays a finite function of real data (zero weight times a NaN derivative at a padded all-zero
    observation would still be NaN).

    ``noises``: ``(ζ [T, d], ξ [T, m])`` inferred earlier (e.g. at the policy before an update); by default
    they are inferred here, at ``policy``. ``mean_penalty`` λ > 0 subtracts λ‖μ(s_t)‖² (the policy's
    pre-squash mean on the replayed observations) from every replayed reward.
    """
    T = episode.obs.shape[0]
    steps = jnp.arange(T)
    valid = steps < length
    rows = jnp.minimum(steps, jnp.maximum(length - 1, 0))
    obs, actions, next_obs = episode.obs[rows], episode.action[rows], episode.next_obs[rows]
    if noises is None:
        zetas, xis = frozen_noise(system, policy, obs, actions, next_obs)
    else:
        zetas, xis = jax.lax.stop_gradient(noises[0][rows]), jax.lax.stop_gradient(noises[1][rows])
    xis = jnp.concatenate([xis, jnp.zeros_like(xis[:1])])  # the bootstrap action's noise (B = 0: unused)
    weights = valid.astype(obs.dtype)
    segment = value_gradient_objective(system, policy.act, zero_bootstrap, episode.obs[0], xis, zetas, gamma,
                                       reward_weights=weights, truncate_every=truncate_every, restarts=(~valid, obs))
    if mean_penalty <= 0:
        return segment.objective
    means = jax.vmap(lambda o: policy.mean_and_log_std(o)[0])(segment.observations)
    penalty = jnp.sum(weights * gamma ** steps * jnp.sum(means ** 2, axis=-1))
    return segment.objective - mean_penalty * penalty


def sample_segments(episodes: PyTree, lengths: Array, filled: Array, key: PRNGKey, num: int, horizon: int
                    ) -> tuple[PyTree, Array]:
    """``num`` windows of ``horizon`` recorded steps of every ``[E, T, ...]`` leaf of ``episodes``.

    The episode is uniform among the ``filled`` slots, the start uniform in ``[0, length)``; returns the
    windows ``[num, horizon, ...]`` and their real lengths (cut at the episode end).
    """
    k_ep, k_t = jax.random.split(key)
    ep = jax.random.categorical(k_ep, jnp.where(filled, 0.0, -jnp.inf), shape=(num,))
    n = lengths[ep]
    start = jax.random.randint(k_t, (num,), 0, jnp.maximum(n, 1))
    rows = jnp.minimum(start[:, None] + jnp.arange(horizon), jax.tree.leaves(episodes)[0].shape[1] - 1)
    windows = jax.tree.map(lambda x: x[ep[:, None], rows], episodes)
    return windows, jnp.clip(n - start, 0, horizon)


def optimizer(config: Config) -> optax.GradientTransformation:
    """The policy's optimizer: Adam at ``actor_lr``, gradients clipped to global norm ``max_grad_norm`` (if > 0)."""
    return optim.adam(config.actor_lr, config.max_grad_norm)


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """A fresh tanh-Gaussian policy in the action box (state-independent std) and its Adam state."""
    policy = GaussianPolicy(spec.obs_dim, spec.action_dim, config.hidden, key=key, low=spec.action_low,
                            high=spec.action_high, init_log_std=config.init_log_std,
                            angles=spec.angle_entries(config.angle_features))
    return State(policy, optim.init(optimizer(config), policy))


def recorded_episodes(policy: GaussianPolicy, data: ModelData, config: Config):
    """``(episodes [E, T], lengths [E], filled [E], noises)`` of the recent-episode ring.

    Empty slots hold a copy of slot 0 (filled by the time ``update`` runs) so nothing replays all-zero
    observations; ``noises`` are ``(ζ, ξ)`` inferred at ``policy`` and frozen (ξ clipped), or None with
    ``reinfer_noise``.
    """
    episodes, lengths = data.recent.storage
    filled = jnp.arange(data.recent.capacity) < data.recent.size
    episodes = jax.tree.map(lambda x: jnp.where(filled.reshape(-1, *([1] * (x.ndim - 1))), x, x[:1]), episodes)
    lengths = jnp.where(filled, lengths, lengths[0])
    if config.reinfer_noise:
        return episodes, lengths, filled, None
    zetas, xis = jax.vmap(lambda ep: frozen_noise(data.system, policy, ep.obs, ep.action, ep.next_obs))(episodes)
    if config.policy_noise_clip > 0:
        xis = jnp.clip(xis, -config.policy_noise_clip, config.policy_noise_clip)
    return episodes, lengths, filled, (zetas, xis)


def objective(policy: GaussianPolicy, system: System, recorded, key: PRNGKey, config: Config) -> Array:
    """The mean replayed return of one Adam step: ``num_segments`` windows, or every filled recorded episode."""
    episodes, lengths, filled, noises = recorded
    if config.segment_length > 0:
        (eps, nz), n = sample_segments((episodes, noises), lengths, filled, key, config.num_segments,
                                       config.segment_length)
        weights = jnp.full(config.num_segments, 1.0 / config.num_segments)
    else:
        eps, nz, n = episodes, noises, lengths
        weights = filled / jnp.maximum(filled.sum(), 1)

    def replay(ep, m, z):
        return replayed_return(policy, system, ep, m, config.gamma, config.truncate_every, z, config.mean_penalty)

    return jnp.sum(jax.vmap(replay)(eps, n, nz) * weights)


def update(state: State, data: ModelData, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """``grad_steps`` Adam steps ascending the replayed return; a non-finite gradient skips its step (counted)."""
    recorded = recorded_episodes(state.policy, data, config)

    def step(carry, k):
        policy, opt_state = carry
        value, grads = eqx.filter_value_and_grad(objective)(policy, data.system, recorded, k, config)
        grads = jax.tree.map(jnp.negative, grads)  # ascend J
        if not config.learn_std and grads.log_std is not None:
            grads = eqx.tree_at(lambda g: g.log_std, grads, jnp.zeros_like(grads.log_std))
        policy, opt_state = optim.apply(policy, grads, opt_state, optimizer(config))
        return (policy, opt_state), (value, optax.tree.norm(optim.params(grads)))

    (policy, opt_state), (values, norms) = jax.lax.scan(step, (state.policy, state.opt_state),
                                                        jax.random.split(key, config.grad_steps))
    metrics = {"replayed_return": values[0], "replayed_return_after": values[-1], "grad_norm": norms.mean(),
               "skipped_total": optim.skipped(opt_state)}
    return State(policy, opt_state), metrics


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """The squashed mean ``box(tanh(μ(s)))``, or a sample of the policy when not ``deterministic``."""
    dist = state.policy(obs)
    return dist.mode() if deterministic else dist.sample(key)


def act_from_noise(state: State, obs: Array, noise: Array) -> Array:
    """The policy's sample for given standard-normal noise ``ξ`` (shape ``(action_dim,)``): ``box(tanh(μ + σ ξ))``
    (the model-based loop's real episodes with ``noise_color`` > 0 pass time-correlated ξ)."""
    return state.policy.act(obs, noise)


__all__ = ["Config", "INFO", "State", "act", "act_from_noise", "init", "objective", "optimizer",
           "recorded_episodes", "replayed_return", "sample_segments", "update"]
