"""SVG(∞): the value gradient of whole real episodes, through a learned model with inferred noise.

Lecture, SVG(∞) (Heess et al., 2015, Algorithm 1): learn ``f``; given a real
trajectory, infer all noise variables — the model noise
``ζ_t = s_{t+1} − f(s_t, a_t)`` and the policy noise ``ξ_t`` with
``a_t = π(s_t, ξ_t; θ)`` — then freeze them and differentiate the replayed
return through the entire deterministic graph

    J(θ) = Σ_t γ^t r(s_t, a_t),   a_t = π(s_t, ξ_t; θ),   s_{t+1} = f(s_t, a_t) + ζ_t,   s_0 real.

At the current θ the replay *is* the real episode, so "errors don't
accumulate: the model is used to backprop gradients, not to simulate
experience". Here: after each real episode, refit ``f``; infer ζ and ξ of the
``recent_episodes`` most recent real episodes once, at the policy that
collected the newest one, and freeze them; then ``grad_steps`` Adam steps on
∇θ J of the replays.

What the defaults (= the Pendulum-v1 preset) add to that, each optional, and why
(benchmarks/sections/60_model_based.md has the runs):

- ``segment_length``/``num_segments``: each Adam step replays 64 windows of 50
  recorded steps starting at random recorded states, with their inferred noises
  (ten 200-step episodes from ten start states are too few to fit a swing-up).
- ``random_episodes = 1``: a uniform warm-up episode, which trains the model and is
  replayed like the others (without it, or replaying only the policy's own episodes,
  the first updates see almost no action variety).
- ``policy_noise_clip = 3``: the inferred ξ are clipped to [−3, 3]. The uniform
  warm-up episode's actions are far off the policy (ξ = (atanh(a/2) − μ)/σ reaches
  ±36 at σ = 0.2), and a recorded action the float32 squash saturated infers
  |ξ| beyond the policy's range: unclipped, those replays put the action in
  the flat part of tanh whatever μ does, the gradient pushes μ into saturation
  and the policy does not learn (seed 0 after 600 steps, otherwise the preset without
  the mean penalty: exact ξ, mean pre-squash |μ| 12.6, eval −1191; ξ clipped: −201;
  ξ set to zero: −199; ζ made no difference). For |ξ| > 3 the replayed action then differs from the
  recorded one (the model with ζ carries the difference); own-policy noises
  are N(0, 1) and almost never clipped.
- ``learn_std = False``: a fixed exploration std (log σ = −1.6, σ ≈ 0.2 before the
  squash; learned, σ shrank to e^−2.4 on seed 1 and two of the ten evaluation starts
  were never swung up: best −229).
- ``mean_penalty = 0.01``: 0.01‖μ(s)‖² subtracted from each replayed reward keeps the
  pre-squash mean out of saturation (without it seed 1's largest |μ| on the recorded
  states reaches 12.7 and it peaks at −209; with it 5.4, every evaluation start is swung
  up and it passes −200 at 800 steps).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from pathwise.algorithms.model_based import (ModelBasedConfig, ModelBasedLearner, ModelBasedState,
                                             adam_step_if_finite, fixed_bounds, learned_system, make_optimizer)
from pathwise.distributions import GaussianPolicy
from pathwise.models import model_noise, policy_noise
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, PyTree, Transition


@dataclasses.dataclass(frozen=True)
class SVGInfConfig(ModelBasedConfig):
    """SVG(∞) options (defaults for Pendulum-v1)."""

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
    sees the same action gradient and keeps pushing the policy the same way (on Pendulum-v1 its pre-squash
    mean ran to |μ| > 10 within two episodes); frozen noises make the replay move with θ.
    """


