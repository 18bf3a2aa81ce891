"""Files: atomic writes, and checkpoints of a run's state pytree with named leaves.

A checkpoint is one compressed ``.npz`` file: every array leaf of a state pytree, stored under its key
path (``algo/actor/net/layers/0/weight``), plus a JSON ``__meta__`` record (algorithm, env id, config,
seed, driver counters, metric history). A replay buffer is stored up to its filled size and padded back
on load. Files are written to a temporary name and renamed, so a crash never leaves a half-written file;
a truncated, foreign or tampered file, or one whose structure does not match the algorithm and config,
raises ``CheckpointError`` saying what is wrong and what to do. Arrays load with ``allow_pickle=False``.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pathwise.replay import ReplayBuffer

#: Checkpoints written by pathwise 0.1 (unnamed ``leaf_000NN`` arrays) were format 1.
FORMAT_VERSION = 2


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, or does not fit the algorithm/config."""


class WriteError(OSError):
    """A file could not be written: a read-only folder, a full disk, a file where a folder should be."""


DAMAGED = "the file is damaged or was not written by pathwise; use checkpoints/best.npz or an earlier copy, or retrain"


def check_writable(path: str | os.PathLike, what: str, *, directory: bool = False) -> None:
    """Refuse, before any work, a ``path`` that cannot be written (``directory``: created as a folder).

    Nothing is created: the nearest existing ancestor must be a writable folder, and ``path`` itself, if it
    exists, must be a folder (``directory``) or a file.
    """
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            raise WriteError(f"{what} {path} is a file, not a folder; choose a folder path.")
        if not directory and path.is_dir():
            raise WriteError(f"{what} {path} is a folder; give a file name inside it.")
    parent = path if directory and path.exists() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise WriteError(f"{what} {path}: {parent} is a file, so nothing can be written under it; choose another "
                         "path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError(f"{what} {path}: the folder {parent} is not writable (permission denied); choose a writable "
                         "path or change its permissions.")


# -- atomic files -----------------------------------------------------------------------------------------------


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise write_error(path, exc, "the previous version of the file, if any, is intact") from exc
        raise


def write_error(path: str | os.PathLike, exc: OSError, kept: str) -> WriteError:
    """The one-line error for a failed write of ``path``; ``kept`` says what is still intact."""
    full = " (the disk is full: free space)" if exc.errno == errno.ENOSPC else ""
    return WriteError(f"cannot write {path}: {exc.strerror or exc}{full}; {kept}. Check that its folder is writable "
                      "and has free space, or choose another path.")


def remove_stale_temporaries(directory: str | os.PathLike, names: tuple[str, ...]) -> list[Path]:
    """Delete the temporary files (``.NAME.XXXX.tmp``) that an interrupted :func:`atomic_write_bytes` of one of
    ``names`` left in ``directory``: a killed process cannot remove its own. Only the writer of a run may call
    this (another writer's file in flight would go too). Returns the paths removed."""
    directory, removed = Path(directory), []
    if not directory.is_dir():
        return removed
    for name in names:
        for path in directory.glob(f".{name}.*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically via :func:`atomic_write_bytes`: a reader sees the old file
    or the whole new one, never a half-written one."""
    atomic_write_bytes(path, text.encode())


def atomic_save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save a matplotlib figure as a PNG via :func:`atomic_write_bytes` (no half-written file).

    ``fig`` is a ``matplotlib.figure.Figure`` made without pyplot, so nothing here touches pyplot's figure
    manager or the user's backend; it is freed when it goes out of scope.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


# -- state pytrees <-> named arrays ---------------------------------------------------------------------------


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _is_data(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, bool))


def name_of(path: tuple) -> str:
    """A key path as a checkpoint name: ``actor/net/layers/0/weight``."""
    return jax.tree_util.keystr(path, simple=True, separator="/")


def named_leaves(tree: Any) -> dict[str, Any]:
    """The data leaves of ``tree`` (arrays, scalars, PRNG keys) by key-path name, in tree order."""
    return {name_of(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0] if _is_data(x)}


def _buffer_sizes(tree: Any) -> dict[str, int]:
    """Key-path prefix of every replay buffer's storage in ``tree`` -> its filled size."""
    out = {}
    for path, node in jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, ReplayBuffer))[0]:
        if isinstance(node, ReplayBuffer):
            # a buffer that never wrapped holds its items in slots [0, size); a wrapped one is full
            out[name_of(path) + "/storage/"] = int(node.size)
    return out


def to_arrays(tree: Any) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, int]]:
    """``(arrays by name, key implementation by name for typed PRNG keys, filled size by buffer prefix)``;
    replay buffers are cut to their filled part."""
    sizes = _buffer_sizes(tree)
    arrays, keys = {}, {}
    for name, leaf in named_leaves(tree).items():
        if _is_key(leaf):
            keys[name] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        arr = np.asarray(leaf)
        prefix = next((p for p in sizes if name.startswith(p)), None)
        arrays[name] = arr[: sizes[prefix]] if prefix is not None else arr
    return arrays, keys, sizes


