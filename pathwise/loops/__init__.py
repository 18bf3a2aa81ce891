"""How data reach an algorithm's ``update``: one loop per kind of interaction.

=============  ===================================================  ==============================
loop           what ``update(state, data, key, config)`` receives   algorithms
=============  ===================================================  ==============================
simulated      the differentiable ``System`` (a ``lax.scan`` of      bptt, svgk, imitation
               updates; seeds vmapped and sharded)
replay         the replay buffer of real transitions                 ddpg, svg0, svg0-discrete, svg1
model_based    ``ModelData``: the frozen learned model as a          mbrl, svg-inf, svgk, pets
               ``System``, the data set D and recent episodes
on_policy      a ``Segment`` of lockstep steps of N environments     reinforce, qac
=============  ===================================================  ==============================

A loop holds no algorithm state of its own: ``loop.init(key)`` returns a *carry* (a NamedTuple with at
least ``algo``, the algorithm's ``State``; ``key``; ``env_steps``) and ``loop.iteration(carry)`` returns
the next carry and the iteration's metrics. The carry is everything a run resumes from, so the driver
checkpoints it as one pytree. A loop draws every random number from the carry's key and resets its
environments with seeds drawn from it, so resuming from a saved carry reproduces the run exactly.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from pathwise.algorithms.base import Algorithm
from pathwise.config import Options, at_least
from pathwise.distributions import colored_normal
from pathwise.spec import EnvSpec
from pathwise.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class NoiseOptions(Options):
    """The real episodes' exploration noise, in the loops that collect them one episode at a time (replay,
    model-based)."""

    ADDED: ClassVar[dict[str, Any]] = {"noise_color": 0.0}  # since 2026-12-07 (white noise before)

    noise_color: float = 0.0
    """Exponent β of the real episodes' exploration noise spectrum, 1/f^β over each episode
    (:func:`pathwise.distributions.colored_normal`): 0 white (each step's noise drawn anew), 1 pink (Eberhard et
    al. 2023), 2 red; the larger, the longer the noise keeps pushing one way, so that the episodes travel further
    than the same noise's independent steps would. It colors the uniformly random actions (Φ(noise): still uniform
    on the box at every step) and the policy's samples (through the algorithm's ``act_from_noise``: the same
    marginal distribution at every step as the policy's own); an acting planner (``act_planner``, pets) plans as it
    does without it. Evaluation is untouched."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + at_least(self, 0, "noise_color")


def check_noise(algorithm: Algorithm, config: Any) -> None:
    """A ``ValueError`` if ``config`` colors the exploration noise of an algorithm that cannot take given noise
    (no ``act_from_noise``; a planning algorithm plans as it would without it)."""
    if config.noise_color and algorithm.hook("act_from_noise") is None and not algorithm.info.planner:
        raise ValueError(f"noise_color={config.noise_color}: {algorithm.name} has no act_from_noise (its action "
                         "for given standard-normal noise), so its episodes cannot take colored noise. Leave "
                         "noise_color=0.")


def colored_noise(key: PRNGKey, steps: int, spec: EnvSpec, color: float) -> Array:
    """One episode's standard-normal noise of spectrum 1/f^color, shape ``(steps, *action shape)``."""
    shape = np.shape(spec.action_low)
    return colored_normal(key, steps, int(np.prod(shape)), color).reshape(steps, *shape)


def uniform_from_noise(noise: Array, spec: EnvSpec) -> np.ndarray:
    """Uniformly random actions in the box from standard-normal ``noise`` (``low + (high − low) Φ(noise)``, uniform
    at every step whatever the noise's correlation in time)."""
    low, high = np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32)
    return np.asarray(low + (high - low) * jax.scipy.stats.norm.cdf(noise))


