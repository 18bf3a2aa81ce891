"""PETS: probabilistic ensembles with trajectory sampling, planned with CEM (Chua et al. 2018). No policy network.

The model-based loop (:mod:`pathwise.loops.model_based`) collects real episodes, fits a probabilistic ensemble
(Gaussian members trained by negative log-likelihood, elites; ``model_*`` options) and hands the frozen model to
``update`` as a ``System``; ``update`` only stores it. ``act`` is the policy: from the observation ``o`` it runs
the cross-entropy method (:func:`pathwise.control.cem`) over that model,

    max_U  1/P Σ_{p<P} Σ_{t<H} r(x^p_t, u_t),   x^p_0 = o,   x^p_{t+1} = f_{b_p}(x^p_t, u_t),

each particle ``p`` following an elite ``b_p`` drawn once per rollout (trajectory sampling TS-∞, Chua et al. 2018,
Sec. 4.2 and Eq. 4; ``system.sample(key)`` per particle, ``plan_particles`` of them per sampled sequence, each
member's mean prediction, no aleatoric draw), and returns the first action of the refit mean: model-predictive
control, re-planned at every real step. As in the paper, the loop's real episodes and the run's evaluations carry
the plan from step to step (``plan_warm_start``, :func:`episode_planner`): each step's CEM starts from the mean
found at the step before, shifted by one step (its last action repeated), with the sampling σ reset; an episode's
first step plans from the action box's midpoint. ``act`` alone holds no plan between calls (the contract's ``act``
returns an action only), so a call to it plans from the midpoint: what ``pathwise evaluate --planner none`` and
``Agent.predict`` play. With an exploration bonus (``exploration_bonus``) the real episodes plan with it, to draw
new data; the evaluations and a deterministic ``act`` plan over the model less the bonus (the pessimism penalty
kept), exploiting it (:func:`pathwise.loops.model_based.exploiting`).

Before the first fit ``act`` plans over the untrained model; the loop's first ``random_episodes`` act uniformly at
random anyway. A planner is not a network: ``pathwise export`` refuses it (``AlgorithmInfo.planner``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax

from pathwise import replay
from pathwise.algorithms.base import AlgorithmInfo, CommonConfig
from pathwise.config import at_least, positive
from pathwise.control.sampling import CEMConfig, SamplingMPC
from pathwise.loops.model_based import ModelData, ModelOptions, exploiting, learned_system
from pathwise.spec import EnvSpec
from pathwise.types import Array, PRNGKey

INFO = AlgorithmInfo("pets", loops=("model_based",), planner=True,
                     summary="PETS: CEM planning over a probabilistic ensemble with trajectory sampling (no policy).")


@dataclasses.dataclass(frozen=True)
class Config(CommonConfig, ModelOptions):
    """PETS options: the model-based loop's, with a probabilistic ensemble, and the CEM planner's."""

    #: before 2026-12-07 every step planned from the action box's midpoint
    ADDED: ClassVar[dict[str, Any]] = {"plan_warm_start": False}

    hidden: tuple[int, ...] = (64, 64)
    """Unused: PETS has no policy network (the planner acts); the model's layers are model_hidden."""
    model_ensemble: int = 5
    """Members of the probabilistic ensemble (5 in PETS)."""
    model_probabilistic: bool = True
    """Gaussian members fitted by negative log-likelihood (the 'P' of PETS)."""
    model_elites: int = 0
    """Members the particles are drawn from, those of lowest held-out loss after each fit (0: every member, as
    in PETS)."""
    model_sampling: str = "ts-inf"
    """How each particle uses the ensemble: 'ts-inf' (one random elite per rollout, PETS's TS-∞), 'ts-1' (a random
    elite per step) or 'mean' (the elites' mean; particles are then all alike)."""
    plan_horizon: int = 30
    """H: steps of each action sequence CEM scores (the MPC horizon)."""
    plan_samples: int = 400
    """N: action sequences CEM scores per refit (the current mean is one of them)."""
    plan_elites: int = 40
    """K: the best sequences the sampling mean and std are refit to (K <= plan_samples)."""
    plan_iterations: int = 5
    """CEM refits per real step (from the previous step's shifted plan with ``plan_warm_start``, else from the
    action box's midpoint)."""
    plan_warm_start: bool = True
    """Carry the plan through each real episode and evaluation episode (PETS's MPC): every step's CEM starts from
    the previous step's mean shifted by one step, σ reset; the episode's first step from the box midpoint.
    False: every step plans from the midpoint."""
    plan_smoothing: float = 0.1
    """α: weight of the old mean and std in each refit, μ ← α μ + (1 − α) μ_elites (0: none)."""
    plan_particles: int = 1
    """P: rollouts per sequence, each through its own sampled member; the score is their mean return."""
    plan_starts: int = 4
    """Replayed start states whose planned return ``update`` reports (a metric; no effect on acting)."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + positive(self, "plan_horizon", "plan_elites", "plan_iterations",
                                           "plan_particles", "plan_starts") + \
            at_least(self, 2, "plan_samples") + [
                (self.plan_elites <= self.plan_samples,
                 f"plan_elites={self.plan_elites} must be at most plan_samples={self.plan_samples}; e.g. "
                 "plan_elites = plan_samples // 10"),
                (0 <= self.plan_smoothing < 1, f"plan_smoothing={self.plan_smoothing} must be in [0, 1) (0: none)")]

    def planner(self) -> CEMConfig:
        """The ``CEMConfig`` these options describe (``plan_iterations`` refits per step, from scratch or warm)."""
        return CEMConfig(horizon=self.plan_horizon, samples=self.plan_samples, elites=self.plan_elites,
                         iterations=self.plan_iterations, init_iterations=self.plan_iterations,
                         smoothing=self.plan_smoothing, particles=self.plan_particles)


class State(NamedTuple):
    """The planner over the frozen learned model (the model and D themselves live in the loop's carry)."""

    planner: SamplingMPC


def init(key: PRNGKey, spec: EnvSpec, config: Config) -> State:
    """A planner over an untrained model of ``spec`` (replaced by the fitted one at every ``update``)."""
    k_model, k_plan = jax.random.split(key)
    system = learned_system(config.new_model(spec, k_model), spec, spec.max_steps(config), config)
    return State(SamplingMPC(system, config.planner(), key=k_plan))


def planned_returns(planner: SamplingMPC, starts: Array, key: PRNGKey) -> Array:
    """The best planned return (mean over particles) from each start state ``(B, obs_dim)``, one CEM solve each."""
    return jax.vmap(lambda s, k: planner.solve(s, k).best_return)(starts, jax.random.split(key, starts.shape[0]))


def update(state: State, data: ModelData, key: PRNGKey, config: Config) -> tuple[State, dict[str, Array]]:
    """Keep the freshly fitted model (``data.system``) for planning; report the planned return from
    ``plan_starts`` start states replayed from D (what the model promises; compare ``episode_return``)."""
    planner = eqx.tree_at(lambda p: p.system, state.planner, data.system)
    k_starts, k_plan = jax.random.split(key)
    starts = replay.sample(data.buffer, k_starts, config.plan_starts).obs
    return State(planner), {"planned_return": planned_returns(planner, starts, k_plan).mean()}


def act(state: State, obs: Array, key: PRNGKey, deterministic: bool = True) -> Array:
    """The first action of the CEM plan from ``obs`` over the learned model; ``deterministic`` plans with a fixed
    key (the same observation gives the same action) over the model less its exploration bonus (it exploits the
    model), else with ``key`` over the model as ``update`` kept it (the bonus included: it explores)."""
    if deterministic:
        return exploiting(state.planner).solve(obs, jax.random.key(0)).actions[0]
    return state.planner.solve(obs, key).actions[0]


def episode_planner(state: State, config: Config) -> SamplingMPC | None:
    """The planner the model-based loop acts by through an episode, carrying its plan from step to step
    (``SamplingMPC.init`` at the first step, ``SamplingMPC.step`` after), or None without ``plan_warm_start``
    (the loop then calls ``act`` at every step)."""
    return state.planner if config.plan_warm_start else None


__all__ = ["Config", "INFO", "State", "act", "episode_planner", "init", "planned_returns", "update"]
