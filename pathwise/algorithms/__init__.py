"""Algorithms, each one file: a functional core and a ``Learner`` (see ``base.py``).

The registry maps the CLI name to ``module:Class``; modules are imported on
first use so that ``import pathwise`` stays light.
"""

from __future__ import annotations

import importlib

from pathwise.algorithms.base import CommonConfig, Learner

ALGORITHMS: dict[str, str] = {
    "bptt": "pathwise.algorithms.bptt:BPTT",
    "imitation": "pathwise.algorithms.imitation:Imitation",
    "reinforce": "pathwise.algorithms.reinforce:REINFORCE",
    "qac": "pathwise.algorithms.qac:QAC",
    "ddpg": "pathwise.algorithms.ddpg:DDPG",
    "svg0": "pathwise.algorithms.svg0:SVG0",
    "svg0-discrete": "pathwise.algorithms.gumbel:GumbelSVG0",
    "mbrl": "pathwise.algorithms.mbrl:MBRL",
    "svg-inf": "pathwise.algorithms.svg_inf:SVGInf",
    "svg1": "pathwise.algorithms.svg1:SVG1",
    "svgk": "pathwise.algorithms.svgk:SVGK",
}


def available() -> list[str]:
    """Algorithm names whose module is present in this installation."""
    names = []
    for name, target in ALGORITHMS.items():
        module = target.split(":")[0]
        if importlib.util.find_spec(module) is not None:
            names.append(name)
    return names


def get(name: str) -> type[Learner]:
    """The ``Learner`` class registered as ``name`` (``svg_inf`` and ``svg-inf`` both work)."""
    key = name.lower().replace("_", "-")
    if key not in ALGORITHMS or key not in available():
        raise ValueError(f"Unknown algorithm {name!r}. Available: {', '.join(available())}.")
    module, cls = ALGORITHMS[key].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["ALGORITHMS", "CommonConfig", "Learner", "available", "get"]
