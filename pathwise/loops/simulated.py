"""The simulated loop: updates through a known differentiable ``System``, as one ``lax.scan``.

``update(state, system, key, config)`` gets the ``System`` itself (it rolls out and differentiates
through it; ``bptt``, ``svgk`` on a System, ``imitation``). One iteration is ``updates_per_iteration``
updates scanned inside one jitted call; ``env_steps`` counts *simulated* system steps
(``steps_per_update(spec, config)`` per update, a function the algorithm module provides).

Because the whole loop is one jittable function of a key, many seeds train as one program:
:func:`train_seeds` vmaps it over seed keys and shards the seed axis over the devices
(:mod:`pathwise.seeds`); seed ``i`` gives the same result as a run of its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from pathwise.algorithms.base import Algorithm
from pathwise.config import Options, at_least
from pathwise.loops import Loop, check_options, summarize, to_floats
from pathwise.seeds import seed_keys
from pathwise.spec import EnvSpec
from pathwise.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class SimulatedOptions(Options):
    """Options of the simulated loop."""

    updates_per_iteration: int = 1
    """Updates per iteration, run as one lax.scan inside one jitted call (evaluations and checkpoints fall
    between iterations)."""

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + at_least(self, 1, "updates_per_iteration")


class SimCarry(NamedTuple):
    """The simulated loop's carry: the algorithm's state, the key and the simulated steps so far."""

    algo: Any
    key: PRNGKey
    env_steps: Array


def init_carry(algorithm: Algorithm, spec: EnvSpec, config: Any, key: PRNGKey) -> SimCarry:
    """The simulated loop's first carry: ``algorithm.init`` on one half of ``key``, the other half kept for the
    updates, and 0 environment steps."""
    k_algo, key = jax.random.split(key)
    return SimCarry(algorithm.init(k_algo, spec, config), key, jnp.zeros((), jnp.int32))


def iterate(algorithm: Algorithm, carry: SimCarry, spec: EnvSpec, config: Any) -> tuple[SimCarry, dict[str, Array]]:
    """One iteration: ``updates_per_iteration`` updates through ``spec.system`` (pure; metrics summarized)."""
    key, sub = jax.random.split(carry.key)
    n = config.updates_per_iteration
    step = lambda state, k: algorithm.update(state, spec.system, k, config)  # noqa: E731
    state, metrics = jax.lax.scan(step, carry.algo, jax.random.split(sub, n))
    steps = n * algorithm.hook("steps_per_update")(spec, config)
    return SimCarry(state, key, carry.env_steps + steps), summarize(metrics)


_iterate = eqx.filter_jit(iterate)


def run(algorithm: Algorithm, spec: EnvSpec, config: Any, key: PRNGKey, iterations: int
        ) -> tuple[SimCarry, dict[str, Array]]:
    """A whole run from ``key``: init and ``iterations`` iterations; metrics stacked per iteration."""
    carry = init_carry(algorithm, spec, config, key)
    return jax.lax.scan(lambda c, _: iterate(algorithm, c, spec, config), carry, None, length=iterations)


@eqx.filter_jit
def _run_seeds(algorithm: Algorithm, spec: EnvSpec, config: Any, keys: PRNGKey, iterations: int):
    return jax.vmap(lambda k: run(algorithm, spec, config, k, iterations))(keys)


_run_one = eqx.filter_jit(run)


def train_seed(algorithm: Algorithm, spec: EnvSpec, config: Any, seed: int, iterations: int
               ) -> tuple[SimCarry, dict[str, Array]]:
    """One seed's run as one jitted program (what :func:`train_seeds` computes for that seed)."""
    _check(algorithm, spec, config, 1, iterations)
    return _run_one(algorithm, spec, config, jax.random.key(seed), int(iterations))


def train_seeds(algorithm: Algorithm, spec: EnvSpec, config: Any, seeds: int, iterations: int,
                shard: bool | None = None, first_seed: int = 0) -> tuple[SimCarry, dict[str, Array]]:
    """``seeds`` independent runs (seeds ``first_seed, first_seed + 1, ...``) as one jitted, vmapped program.

    Carries come back stacked on a leading seed axis, metrics with shape ``(seeds, iterations)``. With
    several devices (and ``shard`` not False) the seed axis is sharded over them
    (:func:`pathwise.seeds.seed_keys`); the results do not change.
    """
    _check(algorithm, spec, config, seeds, iterations)
    return _run_seeds(algorithm, spec, config, seed_keys(seeds, shard, first_seed), int(iterations))


def _check(algorithm: Algorithm, spec: EnvSpec, config: Any, seeds: int, iterations: int) -> None:
    if seeds < 1 or iterations < 1:
        raise ValueError(f"training needs seeds >= 1 and iterations >= 1, got {seeds} and {iterations}.")
    if spec.system is None or "simulated" not in algorithm.info.loops:
        raise ValueError(f"{algorithm.name} cannot run in the simulated loop on {spec.env_id!r} (it needs an "
                         "algorithm that differentiates through a System, and the System).")
    check_options(algorithm, spec, config, "simulated")


class SimulatedLoop(Loop):
    """Updates through the known ``System`` (see the module docstring)."""

    kind = "simulated"
    env_steps_are = "simulated steps through the known differentiable system"

    def init(self, key: PRNGKey) -> SimCarry:
        return init_carry(self.algorithm, self.spec, self.config, key)

    def steps_per_iteration(self) -> int:
        return self.config.updates_per_iteration * self.algorithm.hook("steps_per_update")(self.spec, self.config)

    def iteration(self, carry: SimCarry) -> tuple[SimCarry, dict[str, float]]:
        carry, metrics = _iterate(self.algorithm, carry, self.spec, self.config)
        return carry, to_floats(metrics)


__all__ = ["SimCarry", "SimulatedLoop", "SimulatedOptions", "init_carry", "iterate", "run", "train_seed",
           "train_seeds"]
