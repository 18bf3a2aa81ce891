"""SVG(k): k steps through the dynamics, then a learned value (the short-horizon actor-critic).

Lecture, "Stochastic Value Gradients": the policy gradient is the pathwise derivative of

    J_k(theta) = E[ sum_{t<k} gamma^t r_t + gamma^k V(s_k) ],   a_t = pi(s_t, xi_t; theta),
    s_{t+1} = f(s_t, a_t) + zeta_t,

(``svg_core.value_gradient_objective``), and V is learned by TD(lambda) on the same k-step segments with a
target network (``svg_core.lambda_returns``). Two sources of dynamics, one ``update`` that tells them
apart by what the loop delivers:

* **true System** (the simulated loop, :mod:`pathwise.loops.simulated`: a ``pathwise/...`` id, or
  ``use_true_dynamics=True``): the SHAC scheme (Xu et al. 2022). ``n_envs`` parallel simulations are
  carried across updates in the ``State``; each update rolls them k steps through the differentiable
  simulator, takes one actor step on ``-J_k`` and fits V on the segments. A simulation is restarted after
  ``episode_length`` steps or a terminal state. ``env_steps`` counts simulated steps.
* **learned model** (the model-based loop, :mod:`pathwise.loops.model_based`: a black-box Gymnasium env
  with a known reward): after the loop's real episodes and model refit, ``updates_per_episode``
  actor-critic steps, each imagining k steps of the frozen model from ``n_envs`` real observations drawn
  from D. Where the environment's termination is known (its registry record, e.g. MuJoCo
  InvertedPendulum), the imagined rollouts stop there too. ``env_steps`` counts real steps. With
  ``value_bound`` (the default) V's TD(lambda) targets and the bootstrap ``V(s_k)`` of ``J_k`` are clipped to
  the discounted-return range ``reward_scale * [min r, max r] / (1 - gamma)`` of the rewards seen
  (``svg_core.value_bounds``): those of D and, as soon as they are imagined, those of the imagined rollouts
  (an optimism bonus or a goal reached only in the model widens the range; where an episode ends, real or
  imagined, the range holds 0, the value after the end): without it the value could diverge
  (on Pendulum-v1 seed 9 to V ~ +600 on average over D's states, with every reward <= 0), the actor chasing the
  overestimate through the model.

k = 1 is SVG(1) on imagined transitions and k = episode length with V = 0 is BPTT.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from pathwise import optim, replay
from pathwise.algorithms.base import ActorDecayOptions, AlgorithmInfo, CommonConfig
from pathwise.algorithms.svg_core import (Segment, bounded, lambda_returns, segment_targets, v_bootstrap, value_bounds,
                                          value_gradient_objective, value_loss)
from pathwise.config import at_least, positive, unit_interval
from pathwise.distributions import LOG_STD_MAX, LOG_STD_MIN, GaussianPolicy
from pathwise.loops import summarize
from pathwise.loops.model_based import ModelData, ModelOptions, mirror_half
from pathwise.loops.simulated import SimulatedOptions
from pathwise.networks import VCritic, soft_update
from pathwise.spec import EnvSpec
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, PyTree

INFO = AlgorithmInfo("svgk", loops=("simulated", "model_based"),
                     summary="SVG(k): k steps through true or learned dynamics closed by a learned value (SHAC).",
                     learned_model_only=("start_noise", "mirror", "noise_color", "joint_limits", "real_value"))


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig, SimulatedOptions, ModelOptions, ActorDecayOptions):
    """SVG(k) options; defaults tuned for Pendulum-v1 (the model-fitting ones are used only on a learned model)."""

    RENAMED: ClassVar[dict[str, str]] = {"learning_rate": "actor_lr"}  # before 0.3
    #: before 0.3: unbounded, no penalty; start_noise since 2026-12-06, real_value since 2026-12-07 (none before)
    ADDED: ClassVar[dict[str, Any]] = {"value_bound": False, "mean_penalty": 0.0, "start_noise": (),
                                       "real_value": False}

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy (a tanh-squashed Gaussian)."""
    critic_hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the value network V(s)."""
    horizon: int = 32
    """k: steps through the dynamics before the learned value closes the objective."""
    n_envs: int = 64
    """Parallel simulations (true System) or imagined rollouts per update (learned model)."""
    gamma: float = 0.99
    """Discount factor."""
    lam: float = 0.95
    """lambda of the TD(lambda) value targets (0: one-step TD, 1: k-step return + bootstrap)."""
    actor_lr: float = 2e-3
    """Adam learning rate of the policy."""
    critic_lr: float = 2e-3
    """Adam learning rate of the value network."""
    max_grad_norm: float = 1.0
    """Global norm clip of the actor's and the critic's gradients."""
    critic_iterations: int = 8
    """Passes over each update's segments when fitting V."""
    critic_minibatches: int = 4
    """Minibatches per pass when fitting V."""
    target_tau: float = 0.2
    """Polyak rate of the target value: target <- (1 - tau) target + tau V, once per update."""
    init_log_std: float = -1.0
    """Initial log standard deviation of the policy's pre-squash Gaussian (state independent, learned)."""
    log_std_min: float = LOG_STD_MIN
    """Lower clip of the policy's log standard deviation. The pathwise objective has no entropy term, so σ shrinks
    as the policy improves; a floor keeps the imagined rollouts (and the real episodes' actions) spread around
    the mean, which smooths the objective the policy climbs. Evaluation acts on the mean either way."""
    reward_scale: float = 0.1
    """Rewards are multiplied by this inside the objective and the value targets (metrics are unscaled)."""
    updates_per_iteration: int = 10
    """SHAC updates per iteration on the true System (one lax.scan in one jitted call)."""
    updates_per_episode: int = 50
    """Updates per model-based iteration on a learned model (each from ``n_envs`` real observations of D)."""
    use_true_dynamics: bool = False
    """Differentiate through the pathwise System of the env id (SHAC) even if the id is a Gymnasium one."""
    mean_penalty: float = 0.0
    """λ of a penalty λ · mean μ(s)² on the policy's pre-squash mean at the update's start states, added to the
    actor loss (0: none). A tanh-squashed mean pushed far past ±1 has no gradient left and its samples sit on the
    action bound; the penalty keeps a gradient that pulls it back (MountainCarContinuous-v0's preset). svg-inf's
    ``mean_penalty`` is the same penalty taken along its replayed steps rather than at the start states."""
    start_noise: tuple[float, ...] = ()
    """Learned model only: per observation entry, the standard deviation of Gaussian noise added to each imagined
    rollout's start state (drawn from D) before it is rolled; () or zeros: the replayed states as they are. Where
    entries hold a goal relative to the agent (reacher-easy's ``to_target`` = target - fingertip, entries 2 and 3),
    noise there moves the goal: the model imagines reaching targets that no real episode had (the real data holds
    one target per episode), as hindsight relabelling does for the replay. Length: the observation's. Refused in
    the simulated loop (its rollouts start from the carried simulations)."""
    value_bound: bool = True
    """Learned model only: clip V's TD(lambda) targets and the bootstrap V(s_k) of J_k to the discounted-return
    range reward_scale * [min r, max r] / (1 - gamma) of the rewards in D and of those imagined so far in this
    improvement step (0 among them where an episode can end); False: unclipped, as in 0.2."""
    real_value: bool = False
    """Learned model only: also fit V on the TD(lambda) targets of the recent real episodes (``recent_episodes``:
    their rewards, the target V where an episode was cut), as many rows per update as the imagined segments give
    (drawn uniformly from the episodes' steps). Fitted on imagined targets alone, V learns what the model
    promises: where the model is wrong about a state (reacher-easy's wrist folded against its limit), V can stay
    high there while every real episode that reached it scored 0, and the policy climbs V into it."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + positive(self, "horizon", "n_envs", "actor_lr", "critic_lr",
                                           "critic_iterations", "critic_minibatches", "updates_per_episode") + \
            unit_interval(self, "gamma", "target_tau") + unit_interval(self, "lam", closed_low=True) + \
            at_least(self, 0, "max_grad_norm", "mean_penalty") + \
            [(all(x >= 0 for x in self.start_noise), f"start_noise={self.start_noise} must hold standard deviations "
                                                      "(>= 0), one per observation entry")] + \
            [(self.log_std_min < LOG_STD_MAX, f"log_std_min={self.log_std_min} must be below the policy's log_std_max "
                                              f"{LOG_STD_MAX}; e.g. -2.3 (σ ≥ 0.1)"),
             ((self.n_envs * self.horizon) % max(self.critic_minibatches, 1) == 0,
              f"n_envs * horizon = {self.n_envs * self.horizon} must be divisible by "
              f"critic_minibatches={self.critic_minibatches}")]


class State(NamedTuple):
    """Everything SVG(k) learns, and the simulations SHAC carries (None where the environment has no System)."""

    policy: GaussianPolicy
    value: VCritic
    target_value: VCritic
    actor_opt: PyTree
    critic_opt: PyTree
    sim_states: Array | None  # [n_envs, state_dim], carried across SHAC updates
    sim_time: Array | None  # [n_envs] steps since each simulation's reset


def actor_optimizer(config: Config) -> optax.GradientTransformation:
    """The policy's optimizer: Adam at ``actor_lr``, gradients clipped to global norm ``max_grad_norm`` (if > 0),
    the step decayed over ``actor_lr_decay_steps`` updates where that is > 0."""
    return config.actor_optimizer(config.max_grad_norm)


def critic_optimizer(config: Config) -> optax.GradientTransformation:
    """The value's optimizer: Adam at ``critic_lr``, gradients clipped to global norm ``max_grad_norm`` (if > 0)."""
    return optim.adam(config.critic_lr, config.max_grad_norm)


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """Fresh policy (tanh-Gaussian, state-independent std), value (target = online), Adam states, and where the
    environment has a System, ``n_envs`` reset simulations (what the simulated loop carries)."""
    if config.start_noise and len(config.start_noise) != spec.obs_dim:
        raise ValueError(f"svgk's start_noise holds {len(config.start_noise)} standard deviations, but {spec.env_id!r} "
                         f"observes {spec.obs_dim} entries: give one per entry (0 where none), e.g. start_noise="
                         f"{list((0.0,) * spec.obs_dim)}.")
    if config.use_true_dynamics and spec.system is None:
        raise ValueError(f"svgk with use_true_dynamics needs a pathwise System, but {spec.env_id!r} has none. Drop "
                         "use_true_dynamics to learn a model of the Gymnasium env instead.")
    k_pi, k_v, k_reset = jax.random.split(key, 3)
    angles = spec.angle_entries(config.angle_features)
    policy = GaussianPolicy(spec.obs_dim, spec.action_dim, config.hidden, key=k_pi, low=spec.action_low,
                            high=spec.action_high, init_log_std=config.init_log_std, angles=angles,
                            log_std_min=config.log_std_min)
    value = VCritic(spec.obs_dim, config.critic_hidden, key=k_v, act="elu", angles=angles)
    sims = time = None
    if spec.system is not None:
        sims = jax.vmap(spec.system.reset)(jax.random.split(k_reset, config.n_envs))
        time = jnp.zeros(config.n_envs, jnp.int32)
    return State(policy, value, value, optim.init(actor_optimizer(config), policy),
                 optim.init(critic_optimizer(config), value), sims, time)


