"""SVG(k): k steps through the dynamics, then a learned value (the short-horizon actor-critic).

Lecture, "Stochastic Value Gradients": the policy gradient is the pathwise derivative of

    J_k(theta) = E[ sum_{t<k} gamma^t r_t + gamma^k V(s_k) ],   a_t = pi(s_t, xi_t; theta),
    s_{t+1} = f(s_t, a_t) + zeta_t,

(``svg_core.value_gradient_objective``), and V is learned by TD(lambda) on the same k-step segments with a
target network (``svg_core.lambda_returns``). Two sources of dynamics:

* **true System** (an env id ``pathwise/...`` or ``use_true_dynamics=True``): the SHAC scheme (Xu et al.
  2022). ``n_envs`` parallel simulations are carried across updates; each update rolls them k steps
  through the differentiable simulator, takes one actor step on ``-J_k`` and fits V on the segments.
  A simulation is restarted after ``episode_length`` steps or a terminal state. ``env_steps`` counts
  simulated steps (as BPTT does).
* **learned model** (a black-box Gymnasium env with a known reward): the model-based loop of
  ``model_based.ModelBasedLearner``: one real episode, refit the model ``f`` (``pathwise.models.fit``), then
  ``updates_per_episode`` actor-critic steps, each imagining k steps of the frozen model from ``n_envs``
  replayed real observations. ``env_steps`` counts real steps. Where ``pathwise.rewards.TERMINATIONS``
  knows the env's termination (MuJoCo InvertedPendulum), imagined rollouts stop there too; envs with
  short episodes collect several per iteration (``min_steps_per_iteration``, and enough to fit).

k = 1 is SVG(1) on imagined transitions and k = episode length with V = 0 is BPTT.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pathwise import systems as pw_systems
from pathwise.algorithms.base import Learner
from pathwise.algorithms.model_based import ModelBasedConfig, ModelBasedLearner, frozen, refit_model, sample_starts
from pathwise.algorithms.svg_core import segment_targets, v_bootstrap, value_gradient_objective, value_loss
from pathwise.distributions import GaussianPolicy
from pathwise.models import LearnedModel
from pathwise.networks import VCritic, soft_update
from pathwise.seeds import train_vmapped
from pathwise.systems.base import System
from pathwise.types import Array, PRNGKey, PyTree


@dataclasses.dataclass(frozen=True)
class SVGKConfig(ModelBasedConfig):
    """SVG(k) options; defaults tuned for Pendulum-v1 (the model-fitting ones are used only on a learned model)."""

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
    learning_rate: float = 2e-3
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
    reward_scale: float = 0.1
    """Rewards are multiplied by this inside the objective and the value targets (metrics are unscaled)."""
    updates_per_iteration: int = 10
    """Updates (actor step + critic fit) per ``train_iteration`` on the true System."""
    updates_per_episode: int = 50
    """Updates per real episode on a learned model (each from ``n_envs`` replayed real observations)."""
    min_steps_per_iteration: int = 0
    """Learned model: collect whole episodes until at least this many real steps per iteration (short episodes)."""
    use_true_dynamics: bool = False
    """Differentiate through the pathwise System of the env id (SHAC) even if the id is a Gymnasium one."""


def validate_config(config: SVGKConfig) -> None:
    checks = [
        (config.horizon >= 1, f"horizon={config.horizon} must be >= 1"),
        (config.n_envs >= 1, f"n_envs={config.n_envs} must be >= 1"),
        (0.0 < config.gamma <= 1.0, f"gamma={config.gamma} must be in (0, 1]"),
        (0.0 <= config.lam <= 1.0, f"lam={config.lam} must be in [0, 1]"),
        (0.0 < config.target_tau <= 1.0, f"target_tau={config.target_tau} must be in (0, 1]"),
        (config.learning_rate > 0 and config.critic_lr > 0, "learning rates must be positive"),
        (config.critic_iterations >= 1 and config.critic_minibatches >= 1,
         "critic_iterations and critic_minibatches must be >= 1"),
        ((config.n_envs * config.horizon) % config.critic_minibatches == 0,
         f"n_envs * horizon = {config.n_envs * config.horizon} must be divisible by "
         f"critic_minibatches={config.critic_minibatches}"),
        (config.updates_per_iteration >= 1, f"updates_per_iteration={config.updates_per_iteration} must be >= 1"),
        (config.updates_per_episode >= 1, f"updates_per_episode={config.updates_per_episode} must be >= 1"),
        (config.min_steps_per_iteration >= 0,
         f"min_steps_per_iteration={config.min_steps_per_iteration} must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"Invalid SVGK config: {message}.")


def optimizer(lr: float, max_grad_norm: float) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr))


class ActorCritic(NamedTuple):
    """The learned parts of SVG(k): policy, value, target value and their optimizer states."""

    policy: GaussianPolicy
    value: VCritic
    target_value: VCritic
    actor_opt: PyTree
    critic_opt: PyTree


class ShacState(NamedTuple):
    """Everything SVG(k) on a true System learns or needs to resume."""

    agent: ActorCritic
    sim_states: Array  # [n_envs, state_dim], carried across updates
    sim_time: Array  # [n_envs] steps since each simulation's reset
    key: PRNGKey
    env_steps: Array
    updates: Array


def init_actor_critic(key: PRNGKey, obs_dim: int, action_dim: int, low, high, config: SVGKConfig) -> ActorCritic:
    """Fresh policy (tanh-Gaussian, state-independent std), value (target = online) and Adam states."""
    k_pi, k_v = jax.random.split(key)
    policy = GaussianPolicy(obs_dim, action_dim, config.hidden, key=k_pi, low=low, high=high,
                            init_log_std=config.init_log_std)
    value = VCritic(obs_dim, config.critic_hidden, key=k_v, act="elu")
    actor_opt = optimizer(config.learning_rate, config.max_grad_norm).init(eqx.filter(policy, eqx.is_inexact_array))
    critic_opt = optimizer(config.critic_lr, config.max_grad_norm).init(eqx.filter(value, eqx.is_inexact_array))
    return ActorCritic(policy, value, value, actor_opt, critic_opt)


def init_shac(key: PRNGKey, system: System, config: SVGKConfig) -> ShacState:
    """A fresh ``ActorCritic`` and ``n_envs`` reset simulations."""
    k_ac, k_reset, key = jax.random.split(key, 3)
    agent = init_actor_critic(k_ac, system.obs_dim, system.action_dim, system.action_low, system.action_high, config)
    sims = jax.vmap(system.reset)(jax.random.split(k_reset, config.n_envs))
    zero = jnp.zeros((), jnp.int32)
    return ShacState(agent, sims, jnp.zeros(config.n_envs, jnp.int32), key, zero, zero)


def actor_loss(policy: GaussianPolicy, value: VCritic, system: System, states: Array, xis: Array,
               zetas: Array, gamma: float, reward_scale: float = 1.0):
    """``-mean_i J_k(s_0^i) / k`` (lecture, SVG(k)); returns the segments for the critic as auxiliary data."""
    segments = jax.vmap(lambda s, x, z: value_gradient_objective(system, policy.act, v_bootstrap(value), s, x, z,
                                                                 gamma, reward_scale))(states, xis, zetas)
    return -jnp.mean(segments.objective) / zetas.shape[1], segments


def fit_value(value: VCritic, opt_state: PyTree, observations: Array, targets: Array, weights: Array,
              key: PRNGKey, config: SVGKConfig) -> tuple[VCritic, PyTree, Array]:
    """``critic_iterations`` shuffled passes of ``critic_minibatches`` Adam steps on ``value_loss``."""
    opt = optimizer(config.critic_lr, config.max_grad_norm)
    obs = observations.reshape(-1, observations.shape[-1])
    tgt, w = targets.reshape(-1), weights.reshape(-1)
    n_mb = config.critic_minibatches

    def minibatch(carry, idx):
        value, opt_state = carry
        loss, grads = eqx.filter_value_and_grad(value_loss)(value, obs[idx], tgt[idx], w[idx])
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(value, eqx.is_inexact_array))
        return (eqx.apply_updates(value, updates), opt_state), loss

    def epoch(carry, k):
        perm = jax.random.permutation(k, obs.shape[0]).reshape(n_mb, -1)
        return jax.lax.scan(minibatch, carry, perm)

    (value, opt_state), losses = jax.lax.scan(epoch, (value, opt_state),
                                              jax.random.split(key, config.critic_iterations))
    return value, opt_state, losses.mean()


def actor_critic_step(agent: ActorCritic, system: System, starts: Array, key: PRNGKey, config: SVGKConfig):
    """From ``starts`` roll k steps; one actor step on ``-J_k``; fit V to the segments' TD(lambda) targets.

    Returns the new agent, the (gradient-free) segments and metrics.
    """
    k_xi, k_zeta, k_critic = jax.random.split(key, 3)
    n, k = starts.shape[0], config.horizon
    xis = jax.random.normal(k_xi, (n, k + 1, agent.policy.action_dim))
    zetas = system.sample_noise(k_zeta, (n, k))
    (loss, segments), grads = eqx.filter_value_and_grad(actor_loss, has_aux=True)(
        agent.policy, agent.value, system, starts, xis, zetas, config.gamma, config.reward_scale)
    opt = optimizer(config.learning_rate, config.max_grad_norm)
    updates, actor_opt = opt.update(grads, agent.actor_opt, eqx.filter(agent.policy, eqx.is_inexact_array))
    policy = eqx.apply_updates(agent.policy, updates)
    segments = jax.lax.stop_gradient(segments)
    targets = jax.vmap(lambda seg: segment_targets(agent.target_value, seg, config.gamma, config.lam))(segments)
    value, critic_opt, v_loss = fit_value(agent.value, agent.critic_opt, segments.observations, targets,
                                          segments.alive, k_critic, config)
    agent = ActorCritic(policy, value, soft_update(agent.target_value, value, config.target_tau), actor_opt,
                        critic_opt)
    metrics = {"actor_loss": loss, "value_loss": v_loss,
               "imagined_reward": segments.rewards.mean() / config.reward_scale,
               "policy_std": jnp.exp(policy.log_std).mean()}
    return agent, segments, metrics


def restart_finished(system: System, states: Array, time: Array, continues: Array, key: PRNGKey,
                     limit: int) -> tuple[Array, Array]:
    """Reset the simulations that reached a terminal state or the episode limit."""
    fresh = jax.vmap(system.reset)(jax.random.split(key, states.shape[0]))
    done = (time >= limit) | (continues <= 0.0)
    return jnp.where(done[:, None], fresh, states), jnp.where(done, 0, time)


def shac_update(state: ShacState, system: System, config: SVGKConfig) -> tuple[ShacState, dict[str, Array]]:
    """SHAC: an actor-critic step from the carried simulations, which then continue from where they stopped."""
    key, k_step, k_reset = jax.random.split(state.key, 3)
    agent, segments, metrics = actor_critic_step(state.agent, system, state.sim_states, k_step, config)
    sims, time = restart_finished(system, segments.final_state, state.sim_time + config.horizon,
                                  segments.final_continue, k_reset, system.episode_length)
    n_steps = config.n_envs * config.horizon
    return ShacState(agent, sims, time, key, state.env_steps + n_steps, state.updates + 1), metrics


TRACE_COUNT = {"shac": 0}  # tests read this to check that a second call does not recompile


def shac_updates(state: ShacState, system: System, config: SVGKConfig, num_updates: int):
    """``num_updates`` SHAC updates from ``state`` as one ``lax.scan``; metrics stacked per update."""
    return jax.lax.scan(lambda s, _: shac_update(s, system, config), state, None, length=num_updates)


@eqx.filter_jit
def shac_train(state: ShacState, system: System, config: SVGKConfig) -> tuple[ShacState, dict[str, Array]]:
    """``config.updates_per_iteration`` SHAC updates in one ``lax.scan`` (metrics averaged)."""
    TRACE_COUNT["shac"] += 1
    state, metrics = shac_updates(state, system, config, config.updates_per_iteration)
    return state, jax.tree.map(jnp.mean, metrics)


def run_shac(key: PRNGKey, system: System, config: SVGKConfig, num_updates: int):
    """``init_shac(key)`` followed by ``num_updates`` SHAC updates; metrics per update."""
    return shac_updates(init_shac(key, system, config), system, config, num_updates)


_train_one = eqx.filter_jit(run_shac)


@eqx.filter_jit
def _train_seeds(keys: PRNGKey, system: System, config: SVGKConfig, num_updates: int):
    return jax.vmap(lambda key: run_shac(key, system, config, num_updates))(keys)


def train_seed(system: System, config: SVGKConfig, seed: int, num_updates: int) -> tuple[ShacState, dict[str, Array]]:
    """One seed of SVG(k) on a true System as one jitted program (row ``seed`` of :func:`train_seeds`)."""
    validate_config(config)
    return _train_one(jax.random.key(seed), system, config, int(num_updates))


def train_seeds(system: System, config: SVGKConfig, seeds: int, num_updates: int, shard: bool | None = None,
                first_seed: int = 0) -> tuple[ShacState, dict[str, Array]]:
    """``seeds`` independent SVG(k) runs on a true System as one jitted, vmapped program.

    States come back stacked on a leading seed axis, metrics with shape ``(seeds, num_updates)``; seed
    ``i`` equals ``init_shac(jax.random.key(i))`` followed by ``num_updates`` updates. The seed axis is
    sharded over several devices as in :func:`pathwise.algorithms.bptt.train_seeds`.
    """
    validate_config(config)
    return train_vmapped(_train_seeds, system, config, seeds, num_updates, shard, first_seed)


def steps_per_update(config: SVGKConfig) -> int:
    """Simulated system steps one SHAC update consumes (``n_envs`` simulations, k steps each)."""
    return config.n_envs * config.horizon


@eqx.filter_jit
def mode_action(policy: GaussianPolicy, obs: Array) -> Array:
    """The deterministic action ``box(tanh(mean(s)))`` used for evaluation."""
    return policy(obs).mode()


@eqx.filter_jit
def sample_action(policy: GaussianPolicy, obs: Array, key: PRNGKey) -> Array:
    return policy(obs).sample(key)


def make_system(env_id: str) -> System:
    """The pathwise System of ``env_id`` with a clear error when there is none."""
    try:
        return pw_systems.make(env_id)
    except ValueError as err:
        raise ValueError(f"svgk with true dynamics needs a pathwise System, but {env_id!r} has none ({err}). "
                         "Drop use_true_dynamics to learn a model of the Gymnasium env instead.") from err


class ModelSVGKState(NamedTuple):
    """``ModelBasedState``'s fields (policy, model, data, counters) plus the value and its optimizer."""

    policy: GaussianPolicy
    opt_state: PyTree
    model: Any
    buffer: Any
    recent: Any
    key: PRNGKey
    env_steps: Array
    episodes: Array
    skipped_updates: Array
    value: VCritic
    target_value: VCritic
    critic_opt: PyTree


