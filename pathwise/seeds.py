"""Many seeds as one program: seed keys sharded over devices, and the host CPU split into XLA devices.

A training loop that is one jitted function of a key (the simulated loop, ``pathwise.loops.simulated``)
trains N seeds at once by ``jax.vmap`` over N keys; :func:`seed_keys` places those keys so that the seed
axis is sharded over the available devices, and XLA partitions the whole program along it.

On a machine without an accelerator JAX sees one CPU device however many cores it has, and a single
device keeps several cores busy poorly on the small operations of a training loop. :func:`use_host_devices`
splits the host into one XLA device per core before JAX starts, so the sharded seeds run in parallel
(measured in BENCHMARKS.md, "Many seeds at once"). ``pathwise train ... --seeds N`` does this by default.

Beyond one machine, :func:`start_processes` joins this process to a group of JAX processes
(``jax.distributed``; one per machine, or several on one); the seed axis is then sharded over the devices of
every process, each process computes the shards on its own devices, and :func:`local_seed_rows` gives it the
seeds it holds (to evaluate and save). The program and its per-device shards are those of one process with as
many devices, so the seeds' results do not depend on how the devices are spread over processes.
"""

from __future__ import annotations

import os
from typing import Any

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
    In a group of processes (:func:`start_processes`) the devices are those of every process, and the seeds
    must be a multiple of their count, so that every process holds some.
    """
    if seeds < 1:
        raise ValueError(f"seed_keys needs seeds >= 1, got {seeds}.")
    devices = jax.devices()
    if jax.process_count() > 1 and shard is not False:
        shard = True  # a mesh over some devices could leave a process without seeds, and it would wait forever
    if shard is None:
        n = shard_count(seeds, len(devices))
    elif shard:
        if seeds % len(devices):
            where = f" of {jax.process_count()} processes" if jax.process_count() > 1 else ""
            raise ValueError(f"Cannot shard {seeds} seeds over {len(devices)} devices{where}; use a multiple of "
                             f"{len(devices)} seeds" + (" (or fewer --host-devices per process)." if where else
                                                        " or shard=False."))
        n = len(devices)
    else:
        n = 1
    if n == 1:
        return jax.vmap(jax.random.key)(jnp.arange(first, first + seeds))
    mesh = jax.sharding.Mesh(np.array(devices[:n]), ("seed",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seed"))
    # Each process places only the seed numbers of its own devices (a process cannot put data on another's);
    # the keys are then made where the seeds are.
    numbers = np.arange(first, first + seeds, dtype=np.int32)
    placed = jax.make_array_from_callback(numbers.shape, sharding, lambda index: numbers[index])
    return jax.jit(jax.vmap(jax.random.key), out_shardings=sharding)(placed)


def local_seed_rows(tree) -> dict[int, Any]:
    """Seed index -> that seed's slice of ``tree`` (arrays with a leading seed axis), for every seed whose shard
    is on this process's devices (all of them in a single process)."""
    leaves, treedef = jax.tree.flatten(tree)
    per_leaf = []
    for leaf in leaves:
        rows: dict[int, Any] = {}
        for shard in leaf.addressable_shards:
            start = shard.index[0].start or 0
            for r in range(shard.data.shape[0]):
                rows.setdefault(start + r, (shard.data, r))
        per_leaf.append(rows)
    held = sorted(per_leaf[0]) if per_leaf else []
    return {i: treedef.unflatten([rows[i][0][rows[i][1]] for rows in per_leaf]) for i in held}


def check_processes(coordinator: str | None, num_processes: int, process_id: int) -> None:
    """Refuse, naming the option, a group of processes that cannot start (before anything is built)."""
    if num_processes < 1:
        raise ValueError(f"--num-processes {num_processes}: must be >= 1 (1 = this process alone).")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id {process_id}: must be in [0, {num_processes}) (0 on the machine that "
                         "--coordinator names, 1, 2, ... on the others).")
    if num_processes == 1:
        if coordinator is not None:
            raise ValueError(f"--coordinator {coordinator} without --num-processes: give the number of processes "
                             "that train the seeds together, e.g. --num-processes 2.")
        return
    address = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator {address}: give HOST:PORT of process 0, the same on every process (e.g. "
                         "--coordinator 10.0.0.1:1234, or set JAX_COORDINATOR_ADDRESS).")


def start_processes(coordinator: str | None, num_processes: int, process_id: int) -> bool:
    """Join this process to a group of ``num_processes`` JAX processes (True), or do nothing for one (False).

    It must run before JAX executes anything. Every process runs the same program; process 0 also hosts the
    coordinator at ``coordinator`` (HOST:PORT, default ``$JAX_COORDINATOR_ADDRESS``), which the others reach.
    On CPUs the processes exchange data through Gloo.
    """
    check_processes(coordinator, num_processes, process_id)
    if num_processes == 1:
        return False
    if jax_started():
        raise RuntimeError("start_processes: JAX has already started in this process; call it before any JAX "
                           "operation.")
    if hasattr(jax.config, "jax_cpu_collectives_implementation"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)
    return True


def devices_of(tree) -> int:
    """How many devices the arrays of ``tree`` are spread over (the shards of a sharded seed run)."""
    return len({d for leaf in jax.tree.leaves(tree) if isinstance(leaf, jax.Array) for d in leaf.sharding.device_set})


__all__ = ["check_processes", "cpu_cores", "devices_of", "host_devices_chosen", "jax_started", "local_seed_rows",
           "seed_keys", "shard_count", "start_processes", "use_host_devices"]
