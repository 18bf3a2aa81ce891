"""SVG(1) with experience replay (lecture, "SVG(1)"; Heess et al. 2015, algorithm SVG(1)-ER).

Learn a value ``V ≈ V^{pi, gamma}`` and a dynamics model ``s' = f(s, a) + zeta``. For a replayed transition
``(s, a, r, s')`` infer the noises that reproduce it at the current parameters,

    zeta = s' - f(s, a),        xi = pi^{-1}(s, a; theta)   (the policy is an invertible tanh-Gaussian),

and follow the pathwise gradient of the one-step value-gradient objective (``svg_core`` with k = 1)

    J_1(theta) = r(s, a_theta) + gamma (1 - terminated) V(f(s, a_theta) + zeta),   a_theta = pi(s, xi; theta),

with the known reward ``r`` (``pathwise.rewards``). Replayed data come from older policies mu, so the actor
and the critic losses are importance weighted with truncated, self-normalized weights
``w = min(pi_theta(a|s) / mu(a|s), w_max)`` (mu's log-density is stored with each transition):

    actor:  L(theta) = - sum_b w_b J_1(s_b) / sum_b w_b
    critic: L(phi)   = sum_b w_b (V_phi(s_b) - y_b)^2 / sum_b w_b,   y = r + gamma (1 - terminated) V'(s')
    model:  L(psi)   = mean_b ||f_psi(s_b, a_b) - s'_b||^2   (in normalized Δs units; ``pathwise.models``)

Each update takes one model, one critic and one actor step on the same replayed minibatch. The model's
input/output normalizers are fitted once, on the warm-up data, so later data do not move its coordinates.
The interaction loop (one episode per ``train_iteration``, updates in one jitted call) is the one DDPG uses.

Additions to the paper's algorithm (all options; the Pendulum-v1 preset uses the first two):

* ``critic_target="model"``: the critic's TD(0) target takes the *current* policy's action through one model
  step with the replayed transition's inferred noise,

      y = r(s, a) + gamma (1 - d) V'(f(s, a) + zeta),   a = pi(s, xi'; theta), xi' ~ N(0, I),   zeta = s' - f(s, a_old),

  so V learns ``V^pi`` from every replayed state without importance weights (the action is on-policy; at
  ``xi' = pi^{-1}(s, a_old)`` it is the replay target). With the policy std at its floor the truncated weights
  leave an effective sample size of a few percent of the batch, and the weighted replay target made the
  critic loss grow and the evaluation return swing (-190..-900) on Pendulum. The actor keeps the weights.
* ``updates_per_step`` > 1 (the preset uses 4 updates per environment step).
* ``policy_delay`` (one actor step every d updates) and ``model_pretrain_steps`` (model-only steps on the
  warm-up data before the first update).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from pathwise import replay
from pathwise.algorithms.model_based import fixed_bounds
from pathwise.algorithms.common import OffPolicyConfig, OffPolicyLearner, td_target
from pathwise.algorithms.svg_core import v_bootstrap, value_gradient_objective, value_loss
from pathwise.distributions import GaussianPolicy
from pathwise.models import DynamicsModel, LearnedModel, Normalizer, model_loss
from pathwise.networks import VCritic, soft_update
from pathwise.types import Array, PRNGKey, PyTree, Transition


@dataclasses.dataclass(frozen=True)
class SVG1Config(OffPolicyConfig):
    """SVG(1)-ER options (defaults tuned for Pendulum-v1 within 5,000 environment steps)."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy (a tanh-squashed Gaussian with a learned, state-independent std)."""
    critic_hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the value network V(s)."""
    model_hidden: tuple[int, ...] = (200, 200)
    """Hidden layer sizes of the dynamics model (predicts the normalized change of observation)."""
    model_lr: float = 1e-3
    """Adam learning rate of the dynamics model."""
    actor_lr: float = 1e-3
    """Adam learning rate of the policy."""
    critic_lr: float = 1e-3
    """Adam learning rate of the value network."""
    learning_starts: int = 600
    """Environment steps with uniformly random actions before the first update (also fits the normalizers)."""
    init_log_std: float = -0.5
    """Initial log std of the policy's pre-squash Gaussian."""
    log_std_min: float = -3.0
    """Lower clip of the policy's log std (keeps the importance weights and the exploration finite)."""
    max_weight: float = 5.0
    """Truncation w_max of the importance weights pi_theta(a|s) / mu(a|s)."""
    importance_weights: bool = True
    """Weight replayed transitions by the truncated ratio (False: every transition counts equally)."""
    max_grad_norm: float = 10.0
    """Global-norm clip of every gradient step."""
    policy_delay: int = 1
    """One actor step every ``policy_delay`` updates (model and critic step every update)."""
    model_pretrain_steps: int = 0
    """Model-only Adam steps on the warm-up data when the normalizers are fitted (the model starts untrained)."""
    critic_target: str = "replay"
    """TD(0) target of V: "replay" (r + gamma V'(s') on the recorded transition, importance weighted) or "model"
    (the current policy's action moved one model step with the inferred noise zeta, unweighted)."""


