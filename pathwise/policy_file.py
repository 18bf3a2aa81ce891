"""Run a policy exported by ``pathwise export --format npz|safetensors`` with NumPy alone.

This file imports only NumPy and the standard library (and ``safetensors`` for a ``.safetensors`` file), so it can
be copied next to an exported policy and used where neither JAX nor pathwise is installed::

    from policy_file import load          # or: from pathwise.policy_file import load
    policy = load("pendulum.npz")
    action = policy(obs)                  # obs: (obs_dim,) or (..., obs_dim); what agent.predict(obs) returns

An exported file holds the policy's parameters by name (``policy.net.layers.0.weight``) and a JSON record
(``__meta__`` in an ``.npz``, the ``pathwise`` metadata entry of a ``.safetensors`` file) whose ``steps`` say how
to compute the deterministic action from them:

=================  ======================================================================================
step               computes
=================  ======================================================================================
angle_features     ``x`` without the entries ``angles``, then their cos, then their sin
dense              ``x @ W.T + b`` (``weight``: ``W`` of shape (out, in); ``bias``: ``b``, may be absent)
activation         ``name``: relu, tanh, elu, silu or gelu (tanh approximation, as ``jax.nn.gelu``)
slice              ``x[..., :stop]`` (the mean half of a network that outputs mean and log-std)
squash             ``low + (tanh(x) + 1) / 2 * (high - low)``: into the action box
matmul             ``x @ W.T`` (``weight``: ``W``; a linear state-feedback policy)
argmax             the index of the largest entry (discrete actions, an int64)
clip               ``clip(x, low, high)`` (what the environment accepts)
=================  ======================================================================================
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "pathwise-policy"
VERSION = 1


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": _gelu,
}


class Policy:
    """An exported policy: ``policy(obs)`` is the deterministic action; ``meta`` its JSON record."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]):
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} version {VERSION} record (format={meta.get('format')!r}, "
                             f"version={meta.get('version')!r}); export the policy again with `pathwise export`.")
        self.arrays, self.meta = arrays, meta
        self.dtype = np.dtype(meta.get("dtype", "float32"))

    def __call__(self, obs: Any) -> np.ndarray:
        x = np.asarray(obs, self.dtype)
        if x.shape[-1:] != (self.meta["obs_dim"],):
            raise ValueError(f"observation of shape {x.shape}: expected (..., {self.meta['obs_dim']}).")
        for step in self.meta["steps"]:
            x = self._apply(step, x)
        return x

    def _apply(self, step: dict[str, Any], x: np.ndarray) -> np.ndarray:
        op, a = step["op"], self.arrays
        if op == "angle_features":
            angles = list(step["angles"])
            keep = [i for i in range(x.shape[-1]) if i not in angles]
            return np.concatenate([x[..., keep], np.cos(x[..., angles]), np.sin(x[..., angles])], axis=-1)
        if op == "dense":
            y = x @ a[step["weight"]].T
            return y + a[step["bias"]] if step.get("bias") else y
        if op == "activation":
            return ACTIVATIONS[step["name"]](x).astype(self.dtype)
        if op == "slice":
            return x[..., : step["stop"]]
        if op == "squash":
            low, high = np.asarray(step["low"], self.dtype), np.asarray(step["high"], self.dtype)
            return low + (np.tanh(x) + 1.0) * 0.5 * (high - low)
        if op == "matmul":
            return x @ a[step["weight"]].T
        if op == "argmax":
            return np.argmax(x, axis=-1).astype(np.int64)
        if op == "clip":
            return np.clip(x, np.asarray(step["low"], self.dtype), np.asarray(step["high"], self.dtype)).astype(
                np.float32)
        raise ValueError(f"unknown step {op!r}: this file was written by a newer pathwise; update "
                         "pathwise/policy_file.py.")


def load(path: str | Path) -> Policy:
    """The policy in an exported ``.npz`` or ``.safetensors`` file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open
            from safetensors.numpy import load_file
        except ModuleNotFoundError:
            raise ModuleNotFoundError(f"reading {path} needs the safetensors package: pip install "
                                      "safetensors") from None
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("pathwise", "{}"))
        return Policy(load_file(str(path)), meta)
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        arrays = {k: data[k] for k in data.files if k != "__meta__"}
    return Policy(arrays, meta)


__all__ = ["ACTIVATIONS", "FORMAT", "Policy", "VERSION", "load"]
