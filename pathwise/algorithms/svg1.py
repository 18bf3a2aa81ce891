"""SVG(1) with experience replay (lecture, "SVG(1)"; Heess et al. 2015, algorithm SVG(1)-ER).

Learn a value ``V ≈ V^{pi, gamma}`` and a dynamics model ``s' = f(s, a) + zeta``. For a replayed transition
``(s, a, r, s')`` infer the noises that reproduce it at the current parameters (``pathwise.models.noise``),

    zeta = s' - f(s, a),        xi = pi^{-1}(s, a; theta)   (the policy is an invertible tanh-Gaussian),

and follow the pathwise gradient of the one-step value-gradient objective (``svg_core`` with k = 1)

    J_1(theta) = r(s, a_theta) + gamma (1 - terminated) V(f(s, a_theta) + zeta),   a_theta = pi(s, xi; theta),

with the environment's reward ``r``: the registered one, else (or with ``reward_source="learned"``) a head of the
model fitted on the replayed rewards, ``r̂(s, a, s')``; where no termination rule is registered (or with
``termination_source="learned"``) a termination head fitted on the replayed ``terminated`` flags ends the imagined
step where it predicts the episode ends. Replayed data come from older policies mu, so the actor and the
critic losses are importance weighted with truncated, self-normalized weights
``w = min(pi_theta(a|s) / mu(a|s), w_max)`` (mu's log-density is stored with each transition by the replay
loop, through :func:`behaviour_log_prob`):

    actor:  L(theta) = - sum_b w_b J_1(s_b) / sum_b w_b
    critic: L(phi)   = sum_b w_b (V_phi(s_b) - y_b)^2 / sum_b w_b,   y = r + gamma (1 - terminated) V'(s')
    model:  L(psi)   = mean_b ||f_psi(s_b, a_b) - s'_b||^2   (in normalized Δs units; ``pathwise.models``),
            plus the learned heads' losses (squared reward error, termination cross-entropy) where it has them

Each update takes one model, one critic and one actor step on the same replayed minibatch. The model's
input/output normalizers are fitted once, at the first update, on the data collected so far (the warm-up),
so later data do not move its coordinates (the heads' too). The model lives in the state as a
:class:`pathwise.models.LearnedModel`: the dynamics network together with the known reward (a static field) or its
learned head, a ``System`` over observations, so ``update`` needs nothing from the environment's spec.

Additions to the paper's algorithm (all options):

* ``critic_target="model"``: the critic's TD(0) target takes the *current* policy's action through one model
  step with the replayed transition's inferred noise,

      y = r(s, a) + gamma (1 - d) V'(f(s, a) + zeta),   a = pi(s, xi'; theta), xi' ~ N(0, I),   zeta = s' - f(s, a_old),

  so V learns ``V^pi`` from every replayed state without importance weights (the action is on-policy; at
  ``xi' = pi^{-1}(s, a_old)`` it is the replay target). With the policy std at its floor the truncated weights
  leave an effective sample size of a few percent of the batch, which the replay target's weights turn into a
  noisy critic; the actor keeps the weights.
* ``updates_per_step`` > 1 (the replay loop's update-to-data ratio).
* ``policy_delay`` (one actor step every d updates) and ``model_pretrain_steps`` (model-only steps on the
  warm-up data at the first update).
* ``act_with_target``: the deterministic (evaluation) action is the mode of a Polyak average (rate ``tau``) of
  the recent policies, ``acting_policy``, rather than of the latest policy step; exploration samples the latest.
* ``actor_lr_decay_steps``: the policy's Adam step decays (cosine) to ``actor_lr_final_fraction`` of ``actor_lr``
  over that many actor steps, as ddpg's does.
* ``mean_penalty`` λ: the actor's loss adds λ · mean_b ||μ(s_b)||², the policy's pre-squash mean at the replayed
  states, as svgk's and svg-inf's do.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise import optim, replay
from pathwise.algorithms.base import ActorDecayOptions, AlgorithmInfo
from pathwise.algorithms.critics import ActorCriticConfig, td_target
from pathwise.algorithms.svg_core import v_bootstrap, value_gradient_objective, value_loss
from pathwise.config import at_least, one_of, positive
from pathwise.distributions import GaussianPolicy
from pathwise.models import DynamicsModel, LearnedModel, model_loss, model_noise, policy_noise
from pathwise.networks import VCritic, soft_update
from pathwise.spec import EnvSpec
from pathwise.types import Array, PRNGKey, PyTree, Transition

INFO = AlgorithmInfo("svg1", loops=("replay",),
                     summary="SVG(1)-ER: one learned-model step and a learned V, with inferred noise from replay.")


@dataclasses.dataclass(frozen=True)
class Config(ActorCriticConfig, ActorDecayOptions):
    """SVG(1)-ER options (defaults tuned for Pendulum-v1 within 5,000 environment steps)."""

    #: before 0.3 the latest policy acted and the actor had no penalty on its mean
    ADDED: ClassVar[dict[str, Any]] = {"act_with_target": False, "mean_penalty": 0.0}

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
    """Global-norm clip of every gradient step (0: no clipping)."""
    policy_delay: int = 1
    """One actor step every ``policy_delay`` updates (model and critic step every update)."""
    model_pretrain_steps: int = 0
    """Model-only Adam steps on the warm-up data when the normalizers are fitted (the model starts untrained)."""
    critic_target: str = "replay"
    """TD(0) target of V: "replay" (r + gamma V'(s') on the recorded transition, importance weighted) or "model"
    (the current policy's action moved one model step with the inferred noise zeta, unweighted)."""

    act_with_target: bool = False
    """Deterministic actions (evaluation, ``predict``) from a Polyak average (rate ``tau``) of the recent policies
    instead of the latest one; exploration still samples the latest policy."""
    mean_penalty: float = 0.0
    """λ of the actor's penalty λ · mean ||μ(s)||² on the policy's pre-squash mean at the replayed states (0: none),
    as svgk and svg-inf have: it keeps μ out of tanh's saturation, where the action's gradient vanishes."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + positive(self, "model_lr", "max_weight") + \
            at_least(self, 0, "max_grad_norm", "model_pretrain_steps", "mean_penalty") + \
            at_least(self, 1, "policy_delay") + \
            one_of(self, "critic_target", ("replay", "model")) + \
            [(self.log_std_min < math.log(1e3), f"log_std_min={self.log_std_min} is too large"),
             (self.n_critics == 1, f"n_critics={self.n_critics}: svg1 learns one state value V(s), not Q critics "
                                   "to take the minimum of; leave n_critics at 1")]


class State(NamedTuple):
    """Everything SVG(1) learns."""

    policy: GaussianPolicy
    value: VCritic
    target_value: VCritic
    model: LearnedModel  # the dynamics network with the known reward (static) or its head, a System over observations
    policy_opt: PyTree
    value_opt: PyTree
    model_opt: PyTree  # of the model's networks only (``model_params``; its normalizers are data statistics)
    updates: Array  # updates taken so far (0: the next one fits the normalizers; policy_delay counts them)
    acting_policy: GaussianPolicy  # what acts deterministically: a Polyak average with ``act_with_target``, else policy


def actor_optimizer(config: Config):
    """The policy's Adam at ``actor_lr`` (clipped to ``max_grad_norm``), decayed over ``actor_lr_decay_steps`` actor
    steps when that is > 0."""
    return config.actor_optimizer(config.max_grad_norm)


def model_params(dynamics: DynamicsModel) -> PyTree:
    """What the model's Adam trains: the dynamics networks, and with learned heads ``(nets, reward net, termination
    net)`` (None for a head it lacks); never the normalizers. Without heads it is the networks alone, the layout of
    the optimizer state in svg1's checkpoints from before the heads."""
    heads = (dynamics.reward_head, dynamics.termination_head)
    if all(h is None for h in heads):
        return dynamics.nets
    return (dynamics.nets, *(None if h is None else h.net for h in heads))