class SVG1Item(NamedTuple):
    """One replayed transition and the behaviour policy's log-density of its action."""

    transition: Transition
    behaviour_log_prob: Array


class SVG1State(NamedTuple):
    """Everything SVG(1) learns or needs to resume."""

    policy: GaussianPolicy
    value: VCritic
    target_value: VCritic
    model: DynamicsModel
    policy_opt: PyTree
    value_opt: PyTree
    model_opt: PyTree
    buffer: replay.ReplayBuffer
    key: PRNGKey
    env_steps: Array


def _optimizer(lr: float, config: SVG1Config) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr))


def _opt_init(module: eqx.Module) -> PyTree:
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1.0)).init(eqx.filter(module, eqx.is_inexact_array))


def _step(module: eqx.Module, grads: eqx.Module, opt_state: PyTree, lr: float, config: SVG1Config):
    updates, opt_state = _optimizer(lr, config).update(grads, opt_state, eqx.filter(module, eqx.is_inexact_array))
    return eqx.apply_updates(module, updates), opt_state


def init(key: PRNGKey, obs_dim: int, action_dim: int, low: Array, high: Array, config: SVG1Config) -> SVG1State:
    """Fresh policy, value (target = online), model, optimizer states and an empty replay buffer."""
    k_pi, k_v, k_m, key = jax.random.split(key, 4)
    policy = GaussianPolicy(obs_dim, action_dim, config.hidden, key=k_pi, low=low, high=high,
                            init_log_std=config.init_log_std, log_std_min=config.log_std_min)
    value = VCritic(obs_dim, config.critic_hidden, key=k_v)
    model = DynamicsModel(obs_dim, action_dim, config.model_hidden, key=k_m)
    example = SVG1Item(Transition(jnp.zeros(obs_dim), jnp.zeros(action_dim), jnp.zeros(()), jnp.zeros(obs_dim),
                                  jnp.zeros((), bool), jnp.zeros((), bool)), jnp.zeros(()))
    return SVG1State(policy, value, value, model, _opt_init(policy), _opt_init(value), _opt_init(model.nets),
                     replay.init(example, config.buffer_size), key, jnp.zeros((), jnp.int32))


# ----------------------------------------------------------------------------- losses


def importance_weights(policy: GaussianPolicy, obs: Array, action: Array, behaviour_log_prob: Array,
                       max_weight: float) -> Array:
    """``w = min(pi_theta(a|s) / mu(a|s), w_max)`` per row, without gradient (SVG(1)-ER's truncated weights)."""
    log_pi = jax.vmap(lambda o, a: policy(o).log_prob(a))(obs, action)
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(log_pi - behaviour_log_prob), max_weight))


def inferred_noise(policy: GaussianPolicy, model: DynamicsModel, batch: Transition) -> tuple[Array, Array]:
    """``xi = pi^{-1}(s, a; theta)`` and ``zeta = s' - f(s, a)``: the noises that replay each transition exactly."""
    xi = jax.vmap(lambda o, a: policy(o).infer_noise(a))(batch.obs, batch.action)
    zeta = batch.next_obs - jax.vmap(model)(batch.obs, batch.action)
    return jax.lax.stop_gradient(xi), jax.lax.stop_gradient(zeta)


