"""The model-based loop: the lecture's four steps, with only the reward known.

One iteration (:meth:`ModelBasedLoop.iteration`):

1. run the policy in the real environment (a base policy π₀ of uniformly random actions for the first
   ``random_episodes`` episodes) and append the visited tuples to ``D = {(x, u, x')}``;
2. refit the dynamics ``f_φ`` on all of ``D``, minimizing ``Σ ||f_φ(x, u) − x'||²`` (warm-started,
   :func:`pathwise.models.fit`);
3. improve the policy through the frozen ``f_φ``: ``update(state, ModelData(...), key, config)``, where
   the learned model is a ``System`` over observations with the environment's reward and termination
   (:class:`pathwise.models.LearnedModel`): the registered ones where they exist, else (or with
   ``reward_source``/``termination_source = "learned"``) heads of the model fitted on the observed rewards
   and ``terminated`` flags in step 2;
4. the next iteration runs the improved policy; repeat.

Step 1 collects whole episodes until at least ``min_steps_per_iteration`` real steps were taken and ``D``
holds enough transitions to fit (episodes of a falling pole can last a few steps). Besides ``D`` the loop
keeps the ``recent_episodes`` most recent whole episodes (padded), which SVG(∞) replays.

The model can be a probabilistic ensemble (``model_probabilistic``, ``model_ensemble``, ``model_elites``) whose
imagined rollouts follow a random elite (``model_sampling``), with the members' disagreement as an optimism bonus
(``exploration_bonus``); see :mod:`pathwise.models.dynamics`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise import envs, replay
from pathwise.algorithms.base import Algorithm
from pathwise.config import Options, at_least, one_of, positive
from pathwise.control.sampling import CEMConfig, MPPIConfig, SamplingConfig, SamplingMPC, SamplingPlan
from pathwise.loops import (Loop, NoiseOptions, act_once, act_with_noise_once, check_noise, colored_noise,
                            episode_seed, to_floats, uniform_from_noise, update_once)
from pathwise.models import Dataset, DynamicsModel, FitConfig, FitReport, LearnedModel, fit
from pathwise.models.learned import SAMPLING, JointLimit, check_limits
from pathwise.spec import DEFAULT_MAX_EPISODE_STEPS, EnvSpec
from pathwise.types import Array, PRNGKey, Transition


def is_function_path(source: str) -> bool:
    """Whether a reward source names a function, ``package.module:function``, rather than 'known'/'learned'/'auto'."""
    module, colon, name = source.partition(":")
    return bool(colon and module and name)


def own_reward(path: str, spec: EnvSpec) -> Callable[[Array, Array, Array], Array]:
    """The reward function ``path`` names (``reward_source``), traced once on a transition of ``spec``."""
    from pathwise import problems, registry

    fn = problems.load_object(path, "reward_source")
    if not callable(fn):
        raise ValueError(f"reward_source={path!r} names a {type(fn).__name__}, not a function; name a function "
                         "fn(obs, action, next_obs) -> scalar written with jax.numpy.")
    registry.check_functions(registry.EnvRecord(path, reward=fn), spec.obs_dim, spec.action_dim,
                             fix="fix it, or name another in reward_source")
    return fn


def _pinned(source: str, known: Any) -> str:
    """A reward or termination source with 'auto' decided: 'known' where ``known`` (the registered function) is
    not None, else 'learned'; 'known' and 'learned' as given."""
    return source if source != "auto" else "known" if known is not None else "learned"


@dataclasses.dataclass(frozen=True)
class ModelFitOptions(Options):
    """Options of a learned dynamics model and its fit (the model-based loop's, and the replay loop's model
    rollouts)."""

    #: angle_features before 0.3 (the raw observation); mirror since 2026-12-07, joint_limits since 2026-12-07 08:30
    #: UTC (none before)
    ADDED: ClassVar[dict[str, Any]] = {"angle_features": (), "mirror": (), "joint_limits": ()}

    angle_features: tuple[int, ...] | None = None
    """Observation entries that are unwrapped angles, which the dynamics model, and the policies of mbrl, svg-inf
    and svgk and svgk's value, see as (cos, sin); None = the environment's known ones (its registry record:
    reacher's shoulder), () = none."""
    mirror: tuple[float, ...] = ()
    """A reflection the task is invariant under, as one sign (1 or -1) per observation entry and then one per
    action entry: the model is fitted on D and on D's mirror image (observations and actions multiplied entry by
    entry by the signs, rewards and terminations kept), so it learns the mirrored half of the state space from
    data of one half; svgk's and mbrl's imagined rollouts start from a drawn state's mirror image half of the time.
    E.g. dm_control/reacher-easy-v0 (shoulder, wrist, to_target x and y, the two joint velocities; the two joint
    torques), reflected across the x axis: (-1, -1, 1, -1, -1, -1, -1, -1). The registered reward and
    termination are checked for it on the newest data at each fit; a learned one is assumed to share it.
    () = none."""
    joint_limits: tuple[float, ...] = ()
    """Joints whose limits the learned model keeps, five numbers per joint: its position's observation entry, its
    velocity's entry, the action entry of its motor (a positive action driving the position up), and the limits
    low and high in the observation's units. In imagination torque that pushes a joint at its limit further in does
    nothing, and a predicted position past the limit is held there with the outward velocity removed: a network
    fits the stop smoothly and lets the joint pass it where it has little data, so that a policy learns to reach
    through the stop. E.g. dm_control/reacher-easy-v0's wrist (observation entries 1 and 5, action 1, ±160°):
    (1, 5, 1, -2.7925, 2.7925). () = none."""
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
    small data set); 0 keeps model_steps_per_epoch."""
    model_probabilistic: bool = False
    """Gaussian members (mean and soft-bounded log-variance, fitted by negative log-likelihood): with
    model_ensemble > 1 a probabilistic ensemble (PETS)."""
    model_elites: int = 0
    """Members whose mean is the prediction, those of lowest held-out loss after each fit (0: every member)."""
    model_sampling: str = "mean"
    """How an imagined rollout uses the ensemble: 'mean' (the elites' mean), 'ts-inf' (one random elite per
    rollout) or 'ts-1' (a random elite per step); trajectory sampling of Chua et al. (2018)."""
    reward_source: str = "auto"
    """The imagined reward: 'known' (the registered reward), 'learned' (a head of the model fitted on the observed
    rewards), 'auto' (known where registered, else learned), or a reward of your own, 'package.module:function'
    (``fn(obs, action, next_obs) -> scalar`` in jax.numpy), imagined in place of the task's: what the planner and
    the imagined returns maximise (a planning objective, e.g. ``pathwise.rewards:inverted_pendulum_centred_reward``),
    while the real episodes and the evaluations keep scoring the task's own reward."""
    termination_source: str = "auto"
    """Imagined termination: 'known' (the registered rule), 'learned' (a logistic head fitted on the observed
    terminated flags; a rollout ends where its probability exceeds 0.5) or 'auto' (known where registered, else
    learned)."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + positive(self, "model_lr", "model_batch", "model_steps_per_epoch",
                                           "model_max_epochs", "model_patience", "model_ensemble") + \
            at_least(self, 0, "model_steps_per_transition", "model_elites") + \
            one_of(self, "model_sampling", SAMPLING) + \
            [(self.reward_source in SOURCES or is_function_path(self.reward_source),
              f"reward_source={self.reward_source!r} must be one of {', '.join(map(repr, SOURCES))} or a reward "
              "function of your own, 'package.module:function'")] + \
            one_of(self, "termination_source", SOURCES) + [
                (self.model_elites <= self.model_ensemble,
                 f"model_elites={self.model_elites} must be at most model_ensemble={self.model_ensemble}"),
                (all(s in (1, -1) for s in self.mirror), f"mirror={self.mirror} must hold signs, 1 or -1 (one per "
                                                         "observation entry, then one per action entry)"),
                (len(self.joint_limits) % 5 == 0, f"joint_limits={self.joint_limits} must hold five numbers per "
                                                  "joint (position entry, velocity entry, action entry, low, high)")]

    def limits(self, spec: EnvSpec) -> tuple[JointLimit, ...]:
        """``joint_limits`` as groups of five on ``spec``; ValueError where one names an entry ``spec`` lacks."""
        if not self.joint_limits:
            return ()
        if spec.discrete:
            raise ValueError(f"joint_limits: {spec.env_id!r} has discrete actions (a model of continuous actions "
                             "only); use joint_limits=() for none.")
        groups = [self.joint_limits[i:i + 5] for i in range(0, len(self.joint_limits), 5)]
        return check_limits(tuple(tuple(g) for g in groups), spec.obs_dim, spec.action_dim)

    def mirror_signs(self, spec: EnvSpec) -> tuple[np.ndarray, np.ndarray] | None:
        """``(observation signs, action signs)`` of ``mirror`` on ``spec`` (None without one); ValueError where
        their count is not the observation's entries plus the action's."""
        if not self.mirror:
            return None
        if spec.discrete or len(self.mirror) != spec.obs_dim + spec.action_dim:
            what = "its actions are discrete: a model of continuous actions only" if spec.discrete else \
                f"{spec.obs_dim + spec.action_dim} in all"
            raise ValueError(f"mirror holds {len(self.mirror)} signs, but {spec.env_id!r} needs one per observation "
                             f"entry ({spec.obs_dim}) and then one per action entry ({spec.action_dim}), {what}; "
                             "give those signs, or mirror=() for none.")
        signs = np.asarray(self.mirror, np.float32)
        return signs[:spec.obs_dim], signs[spec.obs_dim:]

    def learns(self, spec: EnvSpec) -> tuple[bool, bool]:
        """Whether the model learns the reward and the termination on ``spec`` (ValueError for 'known' where none
        is registered)."""
        out = []
        for what, source, known in (("reward", self.reward_source, spec.reward),
                                    ("termination", self.termination_source, spec.terminated)):
            if is_function_path(source):  # a reward of the user's own: not learned
                out.append(False)
                continue
            if source == "known" and known is None:
                raise ValueError(f"{what}_source='known' but no {what} of {spec.env_id!r} is registered; register "
                                 f"one (pathwise.registry.register({spec.env_id!r}, "
                                 f"{'reward' if what == 'reward' else 'terminated'}=fn)) or use {what}_source='auto' "
                                 "or 'learned' to learn it from the data.")
            out.append(_pinned(source, known) == "learned")
        return out[0], out[1]

    def imagined_reward(self, spec: EnvSpec) -> Callable[[Array, Array, Array], Array] | None:
        """The reward the model imagines with on ``spec``: the function ``reward_source`` names, the registered
        reward, or None where the model learns it (ValueError, naming the fix, for a function that cannot be
        imported or does not return one scalar on a transition of ``spec``)."""
        if is_function_path(self.reward_source):
            return own_reward(self.reward_source, spec)
        return None if self.learns(spec)[0] else spec.reward

    def resolved(self, spec: EnvSpec) -> "ModelFitOptions":
        """Also pins ``reward_source`` and ``termination_source`` 'auto' to 'known' or 'learned', as ``learns``
        decides them on ``spec`` (a run that learned its reward keeps learning it if one is registered later)."""
        return dataclasses.replace(super().resolved(spec), reward_source=_pinned(self.reward_source, spec.reward),
                                   termination_source=_pinned(self.termination_source, spec.terminated))

    def fit_config(self) -> FitConfig:
        """How the model is fitted."""
        return FitConfig(learning_rate=self.model_lr, batch_size=self.model_batch,
                         steps_per_epoch=self.model_steps_per_epoch, max_epochs=self.model_max_epochs,
                         patience=self.model_patience, steps_per_transition=self.model_steps_per_transition)

    def new_model(self, spec: EnvSpec, key: PRNGKey) -> DynamicsModel:
        """An untrained model of ``spec`` as these options describe it (with the heads ``learns`` asks for)."""
        learn_reward, learn_termination = self.learns(spec)
        return DynamicsModel(spec.obs_dim, spec.action_dim, self.model_hidden, key=key,
                             ensemble_size=self.model_ensemble, gaussian=self.model_probabilistic,
                             num_elites=self.model_elites, learn_reward=learn_reward,
                             learn_termination=learn_termination, angles=spec.angle_entries(self.angle_features))


@dataclasses.dataclass(frozen=True)
class ModelOptions(ModelFitOptions, NoiseOptions):
    """Options of the model-based loop (data collection and the dynamics model)."""

    #: before 0.3 the policy acted (the planner's sizes then unused)
    ADDED: ClassVar[dict[str, Any]] = {"act_planner": "none", "act_plan_horizon": 5, "act_plan_samples": 256,
                                       "act_plan_iterations": 4, "act_plan_policy_fraction": 0.1,
                                       "eval_planner": False, "uncertainty_penalty": 0.0}

    random_episodes: int = 1
    """Episodes with uniformly random actions (the base policy π₀) before the learned policy acts."""
    buffer_size: int = 100_000
    """Capacity of the transition data set D (oldest overwritten first)."""
    recent_episodes: int = 4
    """Whole recent episodes kept for replay (SVG(∞))."""
    min_steps_per_iteration: int = 0
    """Collect whole episodes until at least this many real steps per iteration (short episodes)."""
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS
    """Episode cap for environments without a time limit of their own (counted as truncation)."""
    exploration_bonus: float = 0.0
    """β of the optimism bonus: imagined rewards are r + β · disagreement (the variance of the members' predicted
    means, normalized units); 0: none. Needs model_ensemble > 1."""
    uncertainty_penalty: float = 0.0
    """λ of a pessimism penalty: imagined rewards are r − λ · disagreement (MOPO, Yu et al. 2020, penalises the
    model's uncertainty likewise), so that the policy's gradient leads away from where the members disagree, where
    the model errs most; 0: none. Needs model_ensemble > 1. With ``exploration_bonus`` β the reward is
    r + (β − λ) · disagreement. Kept by the planning agent's evaluation, which drops the bonus."""
    act_planner: str = "none"
    """How the learned policy's real episodes choose their actions: 'none' (a sample of the policy) or 'mppi' /
    'cem': at every real step a sampling planner over the freshly fitted model (:mod:`pathwise.control.sampling`),
    warm-started from the step before, ``act_plan_policy_fraction`` of its samples the policy's own rollouts and
    every sample's return closed by the algorithm's value where it has one (``planning_value``): TD-MPC's acting
    (Hansen et al. 2022). Only the collected data changes: checkpoints, export and (unless ``eval_planner``)
    evaluation keep the policy."""
    act_plan_horizon: int = 5
    """H of the acting planner: imagined steps of each sampled action sequence before the value closes it."""
    act_plan_samples: int = 256
    """Action sequences the acting planner scores per refit (the current mean and the policy's among them)."""
    act_plan_iterations: int = 4
    """Refits of the acting planner per real step (the first step of an episode plans from the box midpoint)."""
    act_plan_policy_fraction: float = 0.1
    """Fraction of the acting planner's samples drawn by rolling the (stochastic) policy through the model."""
    eval_planner: bool = False
    """Evaluate the run's planning agent instead of its deterministic policy: every evaluation (the trainer's, which
    picks best.npz and stops at a target, and ``pathwise evaluate``'s by default) plays the planner of
    ``act_planner`` (MPPI where it is 'none') with the ``act_plan_*`` sizes over the model fitted last, seeded by the
    policy and closed by the value, as TD-MPC evaluates its agent. A planner solve per step of every evaluation
    episode (the episodes in lockstep, one batched solve per step)."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + positive(self, "recent_episodes", "max_episode_steps", "act_plan_horizon",
                                           "act_plan_iterations") + \
            at_least(self, 0, "random_episodes", "min_steps_per_iteration", "exploration_bonus",
                     "uncertainty_penalty") + \
            at_least(self, FitConfig().min_transitions, "buffer_size") + at_least(self, 2, "act_plan_samples") + \
            one_of(self, "act_planner", ACT_PLANNERS) + [
                (getattr(self, name) == 0 or self.model_ensemble > 1,
                 f"{name} > 0 needs an ensemble to disagree: set model_ensemble > 1")
                for name in ("exploration_bonus", "uncertainty_penalty")] + [
                (0 <= self.act_plan_policy_fraction < 1,
                 f"act_plan_policy_fraction={self.act_plan_policy_fraction} must be in [0, 1)")]

    def agent_planner(self) -> str:
        """The sampling planner of the run's planning agent (evaluation, deployment): ``act_planner``, 'mppi' where
        the policy acts."""
        return self.act_planner if self.act_planner != "none" else "mppi"

    def acting_planner(self) -> SamplingConfig | None:
        """The ``CEMConfig`` or ``MPPIConfig`` of the acting planner (discounted by the algorithm's ``gamma`` where it
        has one, so that γ^H V closes the return as the value was learned), None for ``act_planner='none'``."""
        if self.act_planner == "none":
            return None
        kind = CEMConfig if self.act_planner == "cem" else MPPIConfig
        extra = {"elites": max(1, self.act_plan_samples // 10)} if kind is CEMConfig else {}
        return kind(horizon=self.act_plan_horizon, samples=self.act_plan_samples,
                    iterations=self.act_plan_iterations, init_iterations=self.act_plan_iterations,
                    policy_fraction=self.act_plan_policy_fraction, discount=getattr(self, "gamma", 1.0), **extra)


#: Where the imagined reward and termination come from (``ModelOptions.reward_source``/``termination_source``).
SOURCES = ("auto", "known", "learned")
#: How the learned policy's real episodes act (``ModelOptions.act_planner``).
ACT_PLANNERS = ("none", "mppi", "cem")


class ModelData(NamedTuple):
    """What ``update`` receives in the model-based loop."""

    system: LearnedModel  # the frozen model as a System over observations, with the known reward and termination
    buffer: replay.ReplayBuffer  # D: single transitions (start states of imagined rollouts)
    recent: replay.ReplayBuffer  # the most recent whole episodes: (padded Transition [T], length)


class ModelCarry(NamedTuple):
    """The model-based loop's carry: the algorithm's state, the model and the data."""

    algo: Any
    model: DynamicsModel
    buffer: replay.ReplayBuffer
    recent: replay.ReplayBuffer
    key: PRNGKey
    env_steps: Array
    episodes: Array


def frozen(module: Any) -> Any:
    """``module`` with ``stop_gradient`` on every array: gradients reach its inputs, never its parameters."""
    return jax.tree.map(lambda x: jax.lax.stop_gradient(x) if eqx.is_inexact_array(x) else x, module)


def learned_system(model: DynamicsModel, spec: EnvSpec, horizon: int, options: ModelFitOptions | None = None
                   ) -> LearnedModel:
    """The frozen model as a ``System``: the environment's known reward and termination, or the model's learned
    heads where it has them (it has them when ``options`` says to learn them); ``options`` also sets the
    trajectory sampling and (``ModelOptions``) the optimism bonus less the pessimism penalty."""
    model = frozen(model)
    options = ModelOptions() if options is None else options
    return LearnedModel(model, None if model.reward_head is not None else options.imagined_reward(spec),
                        reward_model=model.reward_head,
                        terminal_fn=None if model.termination_head is not None else spec.terminated,
                        termination_model=model.termination_head, action_low=spec.action_low,
                        action_high=spec.action_high, horizon=horizon, sampling=options.model_sampling,
                        bonus=getattr(options, "exploration_bonus", 0.0),
                        penalty=getattr(options, "uncertainty_penalty", 0.0),
                        limits=options.limits(spec))


def dataset(buffer: replay.ReplayBuffer) -> Dataset:
    """The transitions of ``D`` oldest first (episode ends: terminated or truncated)."""
    size, capacity = int(buffer.size), buffer.capacity  # ordered on the host: no program per data-set size
    idx = ((int(buffer.ptr) - size) % capacity + np.arange(size)) % capacity
    t = jax.tree.map(lambda s: np.asarray(s)[idx], buffer.storage)
    return Dataset(t.obs, t.action, t.next_obs, t.terminated | t.truncated, t.reward, t.terminated)


def fit_data(buffer: replay.ReplayBuffer, spec: EnvSpec, options: ModelFitOptions) -> Dataset:
    """What the model is fitted on: ``D`` (:func:`dataset`), followed by its mirror image where ``options.mirror``
    gives one (the last transition of ``D`` then ends a block, so multi-step errors never cross into the image)."""
    data, signs = dataset(buffer), options.mirror_signs(spec)
    if signs is None:
        return data
    check_mirror(spec, data, *signs, options)
    return mirrored(data, *signs)


def mirrored(data: Dataset, obs_signs: np.ndarray, action_signs: np.ndarray) -> Dataset:
    """``data`` followed by its mirror image (observations and actions multiplied by the signs, rewards and
    terminations kept; ``Dataset.images``: the fit holds out a transition and its image together); the last
    transition of ``data`` ends a block, so no multi-step error crosses the seam."""
    ends = np.asarray(data.ends).copy()
    ends[-1] = True
    twice = lambda x: None if x is None else np.concatenate([x, x])  # noqa: E731
    return Dataset(np.concatenate([data.obs, data.obs * obs_signs]),
                   np.concatenate([data.actions, data.actions * action_signs]),
                   np.concatenate([data.next_obs, data.next_obs * obs_signs]), twice(ends), twice(data.rewards),
                   twice(data.terminated), images=len(ends))


def check_mirror(spec: EnvSpec, data: Dataset, obs_signs: np.ndarray, action_signs: np.ndarray,
                 options: ModelFitOptions, rows: int = 256) -> None:
    """ValueError where the registered reward or termination that the run uses changes under the mirror on one of
    the last ``rows`` transitions of ``data`` (the newest: each fit checks the states its data gained since the
    one before): then the signs describe no symmetry of the task."""
    learn_reward, learn_termination = options.learns(spec)
    o, a, o2 = (np.asarray(x[-rows:], np.float32) for x in (data.obs, data.actions, data.next_obs))
    mo, ma, mo2 = o * obs_signs, a * action_signs, o2 * obs_signs
    checks = []
    if not learn_reward:
        reward = jax.vmap(options.imagined_reward(spec))
        checks.append(("reward", np.asarray(reward(o, a, o2)), np.asarray(reward(mo, ma, mo2))))
    if not learn_termination and spec.terminated is not None:
        done = jax.vmap(spec.terminated)
        checks.append(("termination", np.asarray(done(o2)), np.asarray(done(mo2))))
    for what, plain, image in checks:
        bad = np.flatnonzero(~np.isclose(plain.astype(np.float32), image.astype(np.float32), rtol=1e-4, atol=1e-5))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"mirror={tuple(float(s) for s in (*obs_signs, *action_signs))} is no symmetry of "
                             f"{spec.env_id!r}: its registered {what} is {plain[i]} on a transition of D and "
                             f"{image[i]} on its mirror image ({bad.size} of {len(plain)} checked differ). Give "
                             "the signs of a reflection that leaves the dynamics, the reward and the termination "
                             "unchanged, or mirror=() for none.")


def mirror_half(starts: Array, key: PRNGKey, config: ModelFitOptions) -> Array:
    """Imagined rollouts' start states: with ``config.mirror``, each of ``starts`` replaced by its mirror image with
    probability 1/2 (the policy learns both halves of the state space); ``starts`` unchanged without one."""
    if not config.mirror:
        return starts
    signs = jnp.asarray(config.mirror[:starts.shape[-1]], starts.dtype)
    flip = jax.random.bernoulli(key, 0.5, starts.shape[:-1])[..., None]
    return jnp.where(flip, starts * signs, starts)


def acting_mpc(algo: Any, system: LearnedModel, act: Any, value: Any, config: Any, planner: SamplingConfig,
               key: PRNGKey) -> SamplingMPC:
    """The acting planner (``planner``: ``config.acting_planner()``) over ``system``, its samples partly the policy's
    (``act(algo, obs, key, False)``), each return closed by ``value(algo, obs, config)`` where there is one."""
    terminal = None if value is None else (lambda obs: value(algo, obs, config))
    return SamplingMPC(system, planner, policy=lambda obs, k: act(algo, obs, k, False), value=terminal, key=key)


@eqx.filter_jit
def planned_start(algo: Any, system: LearnedModel, obs: Array, key: PRNGKey, act: Any, value: Any, config: Any,
                  planner: SamplingConfig) -> SamplingPlan:
    """An episode's first plan from ``obs`` (from the action box's midpoint)."""
    return acting_mpc(algo, system, act, value, config, planner, key).init(obs)


@eqx.filter_jit
def planned_step(algo: Any, system: LearnedModel, plan: SamplingPlan, obs: Array, act: Any, value: Any, config: Any,
                 planner: SamplingConfig) -> tuple[SamplingPlan, Array]:
    """Re-plan from ``obs``, warm-started from ``plan``: the next plan and the action now."""
    return acting_mpc(algo, system, act, value, config, planner, plan.key).step(plan, obs)


@eqx.filter_jit
def planned_starts(algo: Any, system: LearnedModel, obs: Array, keys: PRNGKey, act: Any, value: Any, config: Any,
                   planner: SamplingConfig) -> SamplingPlan:
    """:func:`planned_start` for a batch of episodes at once: ``obs`` ``[N, obs_dim]``, one key each."""
    return eqx.filter_vmap(lambda o, k: acting_mpc(algo, system, act, value, config, planner, k).init(o))(obs, keys)


@eqx.filter_jit
def planned_steps(algo: Any, system: LearnedModel, plans: SamplingPlan, obs: Array, act: Any, value: Any, config: Any,
                  planner: SamplingConfig) -> tuple[SamplingPlan, Array]:
    """:func:`planned_step` for a batch of episodes at once: the next plans and ``[N, action_dim]`` actions."""
    return eqx.filter_vmap(lambda p, o: acting_mpc(algo, system, act, value, config, planner, p.key).step(p, o))(
        plans, obs)


@eqx.filter_jit
def own_plan_starts(mpc: SamplingMPC, obs: Array, keys: PRNGKey) -> SamplingPlan:
    """The first plans of a batch of episodes by a planning algorithm's own planner (pets's ``episode_planner``):
    ``obs`` ``[N, obs_dim]``, one key each."""
    return jax.vmap(lambda o, k: mpc.init(o, k))(obs, keys)


@eqx.filter_jit
def own_plan_steps(mpc: SamplingMPC, plans: SamplingPlan, obs: Array) -> tuple[SamplingPlan, Array]:
    """Each episode re-planned from its plan of the step before by a planning algorithm's own planner: the next
    plans and ``[N, action_dim]`` actions."""
    return jax.vmap(mpc.step)(plans, obs)


def exploiting(mpc: SamplingMPC) -> SamplingMPC:
    """A planning algorithm's planner over its learned model without the exploration bonus (the penalty kept), to
    exploit the model (pets's evaluations and deterministic ``act``)."""
    return eqx.tree_at(lambda p: p.system, mpc, mpc.system.exploiting())


def carried_actor(start: Callable[[Array], SamplingPlan],
                  step: Callable[[SamplingPlan, Array], tuple[SamplingPlan, Array]]
                  ) -> Callable[[Any, int], np.ndarray]:
    """``act(obs, t)`` of a real episode acted by a planner that carries its plan: ``start(obs)`` plans afresh at
    t = 0, then ``step(plan, obs) -> (plan, action)`` re-plans from the step before at every step (one compiled
    program each, whatever the model's weights)."""
    plan: list[SamplingPlan] = []

    def actor(obs, t):
        obs = jnp.asarray(obs, jnp.float32)
        if t == 0:
            plan[:] = [start(obs)]
        plan[0], action = step(plan[0], obs)
        return np.asarray(action)

    return actor


class PlanningController:
    """The planning agent of a model-based run, to evaluate or deploy: at every step a sampling planner (MPPI or CEM)
    over the run's learned model, warm-started from the step before: a policy learner's seeded by the policy and
    closed by the algorithm's value (``act_planner``'s acting), a planning algorithm's its own (pets's
    ``episode_planner``). :meth:`pathwise.train.Run.planner` builds it (:meth:`for_policy`, :meth:`own`).

    ``reset()`` starts new episodes; the next call plans from scratch, later calls warm-start. Call it with one
    observation (``(obs_dim,)`` -> one action) or a batch of episodes in lockstep (``(N, obs_dim)`` -> ``N`` actions,
    one vmapped program per step). Episode ``i`` since the controller was made draws its samples from
    ``fold_in(key, i)``, so a batch plays as its episodes would one at a time. The agent plans without the
    exploration bonus (it exploits the model; the bonus is for the real episodes that collect data), the pessimism
    penalty kept: a policy learner's and a planning algorithm's alike.
    """

    def __init__(self, starts: Callable[[Array, PRNGKey], SamplingPlan],
                 steps: Callable[[SamplingPlan, Array], tuple[SamplingPlan, Array]], planner: SamplingConfig,
                 spec: EnvSpec, key: PRNGKey, precision: Any, config: Any = None):
        """``starts(obs [N, obs_dim], keys [N])``: the episodes' first plans; ``steps(plans, obs)``: the next plans
        and the actions; ``planner``: the sampling planner's config (what :meth:`describe` reports); ``config``: the
        run's options the agent plans with (a policy learner's, its exploration bonus dropped), None for a planning
        algorithm's own planner (its model's bonus dropped by :meth:`ModelBasedLoop.planning_controller`)."""
        self.planner, self.spec, self.config, self._starts, self._steps = planner, spec, config, starts, steps
        self._key, self._precision = key, precision
        self._plans: SamplingPlan | None = None
        self._episodes = 0  # episodes started so far (each draws its own key)

    @classmethod
    def for_policy(cls, algorithm: Algorithm, algo: Any, system: LearnedModel, config: Any, spec: EnvSpec,
                   key: PRNGKey, precision: Any) -> "PlanningController":
        """A policy learner's planning agent: ``config.acting_planner()`` over ``system``, seeded by the policy of
        ``algo`` and closed by its value."""
        args = (algorithm.act, algorithm.hook("planning_value"), config, config.acting_planner())
        return cls(lambda obs, keys: planned_starts(algo, system, obs, keys, *args),
                   lambda plans, obs: planned_steps(algo, system, plans, obs, *args), args[-1], spec, key, precision,
                   config)

    @classmethod
    def own(cls, mpc: SamplingMPC, spec: EnvSpec, key: PRNGKey, precision: Any) -> "PlanningController":
        """A planning algorithm's agent: its own planner ``mpc`` (pets's ``episode_planner``), warm-started."""
        return cls(lambda obs, keys: own_plan_starts(mpc, obs, keys),
                   lambda plans, obs: own_plan_steps(mpc, plans, obs), mpc.config, spec, key, precision)

    def describe(self) -> str:
        """Who plays, in words: e.g. "planning by mppi (horizon 16, 256 samples, 4 refits per step)"."""
        kind = "cem" if isinstance(self.planner, CEMConfig) else "mppi"
        return (f"planning by {kind} (horizon {self.planner.horizon}, {self.planner.samples} samples, "
                f"{self.planner.iterations} refits per step)")

    def reset(self) -> None:
        """New episodes: the next call plans from scratch."""
        self._plans = None

    def __call__(self, obs: Any) -> np.ndarray:
        """The action for ``obs`` (one observation or a batch of episodes, as the first call after ``reset``)."""
        obs, dim = np.asarray(obs, np.float32), self.spec.obs_dim
        if obs.shape != (dim,) and not (obs.ndim == 2 and obs.shape[1] == dim and len(obs) > 0):
            raise ValueError(f"planner: observation of shape {obs.shape}, expected ({dim},) or (episodes, {dim}) "
                             f"for {self.spec.env_id}.")
        single, batch = obs.ndim == 1, obs.reshape(-1, dim)
        if not np.all(np.isfinite(batch)):
            raise ValueError("planner: the observation contains NaN or inf; pass a finite observation.")
        with self._precision():
            if self._plans is None:
                index = jnp.arange(self._episodes, self._episodes + len(batch))
                keys = jax.vmap(lambda i: jax.random.fold_in(self._key, i))(index)
                self._plans = self._starts(jnp.asarray(batch), keys)
                self._episodes += len(batch)
            elif self._plans.actions.shape[0] != len(batch):
                raise ValueError(f"planner: {len(batch)} observations where the episodes under way are "
                                 f"{self._plans.actions.shape[0]}; call reset() before a batch of another size.")
            self._plans, actions = self._steps(self._plans, jnp.asarray(batch))
        actions = np.clip(np.asarray(actions), np.asarray(self.spec.action_low), np.asarray(self.spec.action_high))
        return actions[0] if single else actions


@jax.jit
def _append(buffer: replay.ReplayBuffer, recent: replay.ReplayBuffer, padded: Transition, n: Array, env_steps: Array,
            episodes: Array):
    """Append a padded episode of ``n`` real steps to ``D`` and to the recent-episode ring (one program)."""
    return replay.add_batch(buffer, padded, n), replay.add(recent, (padded, n)), env_steps + n, episodes + 1


class ModelBasedLoop(Loop):
    """Collect, fit, improve through the frozen model (see the module docstring)."""

    kind = "model_based"

    def __init__(self, algorithm: Algorithm, spec: EnvSpec, config: Any):
        super().__init__(algorithm, spec, config)
        self.limit = spec.max_steps(config)
        if self.limit > config.buffer_size:
            raise ValueError(f"buffer_size={config.buffer_size} must hold at least one whole episode of "
                             f"{spec.env_id} ({self.limit} steps).")
        self.planner = config.acting_planner()
        if (self.planner is not None or config.eval_planner) and algorithm.info.planner:
            what = f"act_planner={config.act_planner!r}" if self.planner is not None else "eval_planner=True"
            raise ValueError(f"{what}: {algorithm.name} acts by planning already; the option plans over a learned "
                             "policy's actions. Leave act_planner='none' and eval_planner=False.")
        self.learn_reward, self.learn_termination = config.learns(spec)
        config.imagined_reward(spec)  # a reward_source function that cannot be imported or traced: refused here
        config.mirror_signs(spec)  # signs of the wrong count are refused here
        config.limits(spec)  # and joint limits that name entries the task lacks
        check_noise(algorithm, config)
        self.env = envs.make_env(spec.env_id)
        self.last_fit: FitReport | None = None

    def init(self, key: PRNGKey) -> ModelCarry:
        k_algo, k_model, key = jax.random.split(key, 3)
        spec, cfg = self.spec, self.config
        item = Transition(np.zeros(spec.obs_dim, np.float32), np.zeros(spec.action_dim, np.float32), np.float32(0),
                          np.zeros(spec.obs_dim, np.float32), False, False)
        episode = jax.tree.map(lambda x: np.zeros((self.limit, *np.shape(x)), np.asarray(x).dtype), item)
        model = cfg.new_model(spec, k_model)
        zero = jnp.zeros((), jnp.int32)
        return ModelCarry(self.algorithm.init(k_algo, spec, cfg), model, replay.init(item, cfg.buffer_size),
                          replay.init((episode, np.int32(0)), cfg.recent_episodes), key, zero, zero)

    def iteration_is(self) -> str:
        least = self.config.min_steps_per_iteration
        if least:
            return (f"whole episodes until at least {least:,} new steps (min_steps_per_iteration) and enough "
                    "transitions to fit the model")
        return "one whole episode (more while there are too few transitions to fit the model)"

    def iteration(self, carry: ModelCarry) -> tuple[ModelCarry, dict[str, float]]:
        key, k_collect, k_fit, k_update = jax.random.split(carry.key, 4)
        carry, returns = self.collect(carry._replace(key=key), k_collect)  # 1. run the policy, append to D
        model, report = fit(carry.model, fit_data(carry.buffer, self.spec, self.config), self.config.fit_config(),
                            k_fit)  # 2. fit f
        data = ModelData(learned_system(model, self.spec, self.limit, self.config), carry.buffer, carry.recent)
        algo, metrics = update_once(self.algorithm.update, carry.algo, data, k_update, self.config)  # 3. improve
        self.last_fit = report
        out = {"episode_return": float(np.mean(returns)), "episodes_collected": float(len(returns)),
               "model_one_step_mse": report.one_step_mse, "model_multi_step_mse": report.multi_step_mse,
               "model_epochs": float(report.epochs), **to_floats(metrics)}
        if not np.isfinite(report.multi_step_mse):  # no held-out block without an episode end: not measured
            del out["model_multi_step_mse"]
        return carry._replace(algo=algo, model=model), out

    def collect(self, carry: ModelCarry, key: PRNGKey) -> tuple[ModelCarry, list[float]]:
        """Lecture steps 1 and 4: whole real episodes appended to D until there are enough new steps to refit."""
        returns, steps, need = [], 0, self.config.fit_config().min_transitions
        while not returns or steps < self.config.min_steps_per_iteration or int(carry.buffer.size) < need:
            k_seed, k_act = jax.random.split(jax.random.fold_in(key, len(returns)) if returns else key)
            act = self._actor(carry, k_act)
            episode, length, total = envs.collect_padded(self.env, act, episode_seed(k_seed), self.limit)
            buffer, recent, env_steps, episodes = _append(carry.buffer, carry.recent, episode, np.int32(length),
                                                          carry.env_steps, carry.episodes)
            carry = carry._replace(buffer=buffer, recent=recent, env_steps=env_steps, episodes=episodes)
            returns.append(total)
            steps += length
        return carry, returns

    def _actor(self, carry: ModelCarry, key: PRNGKey):
        keys, colored = jax.random.split(key, self.limit), self.config.noise_color > 0
        if int(carry.episodes) < self.config.random_episodes:  # π₀: uniformly random actions
            low, high = np.asarray(self.spec.action_low, np.float32), np.asarray(self.spec.action_high, np.float32)
            if colored:  # Φ(z) of a standard normal z is uniform on (0, 1)
                actions = uniform_from_noise(self._colored_noise(key), self.spec)
            else:
                actions = jax.vmap(lambda k: jax.random.uniform(k, low.shape, minval=low, maxval=high))(keys)
            actions = np.asarray(actions)
            return lambda obs, t: actions[t]
        if self.planner is not None:
            return self._planning_actor(carry, key)
        own = self.own_planner(carry)
        if own is not None:  # a planning algorithm (pets) carrying its plan through the episode
            return self._own_planning_actor(own, key)
        if not colored or self.algorithm.info.planner:  # a planning algorithm (pets) plans its own actions
            return self._policy_actor(carry, keys)
        return self._noise_actor(carry, self._colored_noise(key))

    def _colored_noise(self, key: PRNGKey) -> Array:
        """One episode's standard-normal noise of spectrum 1/f^noise_color, shape ``(limit, *action shape)``."""
        return colored_noise(key, self.limit, self.spec, self.config.noise_color)

    def _policy_actor(self, carry: ModelCarry, keys: PRNGKey):
        return lambda obs, t: np.asarray(act_once(self.algorithm.act, carry.algo,
                                                  jnp.asarray(obs, jnp.float32).reshape(-1), keys[t], False))

    def _noise_actor(self, carry: ModelCarry, noise: Array):
        """``act(obs, t)`` of the policy's sample for step t's share of the episode's colored noise."""
        act = self.algorithm.hook("act_from_noise")

        def actor(obs, t):
            return np.asarray(act_with_noise_once(act, carry.algo, jnp.asarray(obs, jnp.float32).reshape(-1), noise[t]))

        return actor

    def _planning_actor(self, carry: ModelCarry, key: PRNGKey):
        """``act(obs, t)`` of the acting planner (``act_planner``) over the current model (:func:`carried_actor`)."""
        system = learned_system(carry.model, self.spec, self.limit, self.config)
        args = (self.algorithm.act, self.algorithm.hook("planning_value"), self.config, self.planner)
        return carried_actor(lambda obs: planned_start(carry.algo, system, obs.reshape(-1), key, *args),
                             lambda plan, obs: planned_step(carry.algo, system, plan, obs.reshape(-1), *args))

    def own_planner(self, carry: ModelCarry) -> SamplingMPC | None:
        """A planning algorithm's planner over the current model that acts with a plan carried from step to step
        (its ``episode_planner``), None where the algorithm has none (a policy learner; pets without
        ``plan_warm_start``: its ``act`` plans every step anew)."""
        hook = self.algorithm.hook("episode_planner")
        return None if hook is None else hook(carry.algo, self.config)

    def _own_planning_actor(self, mpc: SamplingMPC, key: PRNGKey):
        """``act(obs, t)`` of a planning algorithm's own planner (:func:`carried_actor`; a batch of one episode)."""
        def step(plan: SamplingPlan, obs: Array) -> tuple[SamplingPlan, Array]:
            plan, actions = own_plan_steps(mpc, plan, obs.reshape(1, -1))
            return plan, actions[0]

        return carried_actor(lambda obs: own_plan_starts(mpc, obs.reshape(1, -1), key[None]), step)

    def evaluates_by_planner(self, carry: ModelCarry) -> bool:
        """A planning algorithm that carries its plan (:meth:`own_planner`) is evaluated by that planner rather than
        by its ``act``, which plans every step anew."""
        return self.own_planner(carry) is not None

    def describe(self, carry: ModelCarry) -> dict[str, Any]:
        """Also who the run's evaluations play where it is not the policy (``eval_planner``)."""
        out = super().describe(carry)
        if self.config.eval_planner:
            out["evaluated_by"] = f"planning agent: {self.config.agent_planner()}, horizon " \
                                  f"{self.config.act_plan_horizon}"
        return out

    def planning_controller(self, carry: ModelCarry, key: PRNGKey, precision: Any, **options: Any
                            ) -> PlanningController:
        """The run's planning agent (:class:`PlanningController`) over its current model. ``options``:
        ``act_planner`` ('mppi' or 'cem'; default the run's own, 'mppi' if it trained acting by its policy) and
        ``act_plan_horizon``/``samples``/``iterations``/``policy_fraction`` (default the run's); a planning
        algorithm's agent is its own planner and takes none. Either plans without the exploration bonus."""
        if self.algorithm.info.planner:
            own = self.own_planner(carry)
            if own is None or any(v is not None for v in options.values()):
                raise ValueError(f"{self.algorithm.name} acts by planning already: its policy's evaluation is its "
                                 "planner (evaluate it without a planner).")
            # the agent exploits the model, as a policy learner's does: the bonus is for the episodes that collect D
            return PlanningController.own(exploiting(own), self.spec, key, precision)
        unknown = sorted(set(options) - {"act_planner", "act_plan_horizon", "act_plan_samples",
                                         "act_plan_iterations", "act_plan_policy_fraction"})
        if unknown:
            raise ValueError(f"planner: unknown option(s) {unknown}; the options are act_planner, act_plan_horizon, "
                             "act_plan_samples, act_plan_iterations and act_plan_policy_fraction.")
        options = {k: v for k, v in options.items() if v is not None}
        kind = options.pop("act_planner", None) or self.config.agent_planner()
        if kind not in ("mppi", "cem"):
            raise ValueError(f"planner: act_planner={kind!r}; plan by 'mppi' or 'cem'.")
        config = dataclasses.replace(self.config, act_planner=kind, exploration_bonus=0.0, **options)
        system = learned_system(carry.model, self.spec, self.limit, config)
        return PlanningController.for_policy(self.algorithm, carry.algo, system, config, self.spec, key, precision)

    def close(self) -> None:
        self.env.close()


__all__ = ["ACT_PLANNERS", "ModelBasedLoop", "ModelCarry", "ModelData", "ModelFitOptions", "ModelOptions",
           "PlanningController", "SOURCES", "acting_mpc", "carried_actor", "dataset", "exploiting", "frozen",
           "learned_system", "own_plan_starts", "own_plan_steps", "planned_start", "planned_starts", "planned_step",
           "planned_steps"]