def with_model_params(system: LearnedModel, params: PyTree) -> LearnedModel:
    """``system`` with its dynamics model's ``model_params`` replaced by ``params`` (its heads are the system's
    learned reward and termination, so both places change together)."""
    dynamics = system.model
    if isinstance(params, tuple):
        nets, reward_net, termination_net = params
        for head, net in (("reward_head", reward_net), ("termination_head", termination_net)):
            if net is not None:
                dynamics = eqx.tree_at(lambda m: getattr(m, head).net, dynamics, net)
    else:
        nets = params
    return with_dynamics(system, eqx.tree_at(lambda m: m.nets, dynamics, nets))


def with_dynamics(system: LearnedModel, dynamics: DynamicsModel) -> LearnedModel:
    """``system`` over ``dynamics``, its learned reward and termination ``dynamics``'s heads (None where it has
    none, as ``init`` built it)."""
    return eqx.tree_at(lambda s: (s.model, s.reward_model, s.termination_model), system,
                       (dynamics, dynamics.reward_head, dynamics.termination_head), is_leaf=lambda x: x is None)


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """Fresh policy, value (target = online), model (with the spec's reward and termination, or heads that learn
    them: ``reward_source``, ``termination_source``), and optimizer states."""
    k_pi, k_v, k_m = jax.random.split(key, 3)
    policy = GaussianPolicy(spec.obs_dim, spec.action_dim, config.hidden, key=k_pi, low=spec.action_low,
                            high=spec.action_high, init_log_std=config.init_log_std, log_std_min=config.log_std_min)
    value = VCritic(spec.obs_dim, config.critic_hidden, key=k_v)
    learn_reward, learn_termination = config.learns(spec)
    dynamics = DynamicsModel(spec.obs_dim, spec.action_dim, config.model_hidden, key=k_m, learn_reward=learn_reward,
                             learn_termination=learn_termination, angles=spec.angle_entries(config.angle_features))
    model = LearnedModel(dynamics, None if learn_reward else config.imagined_reward(spec),
                         reward_model=dynamics.reward_head, action_low=spec.action_low, action_high=spec.action_high,
                         terminal_fn=None if learn_termination else spec.terminated,
                         termination_model=dynamics.termination_head)
    clip = config.max_grad_norm
    return State(policy, value, value, model, optim.init(actor_optimizer(config), policy),
                 optim.init(optim.adam(config.critic_lr, clip), value),
                 optim.init(optim.adam(config.model_lr, clip), model_params(dynamics)), jnp.zeros((), jnp.int32),
                 policy)


