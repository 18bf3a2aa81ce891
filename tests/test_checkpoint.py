"""Checkpoints: atomic writes, exact round trips with named leaves, clear errors on corrupt/incompatible/old files,
compact replay buffers, config coercion."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pathwise import checkpoint as ckpt
from pathwise import config as cfg
from pathwise import replay


def _state():
    return {"params": (jnp.arange(6.0).reshape(2, 3), jnp.ones(4, jnp.float32)),
            "key": jax.random.key(3), "step": jnp.asarray(7, jnp.int32), "buffer": np.zeros((5, 2), np.float32)}


def test_round_trip_is_exact_including_typed_keys(tmp_path):
    state = _state()
    path = tmp_path / "c.npz"
    ckpt.save(path, state, {"algorithm": "x"})
    meta, arrays = ckpt.read(path)
    assert sorted(arrays) == ["buffer", "key", "params/0", "params/1", "step"]
    back = ckpt.restore(_state(), meta, arrays)
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
    meta, arrays = ckpt.read(good)
    other = {"params": (jnp.zeros((3, 3)), jnp.ones(4)), "key": jax.random.key(0), "step": jnp.asarray(0, jnp.int32),
             "buffer": np.zeros((5, 2), np.float32)}
    with pytest.raises(ckpt.CheckpointError, match=r"params/0 has shape \(2, 3\), expected \(3, 3\)"):
        ckpt.restore(other, meta, arrays)
    with pytest.raises(ckpt.CheckpointError, match=r"lacks \['only'\] and has unexpected \['buffer'"):
        ckpt.restore({"only": jnp.zeros(2)}, meta, arrays)
    wrong = dict(_state(), step=jnp.asarray(0.0, jnp.float32))
    with pytest.raises(ckpt.CheckpointError, match="step has dtype int32, expected float32"):
        ckpt.restore(wrong, meta, arrays)


def test_a_format_1_checkpoint_is_refused_with_the_reason(tmp_path):
    """pathwise 0.1 wrote unnamed ``leaf_000NN`` arrays and format_version 1."""
    import io
    import json

    old = tmp_path / "old.npz"
    buf = io.BytesIO()
    meta = {"algorithm": "ddpg", "format_version": 1, "num_leaves": 1, "key_leaves": [None]}
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), leaf_00000=np.zeros(3))
    old.write_bytes(buf.getvalue())
    with pytest.raises(ckpt.CheckpointError, match=r"format version 1 \(written by pathwise 0.1.*Retrain"):
        ckpt.read(old)


def test_replay_buffers_are_stored_up_to_their_filled_size_and_padded_back(tmp_path):
    item = {"obs": jnp.zeros(3), "done": jnp.zeros((), bool)}
    buf = replay.add_batch(replay.init(item, 10_000), {"obs": jnp.ones((7, 3)), "done": jnp.ones(7, bool)})
    state = {"algo": {"w": jnp.arange(4.0)}, "buffer": buf}
    path = tmp_path / "b.npz"
    ckpt.save(path, state, {})
    meta, arrays = ckpt.read(path)
    assert arrays["buffer/storage/obs"].shape == (7, 3) and path.stat().st_size < 10_000
    back = ckpt.restore(state, meta, arrays)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    full = replay.add_batch(replay.init(item, 4), {"obs": jnp.arange(18.0).reshape(6, 3), "done": jnp.ones(6, bool)})
    ckpt.save(path, {"buffer": full}, {})
    back = ckpt.restore({"buffer": full}, *ckpt.read(path))
    np.testing.assert_array_equal(back["buffer"].storage["obs"], full.storage["obs"])  # a wrapped buffer: all of it


@dataclasses.dataclass(frozen=True)
class _Cfg:
    lr: float = 1e-3
    hidden: tuple[int, ...] = (64, 64)
    steps: int = 10
    use_x: bool = False
    mode: str = "a"
    clip: float | None = None


def test_config_from_dict_coerces_strings_and_rejects_unknown_keys():
    c = cfg.from_dict(_Cfg, {"lr": "3e-4", "hidden": "32,32,16", "steps": "1e3", "use_x": "true", "clip": "none"})
    assert c == _Cfg(lr=3e-4, hidden=(32, 32, 16), steps=1000, use_x=True, clip=None)
    assert cfg.from_dict(_Cfg, {"clip": "1.5"}).clip == 1.5
    with pytest.raises(ValueError, match=r"Unknown config key\(s\) \['lrr'\].*Valid keys: clip, hidden, lr"):
        cfg.from_dict(_Cfg, {"lrr": 1.0})
    with pytest.raises(ValueError, match="Config key 'use_x'.*true or false"):
        cfg.from_dict(_Cfg, {"use_x": "maybe"})
    with pytest.raises(ValueError, match="Config key 'steps'"):
        cfg.from_dict(_Cfg, {"steps": "ten"})
    with pytest.raises(ValueError, match="Config key 'steps'.*must be an integer"):
        cfg.from_dict(_Cfg, {"steps": "2.5e0"})
    with pytest.raises(ValueError, match="Config key 'lr'"):
        cfg.from_dict(_Cfg, {"lr": [1.0]})
    assert cfg.from_dict(_Cfg, cfg.to_dict(c)) == c


@dataclasses.dataclass(frozen=True)
class _Checked(cfg.Options):
    n: int = 1
    """A positive count."""

    def checks(self):
        return super().checks() + cfg.positive(self, "n")


def test_configs_validate_themselves_on_construction():
    assert _Checked(3).n == 3
    with pytest.raises(ValueError, match="Invalid test_checkpoint config: n=0 must be > 0"):
        _Checked(0)
    with pytest.raises(ValueError, match="n=-2 must be > 0"):
        dataclasses.replace(_Checked(), n=-2)