def actor_loss(policy: GaussianPolicy, value: VCritic, system: System, states: Array, xis: Array,
               zetas: Array, gamma: float, reward_scale: float = 1.0, member_keys: Array | None = None,
               bounds: Array | None = None, mean_penalty: float = 0.0):
    """``-mean_i J_k(s_0^i) / k`` (lecture, SVG(k)); returns the segments for the critic as auxiliary data.

    With ``member_keys`` (one per start state) rollout i runs through ``system.sample(member_keys[i])``: with an
    ensemble's trajectory sampling every imagined rollout follows its own member. With ``bounds`` ``[lo, hi]``
    the bootstrap ``V(s_k)`` is clipped to them (``svg_core.bounded``). ``mean_penalty`` λ adds λ · mean μ(s_0)²,
    the squared pre-squash mean of the policy at the start states.
    """
    bootstrap = bounded(v_bootstrap(value), bounds)

    def one(s, x, z, k):
        rollout_system = system if k is None else system.sample(k)
        return value_gradient_objective(rollout_system, policy.act, bootstrap, s, x, z, gamma, reward_scale)

    if member_keys is None:
        segments = jax.vmap(lambda s, x, z: one(s, x, z, None))(states, xis, zetas)
    else:
        segments = jax.vmap(one)(states, xis, zetas, member_keys)
    loss = -jnp.mean(segments.objective) / zetas.shape[1]
    if mean_penalty > 0:
        means = jax.vmap(lambda s: policy.mean_and_log_std(system.observe(s))[0])(states)
        loss = loss + mean_penalty * jnp.mean(means ** 2)
    return loss, segments


