"""The contract between an algorithm and the training driver, CLI and facade.

Each algorithm file keeps its mathematics as pure, jitted functions
(``init(key, ...) -> State`` and ``update(state, key) -> (state, metrics)``,
losses as standalone functions). The ``Learner`` subclass in the same file is
the thin Python layer the driver (``pathwise.train``) calls: it owns the
Gymnasium environment interaction, which cannot be jitted, and exposes

* ``train_iteration()``: one chunk of work (e.g. one episode of interaction
  plus the updates it pays for); increases ``self.env_steps`` by the number of
  *real* environment steps it consumed and returns scalar metrics;
* ``act(obs, deterministic=True)``: the policy for one unbatched observation
  (NumPy in, NumPy out), Gymnasium-compatible;
* ``get_state()`` / ``set_state(state)``: everything needed to resume exactly
  (parameters, optimizer states, normalizers, replay buffer, RNG key,
  counters), as a pytree of arrays whose structure depends only on
  ``(env, config)``.

Determinism: a learner draws all randomness from its state's key, and a
learner that steps a Gymnasium env resets it at the start of each
``train_iteration`` with a seed drawn from that key (or ends every iteration
at an episode boundary), so that ``set_state(get_state())`` at an iteration
boundary reproduces the run exactly.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import numpy as np

from pathwise.types import PyTree


@dataclasses.dataclass(frozen=True)
class CommonConfig:
    """Options every algorithm has (each algorithm's ``Config`` subclasses this)."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer sizes of the policy network."""
    float64: bool = False
    """Run in float64 (slower; for ill-conditioned long-horizon gradients)."""


class Learner(abc.ABC):
    """Python-side driver of one algorithm (see the module docstring)."""

    name: ClassVar[str] = ""  # CLI name, e.g. "ddpg", "svg-inf"
    Config: ClassVar[type] = CommonConfig
    needs_reward: ClassVar[bool] = False  # needs pathwise.rewards for Gymnasium envs (model-based)
    needs_system: ClassVar[bool] = False  # needs a differentiable pathwise System (bptt, svgk on a System)
    discrete_ok: ClassVar[bool] = False  # supports Discrete action spaces
    continuous_ok: ClassVar[bool] = True  # supports Box action spaces

    def __init__(self, env_id: str, config: Any | None = None, seed: int = 0):
        self.env_id = env_id
        self.config = config if config is not None else self.Config()
        self.seed = int(seed)
        self.env_steps = 0

    @abc.abstractmethod
    def train_iteration(self) -> dict[str, float]:
        """Do one chunk of training; increase ``self.env_steps``; return scalar metrics."""

    @abc.abstractmethod
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Action for one observation (an int for discrete action spaces)."""

    @abc.abstractmethod
    def get_state(self) -> PyTree:
        """Everything needed to resume (a pytree of arrays; include ``env_steps``)."""

    @abc.abstractmethod
    def set_state(self, state: PyTree) -> None:
        """Restore what ``get_state`` returned."""

    def describe(self) -> dict[str, Any]:
        """Extra facts for summary.json (e.g. model error)."""
        return {}