def replayed_return(policy: GaussianPolicy, system: System, episode: Transition, length: Array,
                    gamma: float, truncate_every: int = 0, noises: tuple[Array, Array] | None = None,
                    mean_penalty: float = 0.0) -> Array:
    """SVG(∞): J(θ) = Σ_{t<length} γ^t r(s_t, π(s_t, ξ_t; θ)), s_{t+1} = f(s_t, a_t) + ζ_t, noises inferred and frozen.

    ``episode`` is zero-padded past ``length``; the padded rows repeat the last real transition and
    the replay restarts (without gradient) from the recorded observation there, so every value in
    the graph stays a finite function of real data (zero weight times a NaN derivative at a padded
    all-zero observation would still be NaN).

    ``noises``: ``(ζ [T, d], ξ [T, m])`` inferred earlier (e.g. at the policy before an update, see
    ``infer_episode_noise``); by default they are inferred here, at ``policy``.

    ``mean_penalty`` λ > 0 subtracts λ‖μ(s_t)‖² (the policy's pre-squash mean) from every replayed reward.
    """
    T = episode.obs.shape[0]
    steps = jnp.arange(T)
    valid = steps < length
    rows = jnp.minimum(steps, jnp.maximum(length - 1, 0))
    obs, actions, next_obs = episode.obs[rows], episode.action[rows], episode.next_obs[rows]
    if noises is None:
        zetas = model_noise(system, obs, actions, next_obs)
        xis = policy_noise(policy, obs, actions)
    else:
        zetas, xis = noises[0][rows], noises[1][rows]
    zetas, xis = jax.lax.stop_gradient(zetas), jax.lax.stop_gradient(xis)

    def step(state, inputs):
        t, real_obs, zeta, xi, ok = inputs
        cut = ~ok
        if truncate_every > 0:
            cut = cut | ((t > 0) & (t % truncate_every == 0))
        state = jnp.where(cut, jax.lax.stop_gradient(jnp.where(ok, state, real_obs)), state)
        dist = policy(system.observe(state))
        action = dist.sample_from_noise(xi)
        next_state = system.step(state, action, zeta)
        reward = system.reward(state, action, next_state)
        if mean_penalty > 0:
            reward = reward - mean_penalty * jnp.sum(dist.mean ** 2)
        return next_state, reward

    _, rewards = jax.lax.scan(step, episode.obs[0], (steps, obs, zetas, xis, valid))
    return (rewards * valid * gamma ** steps).sum()


def infer_episode_noise(policy: GaussianPolicy, system: System, episode: Transition) -> tuple[Array, Array]:
    """``(ζ, ξ)`` for every recorded row of ``episode`` (padded rows give finite junk, never used)."""
    return (jax.lax.stop_gradient(model_noise(system, episode.obs, episode.action, episode.next_obs)),
            jax.lax.stop_gradient(policy_noise(policy, episode.obs, episode.action)))


def sample_segments(episodes: PyTree, lengths: Array, filled: Array, key: PRNGKey, num: int, horizon: int
                    ) -> tuple[Transition, Array]:
    """``num`` windows of ``horizon`` recorded steps (of every ``[E, T, ...]`` leaf of ``episodes``): episode uniform among the ``filled`` slots, start uniform
    in ``[0, length)``; returns the windows ``[num, horizon]`` and their real lengths (cut at the episode end)."""
    k_ep, k_t = jax.random.split(key)
    ep = jax.random.categorical(k_ep, jnp.where(filled, 0.0, -jnp.inf), shape=(num,))
    n = lengths[ep]
    start = jax.random.randint(k_t, (num,), 0, jnp.maximum(n, 1))
    rows = jnp.minimum(start[:, None] + jnp.arange(horizon), jax.tree.leaves(episodes)[0].shape[1] - 1)
    windows = jax.tree.map(lambda x: x[ep[:, None], rows], episodes)
    return windows, jnp.clip(n - start, 0, horizon)