class Loop(abc.ABC):
    """One kind of interaction between an algorithm and its environment (see the module docstring)."""

    kind: ClassVar[str]
    env_steps_are: ClassVar[str] = "real environment steps"

    def __init__(self, algorithm: Algorithm, spec: EnvSpec, config: Any):
        self.algorithm, self.spec, self.config = algorithm, spec, config

    @abc.abstractmethod
    def init(self, key: PRNGKey) -> Any:
        """A fresh carry (the algorithm's ``init`` plus what the loop keeps)."""

    @abc.abstractmethod
    def iteration(self, carry: Any) -> tuple[Any, dict[str, float]]:
        """One chunk of interaction and updates; returns the next carry and scalar metrics."""

    def steps_per_iteration(self) -> int | None:
        """The env steps every iteration takes, where that is fixed (None: it varies, e.g. with episode lengths)."""
        return None

    def iteration_is(self) -> str:
        """What one iteration's env steps are, where their number varies ("" where it is fixed): a run stops after
        the iteration that reaches its budget, so it can end past it, and the CLI says so with these words."""
        return ""

    def describe(self, carry: Any) -> dict[str, Any]:
        """Extra facts for ``summary.json``: what an env step is, and the last model fit's errors where the loop
        fits a model (its ``last_fit``, a ``pathwise.models.FitReport``)."""
        del carry
        out: dict[str, Any] = {"env_steps_are": self.env_steps_are}
        fit = getattr(self, "last_fit", None)
        if fit is not None:
            out.update(model_one_step_mse=fit.one_step_mse, model_multi_step_mse=fit.multi_step_mse)
        return out

    def evaluates_by_planner(self, carry: Any) -> bool:
        """Whether the run's evaluations play its planning agent (:meth:`planning_controller`) rather than the
        algorithm's ``act`` whatever the config's ``eval_planner`` says (a planning algorithm's own planner that
        carries its plan): only the model-based loop's runs can."""
        del carry
        return False

    def planning_controller(self, carry: Any, key: PRNGKey, precision: Any, **options: Any) -> Any:
        """A planning agent over the model this loop learned (the model-based loop's); other loops learn none."""
        del carry, key, precision, options
        raise ValueError(f"{self.algorithm.name} on {self.spec.env_id} learns no model to plan over ({self.kind} "
                         "loop): a planner acts over a model-based run (mbrl, svg-inf or svgk on an environment).")

    def close(self) -> None:
        """Release environments the loop opened."""


def precheck(algorithm: Algorithm, record: Any) -> None:
    """What can be refused from the environment's registry record alone, before its environment is built."""
    loops = algorithm.info.loops
    if loops == ("simulated",) and record.system is None:
        raise ValueError(_NO_SYSTEM.format(name=algorithm.name, env_id=record.id))


_NO_SYSTEM = ("{name} differentiates through known dynamics and needs a pathwise System, but {env_id!r} has none "
              "(a Gymnasium environment is a black box). Use one of `pathwise list`'s systems or your own System "
              "(pw.make(..., system=MySystem()), --system mypkg.dynamics:MySystem), or a model-based algorithm "
              "(mbrl, svg-inf) that learns the dynamics.")


def select(algorithm: Algorithm, env: EnvSpec | Any, config: Any) -> str:
    """The loop that feeds ``algorithm`` on ``env``: the simulated one where it can differentiate the
    environment's own ``System`` (a pathwise id, or ``use_true_dynamics``), else its first other loop.

    ``env`` is an ``EnvSpec`` or the environment's registry record (which decides it before JAX starts).
    """
    loops = algorithm.info.loops
    if "simulated" in loops and env.system is not None:
        if len(loops) == 1 or env.native or getattr(config, "use_true_dynamics", False):
            return "simulated"
    others = [loop for loop in loops if loop != "simulated"]
    if not others:
        raise ValueError(_NO_SYSTEM.format(name=algorithm.name, env_id=env.env_id))
    return others[0]


