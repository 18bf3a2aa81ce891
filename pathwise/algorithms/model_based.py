"""Shared pieces of the model-based learners (MBRL, SVG(∞), SVG(1), SVG(k)).

The lecture's loop, with only the reward known (``pathwise.rewards``):

1. run a base policy π₀ (uniformly random actions) and collect ``D = {(x, u, x')}``;
2. learn ``f_φ`` minimizing ``Σ ||f_φ(x, u) − x'||²`` (``pathwise.models.fit``);
3. backpropagate through the frozen ``f_φ`` into ``π_θ`` (each algorithm's own step);
4. run ``π_θ``, append the visited tuples to ``D``; repeat.

``ModelBasedLearner`` is that loop as a ``Learner``: one ``train_iteration`` =
one real episode (random for the first ``random_episodes``), appended to the
transition buffer and to a ring of recent whole episodes, a model refit, then
``improve`` (the subclass's jitted policy update). Every random number comes
from the state's key; the env is reset with a seed drawn from it, so
``set_state(get_state())`` reproduces a run exactly.

Stable helpers for other learners: ``ModelBasedConfig``, ``ModelBasedState``,
``make_dynamics_model``, ``pad_episode``, ``buffer_dataset``, ``refit_model``,
``frozen``, ``learned_system``, ``sample_starts``, ``fixed_bounds``, ``adam_step_if_finite``.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pathwise import replay
from pathwise.algorithms.base import CommonConfig, Learner
from pathwise.algorithms.common import box_action_space
from pathwise.models import Dataset, DynamicsModel, FitConfig, FitReport, LearnedModel, fit
from pathwise.types import Array, PRNGKey, PyTree, Transition


@dataclasses.dataclass(frozen=True)
class ModelBasedConfig(CommonConfig):
    """Options shared by the model-based learners (defaults for Pendulum-v1)."""

    model_hidden: tuple[int, ...] = (200, 200)
    """Hidden layer sizes of the dynamics model (predicts the normalized change of observation)."""
    model_ensemble: int = 1
    """Number of ensemble members of the dynamics model (their mean is the prediction)."""
    model_lr: float = 1e-3
    """Adam step size of the model fit."""
    model_batch: int = 256
    """Minibatch size of the model fit."""
    model_steps_per_epoch: int = 100
    """Adam steps per model-fit epoch (validation after each)."""
    model_max_epochs: int = 30
    """Most epochs per refit (the model is warm-started from the previous fit)."""
    model_patience: int = 3
    """Epochs without validation improvement before a refit stops."""
    model_steps_per_transition: float = 0.0
    """If > 0, a model-fit epoch is at most this many Adam steps per training transition (fewer passes over a
    small data set; ``FitConfig.steps_per_transition``); 0 keeps ``model_steps_per_epoch``."""
    random_episodes: int = 1
    """Episodes with uniformly random actions (π₀) before the learned policy acts."""
    buffer_size: int = 100_000
    """Capacity of the transition buffer D (oldest overwritten first)."""
    recent_episodes: int = 4
    """Whole recent episodes kept for replay (SVG(∞)); also bounds memory of padded episodes."""
    max_episode_steps: int = 1000
    """Episode cap for environments without their own time limit (counted as truncation)."""
    learning_rate: float = 1e-3
    """Adam step size of the policy."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip of the policy update."""

    def fit_config(self) -> FitConfig:
        return FitConfig(learning_rate=self.model_lr, batch_size=self.model_batch,
                         steps_per_epoch=self.model_steps_per_epoch, max_epochs=self.model_max_epochs,
                         patience=self.model_patience, steps_per_transition=self.model_steps_per_transition)


class ModelBasedState(NamedTuple):
    """Everything a model-based learner resumes from."""

    policy: eqx.Module
    opt_state: PyTree
    model: DynamicsModel
    buffer: replay.ReplayBuffer  # single transitions: the data set D
    recent: replay.ReplayBuffer  # whole padded episodes (Transition [T]) with their lengths
    key: PRNGKey
    env_steps: Array
    episodes: Array  # real episodes collected so far
    skipped_updates: Array  # policy updates skipped because the gradient was not finite


# -- pure helpers ---------------------------------------------------------------------


def make_dynamics_model(obs_dim: int, action_dim: int, config: ModelBasedConfig, key: PRNGKey) -> DynamicsModel:
    return DynamicsModel(obs_dim, action_dim, config.model_hidden, key=key, ensemble_size=config.model_ensemble)


def pad_episode(episode: Transition, length: int) -> Transition:
    """Zero-pad a recorded episode (leading axis ``n <= length``) to ``length`` rows."""
    n = episode.obs.shape[0]
    return Transition(*(np.concatenate([np.asarray(x), np.zeros((length - n, *np.shape(x)[1:]), np.asarray(x).dtype)])
                        for x in episode))


