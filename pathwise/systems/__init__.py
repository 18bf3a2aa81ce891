"""Differentiable systems: Gymnasium's classic-control tasks in pure JAX, and linear systems.

Every system is exact to Gymnasium's own environment (see ``tests/test_parity.py``)
and registered as a Gymnasium id under the ``pathwise/`` namespace.
"""

from __future__ import annotations

from typing import Callable

from pathwise.systems.acrobot import Acrobot, AcrobotContinuous
from pathwise.systems.base import System, SystemWrapper
from pathwise.systems.cartpole import CartPole, CartPoleSwingUp
from pathwise.systems.gym import SystemEnv, register_systems, to_gymnasium
from pathwise.systems.linear import LinearSystem, double_integrator
from pathwise.systems.mountain_car import MountainCarContinuous
from pathwise.systems.pendulum import Pendulum, angle_normalize

#: Gymnasium id -> factory of the system. ``make("pathwise/Pendulum-v1", g=9.81)``.
REGISTRY: dict[str, Callable[..., System]] = {
    "pathwise/Pendulum-v1": Pendulum,
    "pathwise/MountainCarContinuous-v0": MountainCarContinuous,
    "pathwise/CartPole-v1": CartPole,
    "pathwise/CartPoleSwingUp-v0": CartPoleSwingUp,
    "pathwise/Acrobot-v1": Acrobot,
    "pathwise/AcrobotContinuous-v0": AcrobotContinuous,
    "pathwise/DoubleIntegrator-v0": double_integrator,
}

#: Short names accepted by ``make`` and the CLI.
ALIASES: dict[str, str] = {
    **{k.split("/")[1].split("-")[0].lower(): k for k in REGISTRY},
    **{k.split("/")[1]: k for k in REGISTRY},
}


def make(name: str, **kwargs) -> System:
    """Build a system from a pathwise id, a Gymnasium id it reproduces, or a short name.

    ``make("Pendulum-v1")``, ``make("pathwise/Pendulum-v1", g=9.81)`` and
    ``make("pendulum")`` all give ``Pendulum``.
    """
    if not isinstance(name, str):
        raise ValueError(f"systems.make: name must be a system id or short name such as 'pendulum', got {name!r}.")
    env_id = name if name in REGISTRY else ALIASES.get(name) or ALIASES.get(name.lower())
    if env_id is None:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"Unknown system {name!r}. Known systems: {known} (or their short names, e.g. 'pendulum').")
    try:
        return REGISTRY[env_id](**kwargs)
    except TypeError as exc:
        raise ValueError(f"systems.make({name!r}, ...): {exc}; pass only the system's own parameters.") from None


register_systems(REGISTRY)

__all__ = [
    "Acrobot",
    "AcrobotContinuous",
    "CartPole",
    "CartPoleSwingUp",
    "LinearSystem",
    "MountainCarContinuous",
    "Pendulum",
    "REGISTRY",
    "System",
    "SystemEnv",
    "SystemWrapper",
    "angle_normalize",
    "double_integrator",
    "make",
    "to_gymnasium",
]