def behaviour_log_prob(state: State, obs: Array, action: Array) -> Array:
    """``log mu(a|s)`` of the policy that acted (the replay loop stores it before this iteration's updates)."""
    return state.policy(obs).log_prob(action)


# ----------------------------------------------------------------------------- losses


def importance_weights(policy: GaussianPolicy, obs: Array, action: Array, behaviour_log_prob: Array,
                       max_weight: float) -> Array:
    """``w = min(pi_theta(a|s) / mu(a|s), w_max)`` per row, without gradient (SVG(1)-ER's truncated weights)."""
    log_pi = jax.vmap(lambda o, a: policy(o).log_prob(a))(obs, action)
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(log_pi - behaviour_log_prob), max_weight))


def inferred_noise(policy: GaussianPolicy, system: LearnedModel, batch: Transition) -> tuple[Array, Array]:
    """``xi = pi^{-1}(s, a; theta)`` and ``zeta = s' - f(s, a)``: the noises that replay each transition exactly."""
    xi = policy_noise(policy, batch.obs, batch.action)
    zeta = model_noise(system, batch.obs, batch.action, batch.next_obs)
    return jax.lax.stop_gradient(xi), jax.lax.stop_gradient(zeta)


def knows_termination(system: LearnedModel) -> bool:
    """Whether ``system`` has a termination rule of its own (registered or learned): then an imagined step ends
    where its *imagined* next state terminates, not where the replayed one did."""
    return system.terminal_fn is not None or system.termination_model is not None


def replayed_continue(system: LearnedModel, batch: Transition) -> Array:
    """``1 - d`` of the replayed transitions where ``system`` knows no termination, else 1: the imagined step's
    own termination then masks the bootstrap (``svg_core``), so an action that moves the state across the
    termination boundary loses ``V`` there, and one that moves it back keeps it."""
    if knows_termination(system):
        return jnp.ones(batch.terminated.shape, jnp.float32)
    return 1.0 - batch.terminated.astype(jnp.float32)


def actor_loss(policy: GaussianPolicy, value: VCritic, system: LearnedModel, batch: Transition, weights: Array,
               gamma: float, mean_penalty: float = 0.0) -> Array:
    """``-sum w J_1 / sum w``, ``J_1 = r(s, pi(s, xi)) + gamma (1 - d) V(f(s, pi(s, xi)) + zeta)`` (lecture, SVG(1)),
    plus ``mean_penalty`` λ · mean_b ||μ(s_b)||² (the pre-squash mean at the replayed states) when λ > 0.

    V is frozen by its bootstrap; freeze the model's parameters too (``jax.lax.stop_gradient(system)``).
    """
    xi, zeta = inferred_noise(policy, system, batch)
    discount = gamma * replayed_continue(system, batch)  # (gamma (1 - d))^1 for k = 1

    def j1(obs, x, z, g):
        xis = jnp.stack([x, jnp.zeros_like(x)])  # the second row would pick a bootstrap action; V ignores it
        return value_gradient_objective(system, policy.act, v_bootstrap(value), obs, xis, z[None], g).objective

    objectives = jax.vmap(j1)(batch.obs, xi, zeta, discount)
    loss = -jnp.sum(weights * objectives) / jnp.maximum(jnp.sum(weights), 1e-6)
    if mean_penalty > 0:
        means = jax.vmap(lambda s: policy.mean_and_log_std(s)[0])(batch.obs)
        loss = loss + mean_penalty * jnp.mean(jnp.sum(means ** 2, axis=-1))
    return loss


