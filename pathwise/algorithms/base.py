"""The algorithm contract: what every algorithm file provides, and the options every config has.

An algorithm is one module with

* ``INFO``: an :class:`AlgorithmInfo` (its name, the loops that can feed it, its action spaces);
* ``Config``: a frozen dataclass with a docstring per field that validates itself
  (:class:`pathwise.config.Options`); it inherits the options of the loops that feed it;
* ``State``: a NamedTuple or Equinox module of arrays (everything the algorithm learns);
* pure losses whose docstrings state the equation they implement;
* ``init(key, spec, config) -> State`` (``spec``: :class:`pathwise.spec.EnvSpec`);
* ``update(state, data, key, config) -> (State, metrics)``: one update on what the loop delivers
  (see :mod:`pathwise.loops`); ``metrics`` is a dict of scalar arrays;
* ``act(state, obs, key, deterministic) -> action`` for one unbatched observation (an integer index for
  discrete actions); ``deterministic`` is a Python bool.

Loop-specific functions an algorithm adds where its loop asks for them: ``steps_per_update(spec, config)``
(simulated loop: system steps one update consumes), ``behaviour_log_prob(state, obs, action)``
(replay loop: stored with each transition, for importance weights), ``planning_value(state, obs, config)``
(model-based loop: the value, in reward units, that closes the acting planner's returns, ``act_planner``),
``episode_planner(state, config)`` (model-based loop, a planning algorithm: the ``SamplingMPC`` whose plan the
loop carries from step to step through real and evaluation episodes, or None to call ``act`` at every step) and
``act_from_noise(state, obs, noise)`` (replay and model-based loops: the policy's sample for given standard-normal
noise, which the episodes pass correlated in time with ``noise_color``).
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any, Callable, ClassVar, NamedTuple

from pathwise.config import Options, at_least, unit_interval

#: The loops that deliver data to ``update`` (``pathwise.loops``).
LOOPS = ("simulated", "replay", "model_based", "on_policy")


@dataclasses.dataclass(frozen=True)
class AlgorithmInfo:
    """What the driver needs to know about an algorithm before building it."""

    name: str
    """The CLI name (``pathwise train NAME``)."""
    loops: tuple[str, ...]
    """The loops that can feed its ``update``, preferred first (``LOOPS``)."""
    summary: str
    """One line for ``pathwise list``."""
    continuous: bool = True
    """Works with Box action spaces."""
    discrete: bool = False
    """Works with Discrete action spaces."""
    planner: bool = False
    """Acts by planning over a model at every step (no policy network: ``pathwise export`` refuses it)."""
    learned_model_only: tuple[str, ...] = ()
    """Config options read only where the algorithm runs on a learned model: set away from their defaults, they
    are refused in the simulated loop (``pathwise.loops.check_options``) instead of being ignored there."""

    def __post_init__(self) -> None:
        bad = [loop for loop in self.loops if loop not in LOOPS]
        if not self.loops or bad:
            raise ValueError(f"AlgorithmInfo({self.name!r}): loops must be a non-empty subset of {LOOPS}, got "
                             f"{self.loops}.")


@dataclasses.dataclass(frozen=True)
class CommonConfig(Options):
    """Options every algorithm has."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy network."""
    float64: bool = False
    """Run in float64 (slower; for ill-conditioned long-horizon gradients)."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [(len(self.hidden) > 0 and all(h >= 1 for h in self.hidden),
                                    f"hidden={self.hidden} must list one or more layer sizes >= 1")]


@dataclasses.dataclass(frozen=True)
class ActorDecayOptions(Options):
    """The actor's step-size decay (ddpg, svg1, svgk, reinforce, qac): :func:`pathwise.optim.adam`'s cosine schedule."""

    #: before 0.3 no actor's step size decayed
    ADDED: ClassVar[dict[str, Any]] = {"actor_lr_decay_steps": 0, "actor_lr_final_fraction": 1.0}

    actor_lr_decay_steps: int = 0
    """Cosine decay of the actor's learning rate to ``actor_lr_final_fraction * actor_lr`` over this many actor
    updates, constant after (``optax.cosine_decay_schedule``); 0: constant ``actor_lr``."""
    actor_lr_final_fraction: float = 1.0
    """The actor's learning rate at the end of ``actor_lr_decay_steps``, as a fraction of ``actor_lr``."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + at_least(self, 0, "actor_lr_decay_steps") + \
            unit_interval(self, "actor_lr_final_fraction", closed_low=True)

    def actor_optimizer(self, max_grad_norm: float = 0.0):
        """Adam at ``actor_lr`` (clipped to ``max_grad_norm``; 0: no clip), decayed over ``actor_lr_decay_steps``
        updates when that is > 0."""
        from pathwise import optim

        return optim.adam(self.actor_lr, max_grad_norm, decay_steps=self.actor_lr_decay_steps,
                          final_fraction=self.actor_lr_final_fraction)


@dataclasses.dataclass(frozen=True)
class TrustRegionOptions(Options):
    """Reuse of each on-policy batch under PPO's clipped surrogate (reinforce, qac):
    :func:`pathwise.estimators.score_function.clipped_surrogate`."""

    #: before 0.3 every on-policy batch was used for one plain step
    ADDED: ClassVar[dict[str, Any]] = {"epochs": 1, "clip_ratio": 0.0}

    epochs: int = 1
    """Policy steps on each batch of data (1: the lecture's one step; more need ``clip_ratio > 0``)."""
    clip_ratio: float = 0.0
    """ε of the clipped probability ratio π_θ/π_θold ∈ [1 − ε, 1 + ε]; 0: the plain score-function surrogate."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + at_least(self, 0, "clip_ratio") + at_least(self, 1, "epochs") + \
            [(self.epochs == 1 or self.clip_ratio > 0,
              f"epochs={self.epochs} reuses each batch without a trust region: set clip_ratio > 0 (e.g. 0.2)")]


class Algorithm(NamedTuple):
    """An algorithm module seen through the contract (see the module docstring)."""

    info: AlgorithmInfo
    Config: type
    init: Callable[..., Any]
    update: Callable[..., Any]
    act: Callable[..., Any]
    module: ModuleType

    @property
    def name(self) -> str:
        """The CLI name, ``info.name``."""
        return self.info.name

    def hook(self, name: str) -> Callable[..., Any] | None:
        """A loop-specific function of the module (``steps_per_update``, ``behaviour_log_prob``), or None."""
        return getattr(self.module, name, None)

    @classmethod
    def of(cls, module: ModuleType) -> "Algorithm":
        """The algorithm a module defines through its ``INFO``, ``Config``, ``State``, ``init``, ``update`` and
        ``act``; a ``TypeError`` naming what is missing if it lacks any."""
        missing = [n for n in ("INFO", "Config", "State", "init", "update", "act") if not hasattr(module, n)]
        if missing:
            raise TypeError(f"{module.__name__} is not a pathwise algorithm: it lacks {', '.join(missing)} "
                            "(see pathwise.algorithms.base).")
        return cls(module.INFO, module.Config, module.init, module.update, module.act, module)


__all__ = ["Algorithm", "AlgorithmInfo", "CommonConfig", "LOOPS"]