class SVGInf(ModelBasedLearner):
    """SVG(∞) on a Gymnasium env whose reward is known (see the module docstring)."""

    name = "svg-inf"
    Config = SVGInfConfig

    def __init__(self, env_id: str, config: SVGInfConfig | None = None, seed: int = 0):
        super().__init__(env_id, config, seed)
        self.traces = 0  # how often the policy update was traced (tests: compile once)
        self._improve = eqx.filter_jit(self._policy_steps)

    def make_policy(self, key: PRNGKey) -> eqx.Module:
        return GaussianPolicy(self.obs_dim, self.action_dim, self.config.hidden, key=key, low=self.low,
                              high=self.high, init_log_std=self.config.init_log_std)

    def mode_action(self, policy: eqx.Module, obs: Array) -> Array:
        return policy(obs).mode()

    def behaviour_action(self, policy: eqx.Module, obs: Array, key: PRNGKey) -> Array:
        return policy(obs).sample(key)

    def _policy_steps(self, state: ModelBasedState, key: PRNGKey):
        # deterministic given the stored episodes, unless segments are drawn (from ``key``)
        self.traces += 1
        cfg = self.config
        system = learned_system(state.model, self.reward_fn, self.low, self.high, self.limit)
        episodes, lengths = state.recent.storage
        slots = jnp.arange(state.recent.capacity) < state.recent.size
        # empty slots replay a copy of slot 0 (always filled by now) at zero weight: no all-zero observations
        episodes = jax.tree.map(lambda x: jnp.where(slots.reshape(-1, *([1] * (x.ndim - 1))), x, x[:1]), episodes)
        lengths = jnp.where(slots, lengths, lengths[0])
        optimizer = make_optimizer(cfg)
        noises = None if cfg.reinfer_noise else jax.vmap(lambda ep: infer_episode_noise(state.policy, system, ep)
                                                         )(episodes)
        if noises is not None and cfg.policy_noise_clip > 0:
            noises = (noises[0], jnp.clip(noises[1], -cfg.policy_noise_clip, cfg.policy_noise_clip))

        def replay(policy, ep, n, nz):
            return replayed_return(policy, system, ep, n, cfg.gamma, cfg.truncate_every, nz, cfg.mean_penalty)

        def replays(k):
            """What one Adam step replays: ``(episodes, lengths, noises)`` batched, and their weights (sum 1)."""
            if cfg.segment_length > 0:
                (windows, nz), n = sample_segments((episodes, noises), lengths, slots, k, cfg.num_segments,
                                                   cfg.segment_length)
                return (windows, n, nz), jnp.full(cfg.num_segments, 1.0 / cfg.num_segments)
            return (episodes, lengths, noises), slots / jnp.maximum(slots.sum(), 1)

        def objective(policy, k):
            (eps, n, nz), weights = replays(k)
            return (jax.vmap(lambda ep, m, z: replay(policy, ep, m, z))(eps, n, nz) * weights).sum()

        def step(carry, k):
            policy, opt_state, skipped = carry
            value, grads = eqx.filter_value_and_grad(objective)(policy, k)
            grads = fixed_bounds(jax.tree.map(jnp.negative, grads))  # ascend J; the action box never moves
            if not cfg.learn_std and grads.log_std is not None:
                grads = eqx.tree_at(lambda g: g.log_std, grads, jnp.zeros_like(grads.log_std))
            policy, opt_state, skip = adam_step_if_finite(policy, grads, opt_state, optimizer)
            return (policy, opt_state, skipped + skip), (value, optax.tree.norm(grads))

        (policy, opt_state, skipped), (values, norms) = jax.lax.scan(
            step, (state.policy, state.opt_state, state.skipped_updates), jax.random.split(key, cfg.grad_steps))
        metrics = {"replayed_return": values[0], "replayed_return_after": values[-1], "grad_norm": norms.mean()}
        return state._replace(policy=policy, opt_state=opt_state, skipped_updates=skipped), metrics

    def improve(self, state: ModelBasedState, key: PRNGKey):
        return self._improve(state, key)