def fit_value(value: VCritic, opt_state: PyTree, observations: Array, targets: Array, weights: Array,
              key: PRNGKey, config: Config) -> tuple[VCritic, PyTree, Array]:
    """``critic_iterations`` shuffled passes of ``critic_minibatches`` Adam steps on ``value_loss``."""
    obs = observations.reshape(-1, observations.shape[-1])
    tgt, w = targets.reshape(-1), weights.reshape(-1)

    def minibatch(carry, idx):
        value, opt_state = carry
        loss, grads = eqx.filter_value_and_grad(value_loss)(value, obs[idx], tgt[idx], w[idx])
        return optim.apply(value, grads, opt_state, critic_optimizer(config)), loss

    def epoch(carry, k):
        perm = jax.random.permutation(k, obs.shape[0]).reshape(config.critic_minibatches, -1)
        return jax.lax.scan(minibatch, carry, perm)

    (value, opt_state), losses = jax.lax.scan(epoch, (value, opt_state),
                                              jax.random.split(key, config.critic_iterations))
    return value, opt_state, losses.mean()


def actor_critic_step(state: State, system: System, starts: Array, key: PRNGKey, config: Config,
                      member_keys: Array | None = None, bounds: Array | None = None,
                      real: tuple[Array, Array, Array] | None = None):
    """From ``starts`` roll k steps (rollout i through ``system.sample(member_keys[i])`` where given); one actor step
    on ``-J_k``; fit V to the segments' TD(lambda) targets (and to ``real``'s ``(observations, targets, weights)``
    rows where given, :func:`real_targets`). With ``bounds`` ``[lo, hi]`` the bootstrap is clipped to them, and the
    targets to them widened by the range of this step's imagined rewards (``imagined_bounds``).

    Returns the new state (its simulations untouched), the (gradient-free) segments and metrics.
    """
    k_xi, k_zeta, k_critic = jax.random.split(key, 3)
    n, k = starts.shape[0], config.horizon
    xis = jax.random.normal(k_xi, (n, k + 1, state.policy.action_dim))
    zetas = system.sample_noise(k_zeta, (n, k))
    (loss, segments), grads = eqx.filter_value_and_grad(actor_loss, has_aux=True)(
        state.policy, state.value, system, starts, xis, zetas, config.gamma, config.reward_scale, member_keys,
        bounds, config.mean_penalty)
    policy, actor_opt = optim.apply(state.policy, grads, state.actor_opt, actor_optimizer(config))
    segments = jax.lax.stop_gradient(segments)
    targets = jax.vmap(lambda seg: segment_targets(state.target_value, seg, config.gamma, config.lam))(segments)
    observations, weights = segments.observations, segments.alive
    if real is not None:
        observations = jnp.concatenate([observations.reshape(-1, observations.shape[-1]), real[0]])
        targets = jnp.concatenate([targets.reshape(-1), real[1]])
        weights = jnp.concatenate([weights.reshape(-1), real[2]])
    clipped = jnp.zeros(())
    if bounds is not None:
        bounds = widest(bounds, imagined_bounds(segments, config.gamma))
        clipped = jnp.mean((targets < bounds[0]) | (targets > bounds[1]))
        targets = jnp.clip(targets, bounds[0], bounds[1])
    value, critic_opt, v_loss = fit_value(state.value, state.critic_opt, observations, targets, weights, k_critic,
                                          config)
    state = state._replace(policy=policy, value=value, target_value=soft_update(state.target_value, value,
                                                                                config.target_tau),
                           actor_opt=actor_opt, critic_opt=critic_opt)
    metrics = {"actor_loss": loss, "value_loss": v_loss,
               "imagined_reward": segments.rewards.mean() / config.reward_scale,
               "policy_std": jnp.exp(policy.log_std).mean(), "skipped_total": optim.skipped(actor_opt),
               "critic_skipped_total": optim.skipped(critic_opt),
               "targets_clipped": clipped}
    return state, segments, metrics


