"""Atomic, validated checkpoints of a learner's full state.

A checkpoint is one ``.npz`` file: the array leaves of ``learner.get_state()``
plus a JSON ``__meta__`` record (algorithm, env id, config, seed, driver
counters, metric history). Files are written to a temporary name and renamed,
so a crash never leaves a half-written checkpoint; a truncated or foreign file,
or one whose structure does not match the algorithm/config, raises
``CheckpointError`` with what is wrong and what to do.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
import typing
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, or does not fit the algorithm/config."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save a matplotlib figure as a PNG via :func:`atomic_write_bytes` (no half-written file), then close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def state_to_arrays(state: Any) -> tuple[list[np.ndarray], list[str | None]]:
    """Flatten a state pytree into NumPy arrays; typed PRNG keys become their raw data."""
    leaves = jax.tree.leaves(state)
    arrays, key_impls = [], []
    for leaf in leaves:
        if _is_key(leaf):
            key_impls.append(str(jax.random.key_impl(leaf)))
            arrays.append(np.asarray(jax.random.key_data(leaf)))
        else:
            key_impls.append(None)
            arrays.append(np.asarray(leaf))
    return arrays, key_impls


def save(path: str | os.PathLike, state: Any, meta: dict[str, Any]) -> None:
    """Atomically write ``state`` (a pytree of arrays) and a JSON-serializable ``meta``."""
    arrays, key_impls = state_to_arrays(state)
    meta = {**meta, "format_version": FORMAT_VERSION, "num_leaves": len(arrays), "key_leaves": key_impls}
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
             **{f"leaf_{i:05d}": a for i, a in enumerate(arrays)})
    atomic_write_bytes(path, buf.getvalue())


def read(path: str | os.PathLike) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Read a checkpoint's meta record and its leaves (no structure check yet)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint {path} does not exist. Point at a run directory's checkpoints/last.npz "
                              "or pass the run directory itself.")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["__meta__"]).decode())
            leaves = [data[f"leaf_{i:05d}"] for i in range(meta["num_leaves"])]
    except (zipfile.BadZipFile, ValueError, KeyError, EOFError, OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}). "
                              "Use checkpoints/best.npz or an earlier copy, or retrain.") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"Checkpoint {path} has format version {meta.get('format_version')}, "
                              f"this pathwise reads version {FORMAT_VERSION}.")
    return meta, leaves


def restore(template: Any, meta: dict[str, Any], leaves: list[np.ndarray], source: str = "checkpoint") -> Any:
    """Put saved ``leaves`` into the structure of ``template``, checking shapes and dtypes."""
    t_leaves, treedef = jax.tree.flatten(template)
    if len(t_leaves) != len(leaves):
        raise CheckpointError(
            f"{source} is incompatible: it holds {len(leaves)} arrays but algorithm "
            f"{meta.get('algorithm')!r} with this config expects {len(t_leaves)}. Was it written by another "
            "algorithm, config or pathwise version?")
    out = []
    for i, (t, a, impl) in enumerate(zip(t_leaves, leaves, meta["key_leaves"])):
        if impl is not None:
            a = jax.random.wrap_key_data(jnp.asarray(a), impl=impl)
        expected = np.shape(jax.random.key_data(t)) if _is_key(t) else np.shape(t)
        got = np.shape(jax.random.key_data(a)) if impl is not None else a.shape
        if tuple(expected) != tuple(got):
            raise CheckpointError(f"{source} is incompatible: array {i} has shape {tuple(got)}, expected "
                                  f"{tuple(expected)} for this algorithm and config.")
        if impl is None and isinstance(t, (jax.Array, np.ndarray)):
            a = jnp.asarray(a, dtype=t.dtype) if isinstance(t, jax.Array) else np.asarray(a, dtype=t.dtype)
        elif impl is None:  # a Python scalar leaf
            a = type(t)(a.item()) if isinstance(t, (int, float, bool)) else a
        out.append(a)
    return jax.tree.unflatten(treedef, out)


# -- configs --------------------------------------------------------------------

def config_to_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type, values: dict[str, Any], source: str = "config") -> Any:
    """Build a frozen config dataclass, converting JSON/TOML values to the field types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"Unknown {source} key(s) {unknown} for {cls.__module__}.{cls.__qualname__}. "
                         f"Valid keys: {', '.join(sorted(fields))}.")
    hints = typing.get_type_hints(cls)
    return cls(**{k: coerce(hints[k], v, k) for k, v in values.items()})


def coerce(tp: Any, value: Any, name: str = "value") -> Any:
    """Convert ``value`` (possibly a string from ``--set``) to the annotated type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    try:
        if origin is typing.Literal:
            for a in args:
                if value == a or str(value) == str(a):
                    return a
            raise ValueError(f"must be one of {list(args)}")
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
                if type(None) in args:
                    return None
            errors = []
            for a in args:
                if a is type(None):
                    continue
                try:
                    return coerce(a, value, name)
                except ValueError as exc:
                    errors.append(str(exc))
            raise ValueError("; ".join(errors))
        if origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").replace("[", "").replace("]", "").split(",") if v.strip()]
            elem = args[0] if args else str
            return tuple(coerce(elem, v, name) for v in value)
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError("must be true or false")
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("must be an integer")
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Config key {name!r}: cannot use {value!r} ({exc}).") from exc
    return value