def save(path: str | os.PathLike, tree: Any, meta: dict[str, Any]) -> None:
    """Atomically write the arrays of ``tree`` (by name, compressed) and a JSON-serializable ``meta``."""
    arrays, keys, buffers = to_arrays(tree)
    meta = {**meta, "format_version": FORMAT_VERSION, "key_leaves": keys, "buffers": buffers}
    buf = io.BytesIO()
    np.savez_compressed(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    atomic_write_bytes(path, buf.getvalue())


def read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A checkpoint's meta record and its arrays by name (structure not checked yet)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"Checkpoint {path} is a folder; pass a run directory to pw.load / `pathwise evaluate`, "
                              "or its checkpoints/last.npz here.")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist. Point at a run directory's checkpoints/last.npz "
                              "or pass the run directory itself.")
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK":  # every .npz is a zip archive
        raise CheckpointError(f"Checkpoint {path} is corrupt or truncated, or not a pathwise checkpoint at all: it "
                              f"is not an .npz (zip) archive (it starts with {head!r}). Pass a file written by agent.save() or a run directory's "
                              "checkpoints/last.npz.")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile) or "__meta__" not in data.files:
                raise CheckpointError(f"Checkpoint {path} has no __meta__ record, so it was not written by pathwise "
                                      "(agent.save() or `pathwise train` write one); pass one of their files.")
            raw = data["__meta__"]
            if raw.dtype != np.uint8:
                raise CheckpointError(f"Checkpoint {path}: its __meta__ record has dtype {raw.dtype}, not the JSON "
                                      f"bytes pathwise writes; {DAMAGED}.")
            meta = json.loads(bytes(raw).decode())
            version = meta.get("format_version") if isinstance(meta, dict) else None
            arrays = {k: data[k] for k in data.files if k != "__meta__"} if version == FORMAT_VERSION else {}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, KeyError, EOFError, OSError, UnicodeDecodeError,
            RuntimeError) as exc:
        what = ("holds pickled Python objects, which pathwise never writes and never loads (allow_pickle=False)"
                if "pickle" in str(exc).lower() else f"is corrupt or truncated ({type(exc).__name__}: {exc})")
        raise CheckpointError(f"Checkpoint {path} {what}. Use checkpoints/best.npz or an earlier copy, or "
                              "retrain.") from exc
    if not isinstance(meta, dict) or version != FORMAT_VERSION:
        old = " (written by pathwise 0.1, whose checkpoints hold unnamed arrays)" if version == 1 else ""
        raise CheckpointError(f"Checkpoint {path} has format version {version}{old}; this pathwise reads version "
                              f"{FORMAT_VERSION}. Retrain, or load it with the pathwise version that wrote it.")
    return meta, arrays


def restore(template: Any, meta: dict[str, Any], arrays: dict[str, np.ndarray], source: str = "checkpoint") -> Any:
    """Put saved ``arrays`` into the structure of ``template`` by name, checking names, shapes and dtypes."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected = [name_of(p) for p, x in paths if _is_data(x)]
    missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{source} is incompatible with algorithm {meta.get('algorithm')!r} and this config: it lacks "
            f"{missing[:3]}{' ...' if len(missing) > 3 else ''} and has unexpected {extra[:3]}"
            f"{' ...' if len(extra) > 3 else ''}. Was it written by another algorithm, config or pathwise version?")
    keys, buffers = meta.get("key_leaves", {}), meta.get("buffers", {})
    for field, table, kind in (("key_leaves", keys, str), ("buffers", buffers, int)):
        if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, kind) and not isinstance(v, bool)
                                                  for k, v in table.items()):
            raise CheckpointError(f"{source}: its meta record's {field} is {str(table)[:80]!r}, not a table of "
                                  f"names to {kind.__name__}s; {DAMAGED}.")
    for name, a in arrays.items():
        if name.startswith("algo/") and np.issubdtype(a.dtype, np.floating) and np.isnan(a).any():
            raise CheckpointError(f"{source} holds NaN in {name}: pathwise never saves NaN parameters, so the file is "
                                  "damaged or was edited; use checkpoints/best.npz or an earlier copy, or retrain.")
    out = []
    for p, x in paths:
        name = name_of(p)
        in_buffer = any(name.startswith(prefix) for prefix in buffers)
        out.append(_restore_leaf(x, arrays[name], keys.get(name), name, source, in_buffer) if _is_data(x) else x)
    return jax.tree.unflatten(treedef, out)


def _restore_leaf(t: Any, a: np.ndarray, impl: str | None, name: str, source: str, in_buffer: bool) -> Any:
    want = np.shape(jax.random.key_data(t)) if _is_key(t) else np.shape(t)
    if in_buffer and a.ndim == len(want) >= 1 and a.shape[1:] == tuple(want[1:]) and a.shape[0] < want[0]:
        a = np.concatenate([a, np.zeros((want[0] - a.shape[0], *a.shape[1:]), a.dtype)])  # back to capacity
    if a.shape != tuple(want):
        raise CheckpointError(f"{source} is incompatible: {name} has shape {a.shape}, expected {tuple(want)} for "
                              "this algorithm and config.")
    if _is_key(t) != (impl is not None):
        raise CheckpointError(f"{source}: {name} is {'a PRNG key' if _is_key(t) else 'an array'} in this algorithm "
                              f"but its meta record's key_leaves says {'nothing' if impl is None else repr(impl)}; "
                              f"{DAMAGED}.")
    if impl is not None:
        try:
            return jax.random.wrap_key_data(jnp.asarray(a), impl=impl)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{source}: the PRNG key {name} has implementation {impl!r}, which JAX cannot "
                                  f"rebuild ({exc}); {DAMAGED}.") from None
    dtype = np.asarray(t).dtype
    if a.dtype != dtype:
        raise CheckpointError(f"{source} is incompatible: {name} has dtype {a.dtype}, expected {dtype}.")
    if isinstance(t, jax.Array):
        return jnp.asarray(a)
    if isinstance(t, (bool, int, float)):
        return type(t)(a.item())
    return np.asarray(a)


__all__ = ["CheckpointError", "FORMAT_VERSION", "WriteError", "check_writable", "atomic_save_figure", "atomic_write_bytes", "atomic_write_text",
           "name_of", "named_leaves", "read", "restore", "save", "to_arrays"]