TRACE_COUNT["model"] = 0


class TerminatingModel(LearnedModel):
    """A ``LearnedModel`` that also knows the env's termination on observations (``pathwise.rewards.TERMINATIONS``).

    Imagined rollouts then stop where the real environment would (no gradient flows through the mask).
    """

    terminal_fn: Callable | None = eqx.field(static=True)

    def __init__(self, model, reward_fn, terminal_fn=None, *, action_low, action_high, horizon: int):
        super().__init__(model, reward_fn, action_low=action_low, action_high=action_high, horizon=horizon)
        self.terminal_fn = terminal_fn

    def terminated(self, state: Array) -> Array:
        if self.terminal_fn is None:
            return super().terminated(state)
        return self.terminal_fn(state)


@eqx.filter_jit
def model_improve(state: ModelSVGKState, reward_fn, terminal_fn, low: Array, high: Array, limit: int, key: PRNGKey,
                  config: SVGKConfig) -> tuple[ModelSVGKState, dict[str, Array]]:
    """``updates_per_episode`` actor-critic steps, each imagining k steps of the frozen model from real states."""
    TRACE_COUNT["model"] += 1
    system = TerminatingModel(frozen(state.model), reward_fn, terminal_fn, action_low=low, action_high=high,
                              horizon=limit)

    def body(agent, k):
        k_start, k_step = jax.random.split(k)
        starts = sample_starts(state.buffer, k_start, config.n_envs)
        agent, _, metrics = actor_critic_step(agent, system, starts, k_step, config)
        return agent, metrics

    agent = ActorCritic(state.policy, state.value, state.target_value, state.opt_state, state.critic_opt)
    agent, metrics = jax.lax.scan(body, agent, jax.random.split(key, config.updates_per_episode))
    state = state._replace(policy=agent.policy, value=agent.value, target_value=agent.target_value,
                           opt_state=agent.actor_opt, critic_opt=agent.critic_opt)
    return state, jax.tree.map(jnp.mean, metrics)