def check(algorithm: Algorithm, spec: EnvSpec, kind: str) -> None:
    """A ``ValueError`` naming the problem and the fix if ``algorithm`` cannot run on ``spec`` in ``kind``."""
    info = algorithm.info
    if spec.discrete and not info.discrete:
        raise ValueError(f"{info.name} needs continuous (Box) actions, but {spec.env_id} has {spec.action_dim} "
                         "discrete actions. For discrete actions use svg0-discrete (Gumbel-softmax / "
                         "straight-through), reinforce or qac.")
    if not spec.discrete and not info.continuous:
        raise ValueError(f"{info.name} needs discrete actions, but {spec.env_id} has a continuous (Box) action "
                         "space; use reinforce, ddpg or svg0 for continuous actions.")
    if not spec.discrete and not all(np.isfinite(spec.action_low + spec.action_high)) and kind != "on_policy":
        raise ValueError(f"{info.name} squashes actions into a bounded box, but {spec.env_id} has unbounded actions "
                         f"(low={list(spec.action_low)}, high={list(spec.action_high)}); declare finite bounds in its "
                         "action space (e.g. spaces.Box(-1.0, 1.0, (n,), np.float32), clipping in step()), or use "
                         "reinforce (on-policy), whose Gaussian actions need no bounds.")


def check_options(algorithm: Algorithm, spec: EnvSpec, config: Any, kind: str) -> None:
    """A ``ValueError`` if ``config`` sets an option that ``kind`` would ignore (``AlgorithmInfo.learned_model_only``
    away from its default in the simulated loop), naming the option and the fix."""
    if kind != "simulated":
        return
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    for name in algorithm.info.learned_model_only:
        if getattr(config, name) != defaults[name]:
            raise ValueError(f"{algorithm.name}'s {name}={getattr(config, name)!r} applies to a learned model only, "
                             f"but on {spec.env_id!r} {algorithm.name} differentiates through the environment's own "
                             "System (the simulated loop), which does not read it. Drop it, or learn a model of the "
                             "Gymnasium environment instead (its Gymnasium id, without use_true_dynamics).")


def make(algorithm: Algorithm, spec: EnvSpec, config: Any) -> Loop:
    """The loop (checked) that runs ``algorithm`` with ``config`` on ``spec``."""
    kind = select(algorithm, spec, config)
    check(algorithm, spec, kind)
    check_options(algorithm, spec, config, kind)
    if kind == "simulated":
        from pathwise.loops.simulated import SimulatedLoop as cls
    elif kind == "replay":
        from pathwise.loops.replay import ReplayLoop as cls
    elif kind == "model_based":
        from pathwise.loops.model_based import ModelBasedLoop as cls
    else:
        from pathwise.loops.on_policy import OnPolicyLoop as cls
    return cls(algorithm, spec, config)


@eqx.filter_jit
def update_once(update, state: Any, data: Any, key: PRNGKey, config: Any) -> tuple[Any, dict[str, Any]]:
    """``update(state, data, key, config)`` as one compiled program, shared by every run in the process."""
    return update(state, data, key, config)


@eqx.filter_jit
def act_once(act, state: Any, obs: Any, key: PRNGKey, deterministic: bool) -> Any:
    """``act(state, obs, key, deterministic)`` as one compiled program, shared by every run in the process."""
    return act(state, obs, key, deterministic)


@eqx.filter_jit
def act_with_noise_once(act_from_noise, state: Any, obs: Any, noise: Any) -> Any:
    """``act_from_noise(state, obs, noise)`` (an algorithm's sample for given standard-normal noise) as one compiled
    program, shared by every run in the process."""
    return act_from_noise(state, obs, noise)


def summarize(metrics: dict[str, Any]) -> dict[str, Any]:
    """Per-update metrics (leading axis: updates) as one value each: the mean, or the last value of a running
    total (names ending in ``_total``). Works on traced arrays."""
    return {k: (v[-1] if k.endswith("_total") else jnp.mean(v)) if jnp.ndim(v) else v for k, v in metrics.items()}


def to_floats(metrics: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics on the host, in one transfer."""
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def episode_seed(key: PRNGKey) -> int:
    """A Gymnasium reset seed drawn from ``key``."""
    return int(jax.random.randint(key, (), 0, 2**31 - 1))


__all__ = ["Loop", "NoiseOptions", "act_once", "act_with_noise_once", "check", "check_noise", "colored_noise",
           "episode_seed", "make", "precheck", "select", "summarize", "to_floats", "uniform_from_noise",
           "update_once"]