def real_targets(target_value: VCritic, recent: replay.ReplayBuffer, key: PRNGKey, rows: int, config: Config
                 ) -> tuple[Array, Array, Array]:
    """``rows`` steps drawn uniformly from the recent real episodes (padded ``[E, T]``, ``recent_episodes``), with
    their TD(lambda) targets ``G_t = r_t + gamma c_{t+1} [(1 - lambda) V'(s_{t+1}) + lambda G_{t+1}]`` on the real
    (scaled) rewards under the target value V', an episode's last step closed by ``r + gamma c V'(s_T)`` (c = 0 where
    it terminated): ``(observations [rows, d], targets [rows], weights [rows])``, weight 0 on padding and on slots
    no episode has filled yet."""
    episodes, lengths = recent.storage
    n_episodes, steps = episodes.reward.shape
    t = jnp.arange(steps)
    past = t[None] >= lengths[:, None]
    alive = ~past & (jnp.arange(n_episodes) < recent.size)[:, None]
    next_values = jax.vmap(jax.vmap(target_value))(episodes.next_obs)
    cut = jnp.take_along_axis(next_values, jnp.clip(lengths - 1, 0, steps - 1)[:, None], axis=1)
    # past the end every "reward" is V'(s_T) with no continuation, so G_t = V'(s_T) there and the last step's
    # target is r + gamma c V'(s_T) whatever lambda is
    rewards = jnp.where(past, cut, episodes.reward * config.reward_scale)
    continues = jnp.where(past, 0.0, 1.0 - episodes.terminated.astype(rewards.dtype))
    returns = jax.vmap(lambda r, v, c: lambda_returns(r, v, c, config.gamma, config.lam))(rewards, next_values,
                                                                                          continues)
    idx = jax.random.randint(key, (rows,), 0, n_episodes * steps)

    def drawn(x: Array) -> Array:
        return x.reshape((n_episodes * steps,) + x.shape[2:])[idx]

    return drawn(episodes.obs), jax.lax.stop_gradient(drawn(returns)), drawn(alive).astype(returns.dtype)