def actor_loss(policy: GaussianPolicy, value: VCritic, system: LearnedModel, batch: Transition, weights: Array,
               gamma: float) -> Array:
    """``-sum w J_1 / sum w``, ``J_1 = r(s, pi(s, xi)) + gamma (1 - d) V(f(s, pi(s, xi)) + zeta)`` (lecture, SVG(1))."""
    xi, zeta = inferred_noise(policy, system.model, batch)
    discount = gamma * (1.0 - batch.terminated.astype(jnp.float32))  # (gamma (1 - d))^1 for k = 1

    def j1(obs, x, z, g):
        xis = jnp.stack([x, jnp.zeros_like(x)])  # the second row would pick a bootstrap action; V ignores it
        return value_gradient_objective(system, policy.act, v_bootstrap(value), obs, xis, z[None], g).objective

    objectives = jax.vmap(j1)(batch.obs, xi, zeta, discount)
    return -jnp.sum(weights * objectives) / jnp.maximum(jnp.sum(weights), 1e-6)


def critic_targets(target_value: VCritic, batch: Transition, gamma: float) -> Array:
    """``y = r + gamma (1 - terminated) V'(s')`` (TD(0) on the replayed transition)."""
    return td_target(batch.reward, batch.terminated, jax.vmap(target_value)(batch.next_obs), gamma)


def model_critic_targets(target_value: VCritic, policy: GaussianPolicy, model: DynamicsModel, reward_fn,
                         batch: Transition, xi: Array, gamma: float) -> Array:
    """``y = r(s, a) + gamma (1 - d) V'(f(s, a) + zeta)``, ``a = pi(s, xi; theta)``, ``zeta = s' - f(s, a_old)``.

    The TD(0) target of ``V^pi`` for the *current* policy's action, moved one model step with the replayed
    transition's inferred model noise: the action is on-policy, so it needs no importance weight.
    """
    _, zeta = inferred_noise(policy, model, batch)
    action = jax.vmap(policy.act)(batch.obs, xi)
    next_obs = jax.vmap(model)(batch.obs, action) + zeta
    reward = jax.vmap(reward_fn)(batch.obs, action, next_obs)
    return jax.lax.stop_gradient(td_target(reward, batch.terminated, jax.vmap(target_value)(next_obs), gamma))


# ----------------------------------------------------------------------------- updates


def model_step(state: SVG1State, batch: Transition, config: SVG1Config) -> tuple[SVG1State, Array]:
    """One Adam step of the dynamics network on ``batch`` (the normalizers are data statistics, not parameters)."""
    ones = jnp.ones(batch.reward.shape[0])
    m_loss, m_grads = eqx.filter_value_and_grad(lambda nets: model_loss(
        eqx.tree_at(lambda m: m.nets, state.model, nets), batch.obs, batch.action, batch.next_obs, ones))(
        state.model.nets)
    nets, model_opt = _step(state.model.nets, m_grads, state.model_opt, config.model_lr, config)
    return state._replace(model=eqx.tree_at(lambda m: m.nets, state.model, nets), model_opt=model_opt), m_loss