def critic_targets(target_value: VCritic, batch: Transition, gamma: float) -> Array:
    """``y = r + gamma (1 - terminated) V'(s')`` (TD(0) on the replayed transition)."""
    return td_target(batch.reward, batch.terminated, jax.vmap(target_value)(batch.next_obs), gamma)


def model_critic_targets(target_value: VCritic, policy: GaussianPolicy, system: LearnedModel, batch: Transition,
                         xi: Array, gamma: float) -> Array:
    """``y = r(s, a) + gamma (1 - d) V'(f(s, a) + zeta)``, ``a = pi(s, xi; theta)``, ``zeta = s' - f(s, a_old)``.

    The TD(0) target of ``V^pi`` for the *current* policy's action, moved one model step with the replayed
    transition's inferred model noise: the action is on-policy, so it needs no importance weight.
    """
    _, zeta = inferred_noise(policy, system, batch)
    action = jax.vmap(policy.act)(batch.obs, xi)
    next_obs = jax.vmap(system.step)(batch.obs, action, zeta)
    reward = jax.vmap(system.reward)(batch.obs, action, next_obs)
    terminated = jax.vmap(system.terminated)(next_obs) if knows_termination(system) else batch.terminated
    return jax.lax.stop_gradient(td_target(reward, terminated, jax.vmap(target_value)(next_obs), gamma))


def fit_normalizers(model: DynamicsModel, buffer: replay.ReplayBuffer) -> DynamicsModel:
    """The model's input (s, a) and output (s' - s) normalizers, and its learned heads', from the buffer's filled
    transitions (``DynamicsModel.with_normalizers`` over the first ``buffer.size`` rows)."""
    t = buffer.storage.transition
    return model.with_normalizers(t.obs, t.action, t.next_obs, t.reward, count=buffer.size)


# ----------------------------------------------------------------------------- updates


def model_step(state: State, batch: Transition, config: Config) -> tuple[State, Array]:
    """One Adam step of the dynamics network (and of its learned heads, on the replayed rewards and terminated
    flags) on ``batch`` (the normalizers are data statistics, not parameters)."""
    weights = jnp.ones(batch.reward.shape[0])

    def loss(params):
        return model_loss(with_model_params(state.model, params).model, batch.obs, batch.action, batch.next_obs,
                          weights, rewards=batch.reward, terminated=batch.terminated)

    params = model_params(state.model.model)
    m_loss, grads = eqx.filter_value_and_grad(loss)(params)
    params, model_opt = optim.apply(params, grads, state.model_opt, optim.adam(config.model_lr, config.max_grad_norm))
    return state._replace(model=with_model_params(state.model, params), model_opt=model_opt), m_loss


def first_update(state: State, buffer: replay.ReplayBuffer, key: PRNGKey, config: Config) -> State:
    """Fit the model's normalizers on the buffer (the warm-up data), then ``model_pretrain_steps`` model steps."""
    state = state._replace(model=with_dynamics(state.model, fit_normalizers(state.model.model, buffer)))

    def pretrain(i, state):
        batch = replay.sample(buffer, jax.random.fold_in(key, i), config.batch_size).transition
        return model_step(state, batch, config)[0]

    return jax.lax.fori_loop(0, config.model_pretrain_steps, pretrain, state)


def critic_step(state: State, batch: Transition, weights: Array, key: PRNGKey, config: Config
                ) -> tuple[VCritic, PyTree, Array]:
    """One step of V on its TD(0) target (``config.critic_target``) and the critic loss."""
    if config.critic_target == "model":
        xi = jax.random.normal(key, batch.action.shape)
        y = model_critic_targets(state.target_value, state.policy, state.model, batch, xi, config.gamma)
        weights = jnp.ones_like(weights)  # on-policy actions: no correction needed
    else:
        y = critic_targets(state.target_value, batch, config.gamma)
    v_loss, grads = eqx.filter_value_and_grad(value_loss)(state.value, batch.obs, y, weights)
    opt = optim.adam(config.critic_lr, config.max_grad_norm)
    value, value_opt = optim.apply(state.value, grads, state.value_opt, opt)
    return value, value_opt, v_loss