def buffer_dataset(buffer: replay.ReplayBuffer) -> Dataset:
    """The transitions of ``buffer`` oldest first, as a ``Dataset`` (episode ends = terminated or truncated)."""
    # ordered on the host: replay.ordered's jnp gathers would compile once per buffer size
    size, capacity = int(buffer.size), buffer.capacity
    idx = ((int(buffer.ptr) - size) % capacity + np.arange(size)) % capacity
    t = jax.tree.map(lambda s: np.asarray(s)[idx], buffer.storage)
    return Dataset(t.obs, t.action, t.next_obs, t.terminated | t.truncated)


def refit_model(model: DynamicsModel, buffer: replay.ReplayBuffer, config: FitConfig, key: PRNGKey
                ) -> tuple[DynamicsModel, FitReport]:
    """Lecture step 2: refit ``f_φ`` (warm-started) on all of ``D``."""
    return fit(model, buffer_dataset(buffer), config, key)


def frozen(module: eqx.Module) -> eqx.Module:
    """``module`` with ``stop_gradient`` on every array: a frozen model passes gradients to its inputs only."""
    return jax.tree.map(lambda x: jax.lax.stop_gradient(x) if eqx.is_inexact_array(x) else x, module)


def learned_system(model: DynamicsModel, reward_fn: Callable, low: Array, high: Array, horizon: int) -> LearnedModel:
    """The frozen model as a ``System`` over observations with the known reward."""
    return LearnedModel(frozen(model), reward_fn, action_low=low, action_high=high, horizon=horizon)


def sample_starts(buffer: replay.ReplayBuffer, key: PRNGKey, n: int) -> Array:
    """``n`` observations drawn uniformly from ``D`` (start states of imagined rollouts)."""
    return replay.sample(buffer, key, n).obs


def fixed_bounds(grads: eqx.Module) -> eqx.Module:
    """``grads`` with zeros for a policy's action box (``low``/``high`` arrays are data, not parameters).

    The squashing policies store their box as float arrays, so ``eqx.is_inexact_array`` filters
    would hand them to Adam and the box would drift with the return's gradient.
    """
    names = [n for n in ("low", "high") if isinstance(getattr(grads, n, None), jax.Array)]
    if not names:
        return grads
    return eqx.tree_at(lambda g: [getattr(g, n) for n in names], grads,
                       [jnp.zeros_like(getattr(grads, n)) for n in names])


def adam_step_if_finite(policy: eqx.Module, grads: eqx.Module, opt_state: PyTree,
                        optimizer: optax.GradientTransformation) -> tuple[eqx.Module, PyTree, Array]:
    """Apply the update unless a gradient entry is NaN/inf; returns ``(policy, opt_state, skipped)``.

    The policy's action box (``low``/``high``) never moves (``fixed_bounds``).
    """
    grads = fixed_bounds(grads)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
    grads = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grads)
    updates, new_opt = optimizer.update(grads, opt_state, eqx.filter(policy, eqx.is_inexact_array))
    new_policy = eqx.apply_updates(policy, updates)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    params, static = eqx.partition(new_policy, eqx.is_inexact_array)
    old_params = eqx.filter(policy, eqx.is_inexact_array)
    return eqx.combine(keep(params, old_params), static), keep(new_opt, opt_state), (~finite).astype(jnp.int32)


def make_optimizer(config: ModelBasedConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate))


@jax.jit
def _append_episode(buffer: replay.ReplayBuffer, recent: replay.ReplayBuffer, padded: Transition, n: Array,
                    env_steps: Array, episodes: Array):
    """Append a padded episode of ``n`` real steps to ``D`` and to the recent-episode ring (one compiled program,
    shared by every learner in the process; op by op it was about 45 small XLA compilations)."""
    return (replay.add_batch(buffer, padded, n), replay.add(recent, (padded, n)), env_steps + n, episodes + 1)


# -- the Python loop ------------------------------------------------------------------


