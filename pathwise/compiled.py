"""The compiled programs a long-lived process holds, released before the operating system's limit on memory maps.

XLA's CPU backend maps each compiled program's code and data into the process as separate memory maps (measured
with jax 0.10.2: ~18 maps for a small jitted function, ~480 for an off-policy learner's training iteration), and a
program lives as long as JAX's caches hold it. Linux allows a process at most ``vm.max_map_count`` maps (65,530 by
default); past it XLA's compiler crashes the process (a segfault or an abort inside ``backend_compile_and_load``,
in whatever program is compiled next; jax-ml/jax#27201 reports the same crash). A process that trains one
configuration after another reaches it: ``pathwise tune``'s trials, a loop over seeds or settings, a long test
session, each compiling its updates anew (a configuration is part of the program).

:func:`release_if_crowded`, called as each run is made (:class:`pathwise.train.Run`), drops every compiled program
(``jax.clear_caches()``) once the process holds more than half of the limit; what a later run needs is compiled
again. Where ``/proc`` is absent (not Linux) nothing is measured and nothing is dropped.
"""

from __future__ import annotations

import gc
from pathlib import Path

import jax

MAPS = Path("/proc/self/maps")
LIMIT = Path("/proc/sys/vm/max_map_count")


def memory_maps() -> int | None:
    """The number of memory maps the process holds, None where ``/proc/self/maps`` cannot be read."""
    try:
        with MAPS.open("rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def map_limit() -> int | None:
    """``vm.max_map_count``: the most memory maps a process may hold, None where it cannot be read."""
    try:
        return int(LIMIT.read_text().strip())
    except (OSError, ValueError):
        return None


def release_if_crowded(fraction: float = 0.5) -> bool:
    """Drop every compiled program (``jax.clear_caches()``) if the process holds more than ``fraction`` of the
    memory maps it may; True if it did. Running programs are unaffected; later calls compile again."""
    used, limit = memory_maps(), map_limit()
    if used is None or limit is None or used <= fraction * limit:
        return False
    jax.clear_caches()
    gc.collect()
    return True


__all__ = ["map_limit", "memory_maps", "release_if_crowded"]
