"""Checkpoints: atomic writes, exact round trips, clear errors on corrupt/incompatible files, config coercion."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import checkpoint as ckpt


def _state():
    return {"params": (jnp.arange(6.0).reshape(2, 3), jnp.ones(4, jnp.float32)),
            "key": jax.random.key(3), "step": jnp.asarray(7, jnp.int32), "buffer": np.zeros((5, 2), np.float32)}


def test_round_trip_is_exact_including_typed_keys(tmp_path):
    state = _state()
    path = tmp_path / "c.npz"
    ckpt.save(path, state, {"algorithm": "x"})
    meta, leaves = ckpt.read(path)
    back = ckpt.restore(_state(), meta, leaves)
    assert meta["algorithm"] == "x"
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(back)):
        if jnp.issubdtype(getattr(a, "dtype", np.float32), jax.dtypes.prng_key):
            np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))
            # the restored key draws the same numbers
            np.testing.assert_array_equal(jax.random.normal(a, (3,)), jax.random.normal(b, (3,)))
        else:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            assert np.asarray(a).dtype == np.asarray(b).dtype


def test_failed_write_leaves_previous_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    ckpt.save(path, _state(), {"v": 1})
    before = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(path, _state(), {"v": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_missing_corrupt_truncated_and_incompatible_files(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.read(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ckpt.CheckpointError, match="corrupt or truncated"):
        ckpt.read(bad)
    good = tmp_path / "good.npz"
    ckpt.save(good, _state(), {})
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ckpt.CheckpointError, match="corrupt or truncated"):
        ckpt.read(trunc)
    meta, leaves = ckpt.read(good)
    other = {"params": (jnp.zeros((3, 3)), jnp.ones(4)), "key": jax.random.key(0), "step": jnp.asarray(0),
             "buffer": np.zeros((5, 2), np.float32)}
    with pytest.raises(ckpt.CheckpointError, match=r"shape \(2, 3\), expected \(3, 3\)"):
        ckpt.restore(other, meta, leaves)
    with pytest.raises(ckpt.CheckpointError, match="holds 5 arrays"):
        ckpt.restore({"only": jnp.zeros(2)}, meta, leaves)


@dataclasses.dataclass(frozen=True)
class _Cfg:
    lr: float = 1e-3
    hidden: tuple[int, ...] = (64, 64)
    steps: int = 10
    use_x: bool = False
    mode: str = "a"
    clip: float | None = None


def test_config_from_dict_coerces_strings_and_rejects_unknown_keys():
    cfg = ckpt.config_from_dict(_Cfg, {"lr": "3e-4", "hidden": "32,32,16", "steps": "1e3", "use_x": "true",
                                       "clip": "none"})
    assert cfg == _Cfg(lr=3e-4, hidden=(32, 32, 16), steps=1000, use_x=True, clip=None)
    assert ckpt.config_from_dict(_Cfg, {"clip": "1.5"}).clip == 1.5
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) \['lrr'\].*Valid keys: clip, hidden, lr"):
        ckpt.config_from_dict(_Cfg, {"lrr": 1.0})
    with pytest.raises(ValueError, match="Config key 'use_x'.*true or false"):
        ckpt.config_from_dict(_Cfg, {"use_x": "maybe"})
    with pytest.raises(ValueError, match="Config key 'steps'"):
        ckpt.config_from_dict(_Cfg, {"steps": "ten"})
    assert ckpt.config_from_dict(_Cfg, ckpt.config_to_dict(cfg)) == cfg