class ModelBasedLearner(Learner):
    """Collect → refit → improve; subclasses give ``make_policy``, ``behaviour_action``, ``mode_action``, ``improve``."""

    Config = ModelBasedConfig
    needs_reward = True

    def __init__(self, env_id: str, config: ModelBasedConfig | None = None, seed: int = 0):
        super().__init__(env_id, config, seed)
        from pathwise import envs, rewards

        self.env = envs.make_env(env_id)
        self.reward_fn = rewards.get(env_id)
        self.low, self.high = box_action_space(self.env, self.name)
        self.obs_dim = int(np.prod(self.env.observation_space.shape))
        self.action_dim = int(np.prod(self.env.action_space.shape))
        spec = self.env.spec
        self.limit = int(spec.max_episode_steps) if spec is not None and spec.max_episode_steps else \
            int(self.config.max_episode_steps)
        self.last_fit: FitReport | None = None
        self.state = self.init_state(jax.random.key(self.seed))
        self._mode = eqx.filter_jit(lambda policy, obs: self.mode_action(policy, obs))
        self._behaviour = eqx.filter_jit(lambda policy, obs, key: self.behaviour_action(policy, obs, key))

    # -- subclass API ---------------------------------------------------------
    @abc.abstractmethod
    def make_policy(self, key: PRNGKey) -> eqx.Module: ...

    @abc.abstractmethod
    def behaviour_action(self, policy: eqx.Module, obs: Array, key: PRNGKey) -> Array:
        """The exploring action used to collect real data (pure, jitted)."""

    @abc.abstractmethod
    def mode_action(self, policy: eqx.Module, obs: Array) -> Array:
        """The deterministic action used for evaluation (pure, jitted)."""

    @abc.abstractmethod
    def improve(self, state: ModelBasedState, key: PRNGKey) -> tuple[ModelBasedState, dict[str, Array]]:
        """Lecture step 3 on the refitted model in ``state.model`` (pure, jitted by the subclass)."""

    # -- state ---------------------------------------------------------------
    def init_state(self, key: PRNGKey) -> ModelBasedState:
        k_pol, k_model, key = jax.random.split(key, 3)
        policy = self.make_policy(k_pol)
        example = Transition(np.zeros(self.obs_dim, np.float32), np.zeros(self.action_dim, np.float32),
                             np.float32(0), np.zeros(self.obs_dim, np.float32), False, False)
        episode = jax.tree.map(lambda x: np.zeros((self.limit, *np.shape(x)), np.asarray(x).dtype), example)
        recent = replay.init((episode, np.int32(0)), self.config.recent_episodes)
        return ModelBasedState(policy, make_optimizer(self.config).init(eqx.filter(policy, eqx.is_inexact_array)),
                               make_dynamics_model(self.obs_dim, self.action_dim, self.config, k_model),
                               replay.init(example, self.config.buffer_size), recent, key,
                               jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def get_state(self) -> ModelBasedState:
        return self.state

    def set_state(self, state: ModelBasedState) -> None:
        self.state = ModelBasedState(*state)
        self.env_steps = int(self.state.env_steps)

    # -- the loop ------------------------------------------------------------
    def collect_episode(self, key: PRNGKey) -> tuple[Transition, float]:
        """One real episode from a reset seeded by ``key``: π₀ (uniform) first, then the behaviour policy."""
        from pathwise import envs

        k_seed, k_act = jax.random.split(key)
        seed = int(jax.random.randint(k_seed, (), 0, 2**31 - 1))
        keys = jax.random.split(k_act, self.limit)
        random_phase = int(self.state.episodes) < self.config.random_episodes
        t = [0]

        def act(obs):
            k = keys[min(t[0], self.limit - 1)]
            t[0] += 1
            if random_phase:
                return np.asarray(jax.random.uniform(k, (self.action_dim,), minval=self.low, maxval=self.high))
            return np.asarray(self._behaviour(self.state.policy, jnp.asarray(obs, jnp.float32), k))

        ep, ret, _ = envs.run_episode(self.env, act, seed=seed, max_steps=self.limit)
        f32 = lambda x: np.asarray(x, np.float32)
        episode = Transition(f32(ep.obs), f32(ep.action).reshape(-1, self.action_dim), f32(ep.reward),
                             f32(ep.next_obs), np.asarray(ep.terminated, bool), np.asarray(ep.truncated, bool))
        return episode, ret

    def store(self, episode: Transition) -> None:
        n = episode.obs.shape[0]
        buffer, recent, env_steps, episodes = _append_episode(
            self.state.buffer, self.state.recent, pad_episode(episode, self.limit), np.int32(n),
            self.state.env_steps, self.state.episodes)
        self.state = self.state._replace(buffer=buffer, recent=recent, env_steps=env_steps, episodes=episodes)

    def train_iteration(self) -> dict[str, float]:
        key, k_collect, k_fit, k_improve = jax.random.split(self.state.key, 4)
        self.state = self.state._replace(key=key)
        episode, ret = self.collect_episode(k_collect)
        self.store(episode)
        model, report = refit_model(self.state.model, self.state.buffer, self.config.fit_config(), k_fit)
        self.last_fit = report
        self.state, metrics = self.improve(self.state._replace(model=model), k_improve)
        self.env_steps = int(self.state.env_steps)
        return {"episode_return": float(ret), "model_one_step_mse": report.one_step_mse,
                "model_multi_step_mse": report.multi_step_mse, "model_epochs": float(report.epochs),
                "skipped_updates": float(self.state.skipped_updates),
                **{k: float(v) for k, v in metrics.items()}}

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        obs = jnp.asarray(obs, jnp.float32).reshape(self.obs_dim)
        if deterministic:
            return np.asarray(self._mode(self.state.policy, obs))
        self._act_calls = getattr(self, "_act_calls", 0) + 1
        key = jax.random.fold_in(jax.random.key(self.seed + 7919), self._act_calls)
        return np.asarray(self._behaviour(self.state.policy, obs, key))

    def describe(self) -> dict[str, Any]:
        if self.last_fit is None:
            return {}
        return {"model_one_step_mse": self.last_fit.one_step_mse,
                "model_multi_step_mse": self.last_fit.multi_step_mse}
