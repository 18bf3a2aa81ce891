"""Property-based fuzzing (hypothesis) of what users type and what lands on disk (issue 13).

Option parsing (``--set`` values, seeds, step counts), config files (random JSON) and checkpoint loading
(random bytes, truncation, tampered metadata): every outcome is success or a clear error of the kinds pathwise
raises for bad input (``ValueError``, ``FileNotFoundError``, ``CheckpointError``), never another exception type,
a traceback at the command line, or a hang. Nothing here trains: refusals happen before any setup, and inputs
that would be accepted are recognized as such without building a run.
"""

import json
import re
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pathwise as pw
from pathwise import algorithms
from pathwise import checkpoint as ckpt
from pathwise import config as cfg_mod
from pathwise.cli import _parse_train, main

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CLEAR = (ValueError, FileNotFoundError, ckpt.CheckpointError)
TEXT = st.text(alphabet=string.printable, max_size=12)
NUMBERISH = st.one_of(st.integers(-10**25, 10**25).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.sampled_from(["1e400", "-1e400", "2.5e0", "1e3", "0x10", "1_000", "", " ", "nan", "inf",
                                       "true", "None", "64,64", "-5,64", "(8,)", "[8, 8]", "0", "-0"]), TEXT)
KEYS = ["hidden", "lr", "value_lr", "gamma", "num_envs", "baseline", "normalize_advantages", "float64",
        "value_hidden", "entropy_coef", "max_grad_norm", "log_std_init", "value_steps", "mean_decay"]


def _parse(argv):
    """``_parse_train`` (everything the CLI checks before building anything); tyro's usage errors count as clear."""
    try:
        return _parse_train(argv)
    except SystemExit as exc:
        assert exc.code == 2
        return None


@FUZZ
@given(key=st.sampled_from(KEYS), value=NUMBERISH)
def test_set_values_are_accepted_or_refused_clearly(key, value):
    try:
        parsed = _parse(["reinforce", "--env", "CartPole-v1", "--no-preset", "--set", f"{key}={value}"])
    except ValueError as exc:
        assert key in str(exc) or "--set" in str(exc), str(exc)
        return
    if parsed is not None:  # accepted: the config holds a valid, finite value of the field's type
        cfg = parsed[2]
        field = getattr(cfg, key)
        for leaf in (field if isinstance(field, tuple) else (field,)):
            assert not isinstance(leaf, float) or np.isfinite(leaf), (key, value, field)


@FUZZ
@given(seed=NUMBERISH, steps=NUMBERISH, seeds=st.sampled_from(["1", "0", "-1", "3", "x"]))
def test_seeds_and_step_counts_are_accepted_or_refused_clearly(seed, steps, seeds, capsys):
    argv = ["reinforce", "--env", "CartPole-v1", "--no-preset", "--seed", seed, "--steps", steps, "--seeds", seeds]
    try:
        parsed = _parse(argv)
    except ValueError as exc:
        assert re.search(r"--(seed|seeds|steps) ", str(exc)), str(exc)
        return
    if parsed is not None:
        args = parsed[3]
        assert 0 <= args.seed < 2**31 - 10_000 and args.seeds >= 1 and (args.steps is None or args.steps >= 1)
    capsys.readouterr()


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
CONFIGS = st.one_of(JSON, st.dictionaries(st.sampled_from(KEYS), JSON, max_size=4))


@FUZZ
@given(values=CONFIGS)
def test_random_json_config_files_are_accepted_or_refused_clearly(values, tmp_path_factory, capsys):
    path = tmp_path_factory.mktemp("cfg") / "c.json"
    path.write_text(json.dumps(values))
    try:
        parsed = _parse(["reinforce", "--env", "CartPole-v1", "--no-preset", "--config", str(path)])
    except CLEAR as exc:
        assert str(exc)
        return
    if parsed is not None:
        assert isinstance(parsed[2], algorithms.get("reinforce").Config)
    capsys.readouterr()


@FUZZ
@given(values=CONFIGS)
def test_random_configs_through_pw_make_are_refused_clearly(values):
    try:  # the config is checked before anything is built, so only invalid ones get far enough to matter
        cfg_mod.build(algorithms.get("reinforce").Config, "reinforce", {}, values)
    except (ValueError, TypeError) as exc:
        assert str(exc)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    agent = pw.make("reinforce", env="CartPole-v1", seed=0, hidden=(8,), num_envs=2, value_hidden=(8,))
    return agent.save(tmp_path_factory.mktemp("good") / "good.npz").read_bytes()


def _load(path):
    try:
        return pw.load(path, quiet=True)
    except CLEAR as exc:
        assert str(path.name) in str(exc), str(exc)
        return None


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes_are_refused_clearly(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("bytes") / "x.npz"
    path.write_bytes(data)
    assert _load(path) is None


@FUZZ
@given(fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_checkpoints_are_refused_clearly(fraction, good, tmp_path_factory):
    path = tmp_path_factory.mktemp("trunc") / "x.npz"
    path.write_bytes(good[: int(len(good) * fraction)])
    assert _load(path) is None


@FUZZ
@given(position=st.integers(0, 10**6), value=st.integers(0, 255))
def test_corrupted_bytes_load_whole_or_are_refused_clearly(position, value, good, tmp_path_factory):
    data = bytearray(good)
    data[position % len(data)] = value
    path = tmp_path_factory.mktemp("flip") / "x.npz"
    path.write_bytes(bytes(data))
    agent = _load(path)
    if agent is not None:  # a byte the zip's CRC does not cover, or one that changed nothing: a usable agent
        action, _ = agent.predict(np.zeros(4))
        assert action in (0, 1)


META_KEYS = ["algorithm", "env_id", "seed", "config", "counters", "history", "evals", "eval_every",
             "eval_episodes", "eval_seed", "key_leaves", "buffers", "format_version"]


@FUZZ
@given(key=st.sampled_from(META_KEYS), value=JSON, drop=st.booleans())
def test_tampered_metadata_is_refused_clearly(key, value, drop, good, tmp_path_factory):
    folder = tmp_path_factory.mktemp("meta")
    (folder / "good.npz").write_bytes(good)
    with np.load(folder / "good.npz") as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        arrays = {k: data[k] for k in data.files if k != "__meta__"}
    if drop:
        meta.pop(key)
    else:
        meta[key] = value
    path = folder / "x.npz"
    np.savez(path, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    _load(path)


@settings(max_examples=20, deadline=None)
@given(data=st.binary(max_size=200))
def test_the_cli_never_shows_a_traceback_for_a_bad_checkpoint(data, tmp_path_factory):
    import contextlib
    import io

    path = tmp_path_factory.mktemp("cli") / "x.npz"
    path.write_bytes(data)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["evaluate", str(path)])
    assert rc == 1 and "x.npz" in err.getvalue() and "Traceback" not in err.getvalue()