class ModelSVGK(ModelBasedLearner):
    """SVG(k) on a learned model: real episode -> refit f -> k imagined steps from replayed real states."""

    name = "svgk"
    Config = SVGKConfig

    def make_policy(self, key: PRNGKey) -> GaussianPolicy:
        return init_actor_critic(key, self.obs_dim, self.action_dim, self.low, self.high, self.config).policy

    def init_state(self, key: PRNGKey) -> ModelSVGKState:
        k_base, k_ac = jax.random.split(key)
        base = super().init_state(k_base)
        agent = init_actor_critic(k_ac, self.obs_dim, self.action_dim, self.low, self.high, self.config)
        return ModelSVGKState(*base, agent.value, agent.value, agent.critic_opt)

    def set_state(self, state: ModelSVGKState) -> None:
        self.state = ModelSVGKState(*state)
        self.env_steps = int(self.state.env_steps)

    def behaviour_action(self, policy: GaussianPolicy, obs: Array, key: PRNGKey) -> Array:
        return policy(obs).sample(key)

    def mode_action(self, policy: GaussianPolicy, obs: Array) -> Array:
        return policy(obs).mode()

    def improve(self, state: ModelSVGKState, key: PRNGKey) -> tuple[ModelSVGKState, dict[str, Array]]:
        return model_improve(state, self.reward_fn, self.terminal_fn, self.low, self.high, self.limit, key,
                             self.config)

    @property
    def terminal_fn(self) -> Callable | None:
        from pathwise import rewards

        return getattr(rewards, "TERMINATIONS", {}).get(self.env_id)

    def train_iteration(self) -> dict[str, float]:
        """``ModelBasedLearner``'s loop, except that it collects whole episodes until D can be fitted and at
        least ``min_steps_per_iteration`` real steps were taken (episodes of a falling InvertedPendulum last
        a few steps), and leaves out a model error that could not be measured (NaN: no held-out block
        without an episode end)."""
        key, k_collect, k_fit, k_improve = jax.random.split(self.state.key, 4)
        self.state = self.state._replace(key=key)
        fit_config = self.config.fit_config()
        returns, steps = [], 0
        while not returns or steps < self.config.min_steps_per_iteration \
                or int(self.state.buffer.size) < fit_config.min_transitions:
            k_collect, k = jax.random.split(k_collect)
            episode, ret = self.collect_episode(k)
            self.store(episode)
            returns.append(ret)
            steps += episode.obs.shape[0]
        model, report = refit_model(self.state.model, self.state.buffer, fit_config, k_fit)
        self.last_fit = report
        self.state, metrics = self.improve(self.state._replace(model=model), k_improve)
        self.env_steps = int(self.state.env_steps)
        out = {"episode_return": float(np.mean(returns)), "episodes_collected": float(len(returns)),
               "model_one_step_mse": report.one_step_mse, "model_multi_step_mse": report.multi_step_mse,
               "model_epochs": float(report.epochs), "skipped_updates": float(self.state.skipped_updates),
               **{k: float(v) for k, v in metrics.items()}}
        return {k: v for k, v in out.items() if k != "model_multi_step_mse" or np.isfinite(v)}