def actor_step(state: State, value: VCritic, batch: Transition, weights: Array, config: Config
               ) -> tuple[GaussianPolicy, PyTree, Array]:
    """One policy step on the weighted ``J_1`` through the frozen model and the updated V, every ``policy_delay``
    updates (the policy and its optimizer state are unchanged otherwise)."""
    system = jax.lax.stop_gradient(state.model)
    a_loss, grads = eqx.filter_value_and_grad(actor_loss)(state.policy, value, system, batch, weights, config.gamma,
                                                          config.mean_penalty)
    policy, policy_opt = optim.apply(state.policy, grads, state.policy_opt, actor_optimizer(config))
    actor_on = state.updates % config.policy_delay == config.policy_delay - 1
    policy, policy_opt = jax.tree.map(lambda new, old: jnp.where(actor_on, new, old), (policy, policy_opt),
                                      (state.policy, state.policy_opt))
    return policy, policy_opt, a_loss


def update(state: State, buffer: replay.ReplayBuffer, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """One model, one critic and (every ``policy_delay`` updates) one actor step on a replayed minibatch, then a
    Polyak step of V'; the first update fits the model's normalizers first (``first_update``)."""
    k_batch, k_critic, k_first = jax.random.split(key, 3)
    state = jax.lax.cond(state.updates == 0, lambda s: first_update(s, buffer, k_first, config), lambda s: s, state)
    item = replay.sample(buffer, k_batch, config.batch_size)
    batch = item.transition
    state, m_loss = model_step(state, batch, config)
    weights = jnp.ones(config.batch_size)
    if config.importance_weights:
        weights = importance_weights(state.policy, batch.obs, batch.action, item.behaviour_log_prob, config.max_weight)
    value, value_opt, v_loss = critic_step(state, batch, weights, k_critic, config)
    policy, policy_opt, a_loss = actor_step(state, value, batch, weights, config)
    state = state._replace(policy=policy, value=value, target_value=soft_update(state.target_value, value, config.tau),
                           policy_opt=policy_opt, value_opt=value_opt, updates=state.updates + 1,
                           acting_policy=soft_update(state.acting_policy, policy, config.tau) if config.act_with_target
                           else policy)
    return state, {"actor_loss": a_loss, "critic_loss": v_loss, "model_loss": m_loss,
                   **diagnostics(policy, batch.obs, weights)}


def diagnostics(policy: GaussianPolicy, obs: Array, weights: Array) -> dict[str, Array]:
    """Mean importance weight, effective sample size (fraction of the batch), policy std, saturated fraction."""
    low, high = policy.box()
    actions = jax.vmap(policy.act)(obs, jnp.zeros((obs.shape[0], policy.action_dim), obs.dtype))
    saturation = jnp.mean(jnp.abs(2.0 * (actions - low) / (high - low) - 1.0) > 0.95)
    ess = jnp.sum(weights) ** 2 / jnp.maximum(jnp.sum(weights**2), 1e-12) / weights.shape[0]
    return {"weight_mean": weights.mean(), "weight_ess": ess, "policy_std": jnp.exp(policy.log_std).mean(),
            "saturation": saturation}


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """The mode ``box(tanh(mean(s)))`` of ``acting_policy`` (the latest policy, or with ``act_with_target`` a Polyak
    average of the recent ones), or a sample of the latest policy when not ``deterministic``."""
    if deterministic:
        return state.acting_policy(obs).mode()
    return act_from_noise(state, obs, jax.random.normal(key, (state.policy.action_dim,), obs.dtype))


def act_from_noise(state: State, obs: Array, noise: Array) -> Array:
    """The latest policy's sample for given standard-normal noise ``ξ`` (shape ``(action_dim,)``):
    ``box(tanh(μ + σ ξ))`` (the replay loop's episodes with ``noise_color`` > 0 pass time-correlated ξ)."""
    return state.policy.act(obs, noise)


__all__ = ["Config", "INFO", "State", "act", "act_from_noise", "actor_loss", "actor_optimizer", "behaviour_log_prob",
           "critic_targets", "diagnostics", "first_update", "fit_normalizers", "importance_weights", "inferred_noise",
           "init", "knows_termination", "model_critic_targets", "model_step", "replayed_continue", "update"]