def imagined_bounds(segments: Segment, gamma: float) -> Array:
    """``svg_core.value_bounds`` of the segments' (already scaled) rewards, the zeros after a termination included
    (past a terminal state every later reward is 0)."""
    return value_bounds(segments.rewards, jnp.ones(segments.rewards.shape, bool), gamma)


def data_bounds(buffer: replay.ReplayBuffer, config: Config) -> Array:
    """``svg_core.value_bounds`` of D's rewards (scaled), widened to 0 where a transition of D terminated (the value
    after it is 0)."""
    valid = jnp.arange(buffer.capacity) < buffer.size
    bounds = value_bounds(buffer.storage.reward, valid, config.gamma, config.reward_scale)
    ends = jnp.any(valid & buffer.storage.terminated)
    return jnp.where(ends, widest(bounds, jnp.zeros(2, bounds.dtype)), bounds)


def widest(a: Array, b: Array) -> Array:
    """The smallest range ``[lo, hi]`` holding both ranges."""
    return jnp.stack([jnp.minimum(a[0], b[0]), jnp.maximum(a[1], b[1])])


def restart_finished(system: System, states: Array, time: Array, continues: Array, key: PRNGKey,
                     limit: int) -> tuple[Array, Array]:
    """Reset the simulations that reached a terminal state or the episode limit."""
    fresh = jax.vmap(system.reset)(jax.random.split(key, states.shape[0]))
    done = (time >= limit) | (continues <= 0.0)
    return jnp.where(done[:, None], fresh, states), jnp.where(done, 0, time)