def update_step(state: SVG1State, key: PRNGKey, reward_fn, config: SVG1Config,
                actor_on: Array = True) -> tuple[SVG1State, dict]:
    """One model, one critic and (if ``actor_on``) one actor step on a replayed minibatch, then a Polyak step of V'."""
    item = replay.sample(state.buffer, key, config.batch_size)
    batch = item.transition
    ones = jnp.ones(config.batch_size)
    state, m_loss = model_step(state, batch, config)
    weights = (importance_weights(state.policy, batch.obs, batch.action, item.behaviour_log_prob, config.max_weight)
               if config.importance_weights else ones)
    if config.critic_target == "model":
        xi = jax.random.normal(jax.random.fold_in(key, 1), batch.action.shape)
        y = model_critic_targets(state.target_value, state.policy, state.model, reward_fn, batch, xi, config.gamma)
        v_weights = ones  # on-policy actions: no correction needed
    else:
        y, v_weights = critic_targets(state.target_value, batch, config.gamma), weights
    v_loss, v_grads = eqx.filter_value_and_grad(value_loss)(state.value, batch.obs, y, v_weights)
    value, value_opt = _step(state.value, v_grads, state.value_opt, config.critic_lr, config)
    system = LearnedModel(jax.lax.stop_gradient(state.model), reward_fn, action_low=state.policy.low,
                          action_high=state.policy.high)

    a_loss, a_grads = eqx.filter_value_and_grad(actor_loss)(state.policy, value, system, batch, weights,
                                                            config.gamma)
    a_grads = fixed_bounds(a_grads)  # the action box is data, not a parameter
    policy, policy_opt = _step(state.policy, a_grads, state.policy_opt, config.actor_lr, config)
    policy, policy_opt = jax.tree.map(lambda new, old: jnp.where(actor_on, new, old), (policy, policy_opt),
                                      (state.policy, state.policy_opt))
    state = state._replace(policy=policy, value=value, policy_opt=policy_opt, value_opt=value_opt,
                           target_value=soft_update(state.target_value, value, config.tau))
    actions = jax.vmap(policy.act)(batch.obs, jnp.zeros_like(batch.action))
    saturation = jnp.mean(jnp.abs(2.0 * (actions - policy.low) / (policy.high - policy.low) - 1.0) > 0.95)
    ess = jnp.sum(weights) ** 2 / jnp.maximum(jnp.sum(weights**2), 1e-12) / config.batch_size
    return state, {"actor_loss": a_loss, "critic_loss": v_loss, "model_loss": m_loss,
                   "weight_mean": weights.mean(), "weight_ess": ess, "policy_std": jnp.exp(policy.log_std).mean(),
                   "saturation": saturation}


def behaviour_log_probs(state: SVG1State, episode: Transition, config: SVG1Config) -> Array:
    """``log mu(a_t|s_t)`` of a freshly collected episode: uniform density during warm-up, else the policy's.

    ``learn`` runs before any update of this iteration, so ``state.policy`` is the policy that acted.
    """
    low, high = state.policy.low, state.policy.high
    uniform = -jnp.sum(jnp.log(high - low))
    log_pi = jax.vmap(lambda o, a: state.policy(o).log_prob(a))(episode.obs, episode.action)
    random_rows = state.env_steps + jnp.arange(episode.obs.shape[0]) < config.learning_starts
    return jnp.where(random_rows, uniform, log_pi)


def masked_normalizer(x: Array, count: Array) -> Normalizer:
    """Mean and std over the first ``count`` rows of ``x`` (the filled part of a replay buffer)."""
    mask = (jnp.arange(x.shape[0]) < count)[:, None].astype(x.dtype)
    n = jnp.maximum(count, 1).astype(x.dtype)
    mean = jnp.sum(mask * x, axis=0) / n
    std = jnp.sqrt(jnp.sum(mask * (x - mean) ** 2, axis=0) / n)
    return Normalizer(mean, jnp.maximum(std, 1e-6))


def fit_normalizers(model: DynamicsModel, buffer: replay.ReplayBuffer) -> DynamicsModel:
    """The model's input (s, a) and output (s' - s) normalizers from the buffer's transitions."""
    t = buffer.storage.transition
    in_norm = masked_normalizer(jnp.concatenate([t.obs, t.action], axis=-1), buffer.size)
    out_norm = masked_normalizer(t.next_obs - t.obs, buffer.size)
    return eqx.tree_at(lambda m: (m.in_norm, m.out_norm), model, (in_norm, out_norm))


TRACE_COUNT = {"learn": 0}  # tests read this to check that a second call does not recompile