class SVGK(Learner):
    """SVG(k) (see the module docstring): SHAC through a true System, or k imagined steps of a learned model."""

    name = "svgk"
    Config = SVGKConfig
    needs_reward = False  # only the learned-model mode needs one; checked in __init__
    needs_system = False
    discrete_ok = False
    continuous_ok = True

    def __init__(self, env_id: str, config: SVGKConfig | None = None, seed: int = 0):
        super().__init__(env_id, config, seed)
        validate_config(self.config)
        self.true_dynamics = self.config.use_true_dynamics or env_id.startswith("pathwise/")
        self.learned: ModelSVGK | None = None
        if not self.true_dynamics:
            from pathwise import rewards

            if not rewards.has(env_id):
                raise ValueError(f"svgk on a learned model needs the known reward of {env_id!r}, and none is "
                                 "registered: pathwise.rewards.register(env_id, fn), or use_true_dynamics=True "
                                 "with a pathwise System.")
            self.learned = ModelSVGK(env_id, self.config, seed)
            return
        self.system = make_system(env_id)
        if self.system.discrete:
            raise ValueError(f"svgk needs continuous actions, but {env_id} is discrete; use "
                             "'pathwise/CartPoleSwingUp-v0' or 'svg0-discrete'.")
        self.state = init_shac(jax.random.key(self.seed), self.system, self.config)
        self._act_key = jax.random.key(self.seed + 1)  # only for act(deterministic=False)

    def train_iteration(self) -> dict[str, float]:
        if self.learned is not None:
            metrics = self.learned.train_iteration()
            self.env_steps = self.learned.env_steps
            return metrics
        self.state, metrics = shac_train(self.state, self.system, self.config)
        self.env_steps = int(self.state.env_steps)
        return {k: float(v) for k, v in metrics.items()}

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        if self.learned is not None:
            return self.learned.act(obs, deterministic)
        obs = jnp.asarray(obs, jnp.float32).reshape(self.system.obs_dim)
        if deterministic:
            return np.asarray(mode_action(self.state.agent.policy, obs))
        self._act_key, key = jax.random.split(self._act_key)
        return np.asarray(sample_action(self.state.agent.policy, obs, key))

    def get_state(self) -> PyTree:
        return self.learned.get_state() if self.learned is not None else self.state

    def set_state(self, state: PyTree) -> None:
        if self.learned is not None:
            self.learned.set_state(state)
            self.env_steps = self.learned.env_steps
            return
        self.state = ShacState(*state)
        self.env_steps = int(self.state.env_steps)

    def describe(self) -> dict[str, Any]:
        if self.learned is not None:
            return {"dynamics": "learned model", "horizon_k": self.config.horizon,
                    "env_steps_are": "real environment steps", **self.learned.describe()}
        return {"dynamics": "true System (SHAC)", "horizon_k": self.config.horizon,
                "env_steps_are": "simulated steps through the known differentiable system"}


__all__ = ["ActorCritic", "ModelSVGK", "ModelSVGKState", "SVGK", "SVGKConfig", "ShacState", "actor_critic_step",
           "actor_loss", "fit_value", "init_actor_critic", "init_shac", "model_improve", "restart_finished",
           "run_shac", "shac_train", "shac_update", "shac_updates", "steps_per_update", "train_seed", "train_seeds",
           "validate_config"]