def shac_update(state: State, system: System, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """SHAC: an actor-critic step from the carried simulations, which then continue from where they stopped."""
    k_step, k_reset = jax.random.split(key)
    state, segments, metrics = actor_critic_step(state, system, state.sim_states, k_step, config)
    sims, time = restart_finished(system, segments.final_state, state.sim_time + config.horizon,
                                  segments.final_continue, k_reset, system.episode_length)
    return state._replace(sim_states=sims, sim_time=time), metrics


def model_update(state: State, data: ModelData, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """``updates_per_episode`` actor-critic steps, each imagining k steps of the frozen model from real states
    (with an ensemble's trajectory sampling, each imagined rollout follows its own sampled member; with
    ``value_bound``, V and its bootstrap clipped to the range of the rewards of D and of the imagined ones so far;
    with ``real_value``, V also fitted on the recent real episodes' targets)."""
    seen = data_bounds(data.buffer, config)

    def body(carry, k):
        state, bounds = carry
        k_start, k_step = jax.random.split(k)
        starts = mirror_half(replay.sample(data.buffer, k_start, config.n_envs).obs, jax.random.fold_in(k, 3), config)
        starts = perturbed(starts, jax.random.fold_in(k, 2), config)
        member_keys = jax.random.split(jax.random.fold_in(k, 1), config.n_envs)
        real = real_targets(state.target_value, data.recent, jax.random.fold_in(k, 4), config.n_envs * config.horizon,
                            config) if config.real_value else None
        state, segments, metrics = actor_critic_step(state, data.system, starts, k_step, config, member_keys,
                                                     bounds if config.value_bound else None, real)
        return (state, widest(bounds, imagined_bounds(segments, config.gamma))), metrics

    (state, _), metrics = jax.lax.scan(body, (state, seen), jax.random.split(key, config.updates_per_episode))
    return state, summarize(metrics)


def perturbed(starts: Array, key: PRNGKey, config: Config) -> Array:
    """The imagined rollouts' start states: ``starts`` plus N(0, ``start_noise``²) per entry (unchanged without it)."""
    if not any(config.start_noise):
        return starts
    return starts + jnp.asarray(config.start_noise, starts.dtype) * jax.random.normal(key, starts.shape, starts.dtype)


def update(state: State, data: System | ModelData, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """One SHAC update through the true System (simulated loop), or one model-based improvement step on
    ``ModelData`` (model-based loop); the branch is static, on the type of ``data``."""
    if isinstance(data, ModelData):
        return model_update(state, data, key, config)
    return shac_update(state, data, key, config)


def steps_per_update(spec: EnvSpec, config: Config) -> int:
    """Simulated system steps one SHAC update consumes (``n_envs`` simulations, k steps each)."""
    del spec
    return config.n_envs * config.horizon


def planning_value(state: State, obs: Array, config: Config) -> Array:
    """V(o) in the environment's reward units (V is learned on rewards times ``reward_scale``): the value that closes
    the acting planner's returns (``act_planner``)."""
    return state.value(obs) / config.reward_scale


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """The squashed mean ``box(tanh(μ(s)))`` for evaluation, or a sample of the policy."""
    dist = state.policy(obs)
    return dist.mode() if deterministic else dist.sample(key)


def act_from_noise(state: State, obs: Array, noise: Array) -> Array:
    """The policy's sample for given standard-normal noise ``ξ`` (shape ``(action_dim,)``): ``box(tanh(μ + σ ξ))``
    (the model-based loop's real episodes with ``noise_color`` > 0 pass time-correlated ξ)."""
    return state.policy.act(obs, noise)


__all__ = ["Config", "INFO", "State", "act_from_noise", "actor_critic_step", "actor_loss", "actor_optimizer",
           "critic_optimizer", "data_bounds", "fit_value", "imagined_bounds", "init", "model_update", "perturbed",
           "planning_value", "real_targets", "restart_finished", "shac_update", "steps_per_update", "update",
           "widest"]
