"""Algorithms, each one file with the same contract (``pathwise.algorithms.base``).

The registry maps the CLI name to the module; modules are imported on first use so that
``import pathwise`` stays light.
"""

from __future__ import annotations

import importlib

from pathwise.algorithms.base import Algorithm, AlgorithmInfo, CommonConfig

ALGORITHMS: dict[str, str] = {
    "bptt": "pathwise.algorithms.bptt",
    "imitation": "pathwise.algorithms.imitation",
    "reinforce": "pathwise.algorithms.reinforce",
    "qac": "pathwise.algorithms.qac",
    "ddpg": "pathwise.algorithms.ddpg",
    "svg0": "pathwise.algorithms.svg0",
    "svg0-discrete": "pathwise.algorithms.gumbel",
    "mbrl": "pathwise.algorithms.mbrl",
    "svg-inf": "pathwise.algorithms.svg_inf",
    "svg1": "pathwise.algorithms.svg1",
    "svgk": "pathwise.algorithms.svgk",
    "pets": "pathwise.algorithms.pets",
}


def available() -> list[str]:
    """Algorithm names whose module is present in this installation."""
    return [name for name, module in ALGORITHMS.items() if importlib.util.find_spec(module) is not None]


def get(name: str) -> Algorithm:
    """The algorithm registered as ``name`` (``svg_inf`` and ``svg-inf`` both work)."""
    key = str(name).lower().replace("_", "-")
    if key not in ALGORITHMS or key not in available():
        raise ValueError(f"Unknown algorithm {name!r}. Available: {', '.join(available())}.")
    return Algorithm.of(importlib.import_module(ALGORITHMS[key]))


__all__ = ["ALGORITHMS", "Algorithm", "AlgorithmInfo", "CommonConfig", "available", "get"]