@functools.partial(jax.jit, static_argnames=("reward_fn", "config"))
def learn(state: SVG1State, episode: Transition, length: Array, n_updates: Array, key: PRNGKey, reward_fn,
          config: SVG1Config) -> tuple[SVG1State, dict[str, Array]]:
    """Store the episode with its behaviour log-densities, fit the normalizers once, run ``n_updates`` updates."""
    TRACE_COUNT["learn"] += 1
    item = SVG1Item(episode, behaviour_log_probs(state, episode, config))
    buffer = replay.add_batch(state.buffer, item, length)
    first = (state.env_steps < config.learning_starts) & (state.env_steps + length >= config.learning_starts)
    model = jax.tree.map(lambda new, old: jnp.where(first, new, old), fit_normalizers(state.model, buffer),
                         state.model)
    state = state._replace(buffer=buffer, model=model)

    pre_key = jax.random.fold_in(key, 2**31 - 1)  # update i uses fold_in(key, i), i < n_updates

    def pretrain(i, state):  # model-only steps on the warm-up data, once (the model starts from scratch)
        batch = replay.sample(state.buffer, jax.random.fold_in(pre_key, i), config.batch_size).transition
        return model_step(state, batch, config)[0]

    state = jax.lax.fori_loop(0, jnp.where(first, config.model_pretrain_steps, 0), pretrain, state)

    def body(i, carry):
        state, sums = carry
        actor_on = (i % config.policy_delay) == config.policy_delay - 1
        state, metrics = update_step(state, jax.random.fold_in(key, i), reward_fn, config, actor_on)
        return state, jax.tree.map(jnp.add, sums, metrics)

    zeros = {k: jnp.zeros(()) for k in METRICS}
    state, sums = jax.lax.fori_loop(0, n_updates, body, (state, zeros))
    return state, jax.tree.map(lambda x: x / jnp.maximum(n_updates, 1).astype(x.dtype), sums)


METRICS = ("actor_loss", "critic_loss", "model_loss", "weight_mean", "weight_ess", "policy_std", "saturation")


@jax.jit
def _behaviour_action(policy: GaussianPolicy, obs: Array, noise: Array) -> Array:
    return policy.act(obs, noise)


@jax.jit
def _mode_action(policy: GaussianPolicy, obs: Array) -> Array:
    return policy(obs).mode()


class SVG1(OffPolicyLearner):
    """SVG(1)-ER on a Gymnasium env with a known reward and a bounded Box action space (module docstring)."""

    name = "svg1"
    Config = SVG1Config
    needs_reward = True

    def __init__(self, env_id: str, config: SVG1Config | None = None, seed: int = 0):
        from pathwise import rewards

        if not rewards.has(env_id):
            raise ValueError(f"svg1 needs the known reward of {env_id!r} to differentiate r(s, a) and none is "
                             "registered; add one with pathwise.rewards.register(env_id, fn), or use svg0.")
        self.reward_fn = rewards.get(env_id)
        super().__init__(env_id, config, seed)
        if not self.config.log_std_min < math.log(1e3):
            raise ValueError(f"Invalid SVG1 config: log_std_min={self.config.log_std_min} is too large.")
        if self.config.critic_target not in ("replay", "model"):
            raise ValueError(f"Invalid SVG1 config: critic_target={self.config.critic_target!r}; use 'replay' or "
                             "'model'.")
        if self.config.policy_delay < 1 or self.config.model_pretrain_steps < 0:
            raise ValueError(f"Invalid SVG1 config: need policy_delay >= 1 (got {self.config.policy_delay}) and "
                             f"model_pretrain_steps >= 0 (got {self.config.model_pretrain_steps}).")

    @property
    def noise_dim(self) -> int:
        return self.action_dim

    def init_state(self, key: PRNGKey) -> SVG1State:
        return init(key, self.obs_dim, self.action_dim, self.low, self.high, self.config)

    def behaviour_action(self, state: SVG1State, obs: Array, noise: Array) -> Array:
        return _behaviour_action(state.policy, obs, noise)

    def mode_action(self, state: SVG1State, obs: Array) -> Array:
        return _mode_action(state.policy, obs)

    def learn(self, state, episode, length, n_updates, key):
        return learn(state, episode, length, n_updates, key, self.reward_fn, self.config)


__all__ = ["SVG1", "SVG1Config", "SVG1Item", "SVG1State", "actor_loss", "behaviour_log_probs", "critic_targets",
           "importance_weights", "inferred_noise", "init", "learn", "update_step"]
