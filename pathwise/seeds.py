"""Many seeds as one program: seed keys sharded over devices, and the host CPU split into XLA devices.

A training loop that is one jitted function of a key (the simulated loop, ``pathwise.loops.simulated``)
trains N seeds at once by ``jax.vmap`` over N keys; :func:`seed_keys` places those keys so that the seed
axis is sharded over the available devices, and XLA partitions the whole program along it.

On a machine without an accelerator JAX sees one CPU device however many cores it has, and a single
device keeps several cores busy poorly on the small operations of a training loop. :func:`use_host_devices`
splits the host into one XLA device per core before JAX starts, so the sharded seeds run in parallel
(measured in BENCHMARKS.md, "Many seeds at once"). ``pathwise train ... --seeds N`` does this by default.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from pathwise.types import PRNGKey

#: The XLA flag that fixes the number of host devices; a user who set it has chosen already.
HOST_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def jax_started() -> bool:
    """Whether JAX has created its backends (after that the device count is fixed for the process)."""
    from jax._src import xla_bridge

    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else bool(getattr(xla_bridge, "_backends", {}))


def host_devices_chosen() -> bool:
    """Whether the user already fixed the number of CPU devices (XLA_FLAGS, JAX_NUM_CPU_DEVICES or jax.config)."""
    return (HOST_DEVICE_FLAG in os.environ.get("XLA_FLAGS", "") or "JAX_NUM_CPU_DEVICES" in os.environ
            or getattr(jax.config, "jax_num_cpu_devices", -1) > 0)


def use_host_devices(count: int | None = None) -> bool:
    """Split the host CPU into ``count`` XLA devices (default: one per core); True if this call did it.

    It must run before JAX executes anything (it sets ``jax_num_cpu_devices``). With ``count=None`` it
    quietly does nothing when the user already chose the device count, when there is one core, or when
    JAX has started. An explicit ``count`` that can no longer take effect raises an error naming the fix.
    Only CPU devices change: on a GPU or TPU machine ``jax.devices()`` still lists the accelerators.
    """
    if count is not None and count < 1:
        raise ValueError(f"use_host_devices: count={count} must be >= 1 (1 = a single CPU device).")
    wanted = cpu_cores() if count is None else count
    if host_devices_chosen() or jax_started():
        have = len(jax.devices("cpu")) if jax_started() else None
        if count is not None and have is not None and have != count:
            raise RuntimeError(f"use_host_devices({count}): JAX has already started with {have} CPU device(s). "
                               "Call it before any JAX operation, or start Python with "
                               f"XLA_FLAGS={HOST_DEVICE_FLAG}={count}.")
        return False
    if wanted <= 1:
        return False
    if hasattr(jax.config, "jax_num_cpu_devices"):
        jax.config.update("jax_num_cpu_devices", wanted)
    else:  # older JAX: the XLA flag, read when the backend starts
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {HOST_DEVICE_FLAG}={wanted}".strip()
    return True


def shard_count(seeds: int, devices: int) -> int:
    """The most devices, at most ``devices``, that share ``seeds`` evenly (1 = no sharding)."""
    return max(d for d in range(1, min(seeds, devices) + 1) if seeds % d == 0)


def seed_keys(seeds: int, shard: bool | None = None, first: int = 0) -> PRNGKey:
    """Keys ``jax.random.key(first .. first+seeds-1)``, the seed axis sharded over the default devices.

    ``shard=None`` shards over as many devices as divide ``seeds`` evenly (none if that is one);
    ``shard=True`` insists on all of them (``seeds`` must be a multiple of the device count); False never.
    """
    if seeds < 1:
        raise ValueError(f"seed_keys needs seeds >= 1, got {seeds}.")
    keys = jax.vmap(jax.random.key)(jnp.arange(first, first + seeds))
    devices = jax.devices()
    if shard is None:
        n = shard_count(seeds, len(devices))
    elif shard:
        if seeds % len(devices):
            raise ValueError(f"Cannot shard {seeds} seeds over {len(devices)} devices; use a multiple of "
                             f"{len(devices)} seeds or shard=False.")
        n = len(devices)
    else:
        n = 1
    if n == 1:
        return keys
    mesh = jax.sharding.Mesh(np.array(devices[:n]), ("seed",))
    return jax.device_put(keys, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seed")))


def devices_of(tree) -> int:
    """How many devices the arrays of ``tree`` are spread over (the shards of a sharded seed run)."""
    return len({d for leaf in jax.tree.leaves(tree) if isinstance(leaf, jax.Array) for d in leaf.sharding.device_set})


__all__ = ["cpu_cores", "devices_of", "host_devices_chosen", "jax_started", "seed_keys", "shard_count",
           "use_host_devices"]
