"""pathwise: end-to-end policy optimization through backpropagation, in JAX."""

from pathwise import rollout, systems, types
from pathwise.rollout import batch_rollout
from pathwise.types import Trajectory, Transition
from pathwise.agent import Agent, load, make

__version__ = "0.2.0"


_LAZY = ("algorithms", "checkpoint", "config", "control", "diagnostics", "distributions", "envs", "estimators",
         "export", "loops", "models", "networks", "optim", "presets", "registry", "replay", "rewards", "seeds", "spec",
         "starts", "train")


def __getattr__(name: str):
    """Import subpackages on first use: ``pw.control.lqr``, ``pw.rewards.register``, ..."""
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"pathwise.{name}")
    raise AttributeError(f"module 'pathwise' has no attribute {name!r}")


def make_inference_fn(agent: Agent):
    """``(make_policy, params)`` in Brax's shape: ``make_policy(params, deterministic=True)(obs, key)`` returns
    ``(action, extras)`` as ``agent.predict`` computes it, pure and jittable (``pathwise.export``)."""
    from pathwise.export import make_inference_fn as make

    return make(agent)


def enable_x64(enabled: bool = True) -> None:
    """Switch JAX to float64 (call before creating arrays); the default is float32."""
    import jax

    jax.config.update("jax_enable_x64", enabled)


__all__ = ["Agent", "Trajectory", "Transition", "batch_rollout", "enable_x64", "load", "make", "make_inference_fn",
           "rollout", "systems", "types"]
