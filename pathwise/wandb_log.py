"""Weights & Biases logging of a run (the optional ``wandb`` extra), beside its TensorBoard events.

A run trained with ``--wandb-project NAME`` (``wandb_project=NAME`` in Python) logs the same scalars as its
TensorBoard file (``train/...`` per iteration, ``eval/...`` per evaluation, at the environment step) to the
W&B run whose id its ``config.json`` records, so ``--resume`` continues that W&B run. W&B keeps a step's
first value: the steps a resumed run repeats (those after its last checkpoint) are not logged again there,
while TensorBoard keeps the repeated ones (``pathwise.tblog``). ``WANDB_MODE=offline`` logs without an
account into ``RUN_DIR/wandb/`` (``wandb sync`` uploads it later).
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

INSTALL = 'pip install "pathwise[wandb]"'


def require() -> Any:
    """The ``wandb`` module, or an error naming the extra."""
    try:
        import wandb
    except ImportError:
        raise ModuleNotFoundError(f"wandb_project / --wandb-project needs the wandb package: {INSTALL} "
                                  "(or drop the option).", name="wandb") from None
    return wandb


def new_id() -> str:
    """A W&B run id for a new run (recorded in its config.json; unique within a project)."""
    return uuid.uuid4().hex[:16]


class WandbLog:
    """One process's connection to a run's W&B run (``resume="allow"``: created, or continued after a resume)."""

    def __init__(self, project: str, run_id: str, out: Path, name: str, config: dict[str, Any]):
        wandb = require()
        self._run = wandb.init(project=project, id=run_id, resume="allow", dir=str(out), name=name, config=config)
        self._next = int(getattr(self._run, "step", 0) or 0)

    def scalars(self, values: dict[str, float], step: int) -> None:
        finite = {k: v for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        if finite and step >= self._next:  # W&B refuses steps below its last one
            self._run.log(finite, step=step)
            self._next = step

    def finish(self) -> None:
        self._run.finish()
