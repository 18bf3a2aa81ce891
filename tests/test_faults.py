"""Every fault survived, nothing lost (issue 13): a run stopped anywhere resumes to the uninterrupted run.

Ctrl-C in an evaluation or in the bookkeeping around an iteration or a checkpoint (in-process), and SIGKILL
in checkpoint writes, between them, in evaluations and at random times (subprocesses, ``tests/faulty_cli.py``),
each resumed with ``pathwise train --resume`` to the same metrics.csv, eval.csv, summary.json (less its
timings), checkpoint arrays and counters, and TensorBoard events: read as TensorBoard reads them (files in
name order, a ``SessionLog.START`` marker discarding the earlier events at its step and later), every
(tag, step) shows once, with the uninterrupted run's value.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pathwise import checkpoint as ckpt
from pathwise import tblog
from pathwise.cli import main
from pathwise.train import resume, train

ENV = "CartPole-v1"
SMALL = {"num_envs": 2, "hidden": (16,), "value_hidden": (16,), "value_steps": 2}
SEED, STEPS, EVAL_EVERY, EPISODES = 3, 320, 80, 2
CLI_SET = ["hidden=16", "num_envs=2", "value_hidden=16", "value_steps=2"]
#: Wall-clock fields and columns; everything else must be reproduced exactly.
TIMING = {"time", "steps_per_s", "train_time", "eval_time", "solved_time", "train_time_s", "eval_time_s",
          "time_to_solve_s"}
TB_TIMING = {"train/time", "train/steps_per_s"}
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- reading a run back


def read_events(path: Path) -> list:
    """The events of one event file; a last record a killed writer cut short is left out, as TensorBoard does."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    data, i, events = path.read_bytes(), 0, []
    while i + 12 <= len(data):
        header = data[i:i + 8]
        (length,) = struct.unpack("<Q", header)
        if i + 12 + length + 4 > len(data):
            break
        payload = data[i + 12:i + 12 + length]
        assert struct.unpack("<I", data[i + 8:i + 12])[0] == masked_crc32c(header), f"{path}: bad length crc"
        assert struct.unpack("<I", data[i + 12 + length:i + 16 + length])[0] == masked_crc32c(payload), path
        events.append(Event.FromString(payload))
        i += 16 + length
    return events


def event_files(run: Path) -> list[Path]:
    return sorted(p for p in (run / "tb").iterdir() if "tfevents" in p.name)


def tensorboard_view(run: Path) -> list[tuple[str, int, float]]:
    """(tag, step, value) as TensorBoard's EventAccumulator keeps them: files in name order; a SessionLog.START
    event at step s discards every point read before it at step >= s (its purge of orphaned data)."""
    from tensorboardX.proto.event_pb2 import SessionLog

    points: list[tuple[str, int, float]] = []
    for path in event_files(run):
        for e in read_events(path):
            if e.HasField("session_log") and e.session_log.status == SessionLog.START:
                points = [p for p in points if p[1] < e.step]
            elif e.HasField("summary"):
                points += [(v.tag, e.step, v.simple_value) for v in e.summary.value]
    return points


def data_server_view(run: Path) -> list[tuple[str, int, float]]:
    """The same as TensorBoard's Rust data server keeps them: it ignores SessionLog, and a point at a step at or
    before its series' last one discards that series' points at that step and later."""
    series: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)
    for path in event_files(run):
        for e in read_events(path):
            for v in (e.summary.value if e.HasField("summary") else ()):
                series[v.tag] = [p for p in series[v.tag] if p[0] < e.step] + [(e.step, v.simple_value)]
    return [(tag, s, x) for tag, points in series.items() for s, x in points]


def raw_points(run: Path) -> list[tuple[str, int]]:
    return [(v.tag, e.step) for p in event_files(run) for e in read_events(p) if e.HasField("summary")
            for v in e.summary.value]


def _rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path) as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def _untimed(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in TIMING}


def _tensorboard(run: Path) -> dict[tuple[str, int], float]:
    view = tensorboard_view(run)
    counts = collections.Counter((tag, step) for tag, step, _ in view)
    twice = [k for k, n in counts.items() if n > 1]
    assert not twice, f"{run}: TensorBoard shows these (tag, step) more than once: {twice[:5]}"
    assert sorted(view) == sorted(data_server_view(run))  # both readers of TensorBoard agree
    return {(tag, step): x for tag, step, x in view if tag not in TB_TIMING}


def assert_same_run(run: Path, reference: Path) -> None:
    """``run`` ended exactly as ``reference``: logs, summary, checkpoints (arrays and counters), TensorBoard."""
    for name in ("metrics.csv", "eval.csv"):
        assert _rows(run / name) == _rows(reference / name), name
    a, b = (_untimed(json.loads((d / "summary.json").read_text())) for d in (run, reference))
    assert a == b
    for which in ("last", "best"):
        (ma, xa), (mb, xb) = (ckpt.read(d / "checkpoints" / f"{which}.npz") for d in (run, reference))
        assert _untimed(ma["counters"]) == _untimed(mb["counters"]), which
        assert [_untimed(r) for r in ma["evals"]] == [_untimed(r) for r in mb["evals"]], which
        assert sorted(xa) == sorted(xb), which
        for name in xa:
            np.testing.assert_array_equal(xa[name], xb[name], err_msg=f"{which}.npz {name}")
    assert _tensorboard(run) == _tensorboard(reference)
    assert not list(run.rglob("*.tmp")), "stale temporaries left"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every stopped one must end as."""
    out = tmp_path_factory.mktemp("reference")
    train("reinforce", ENV, STEPS, seed=SEED, overrides=SMALL, out=out, eval_every=EVAL_EVERY,
          eval_episodes=EPISODES, quiet=True)
    return out


# --------------------------------------------------------------------------- the TensorBoard restart marker


def test_a_restart_marker_hides_what_a_stopped_process_logged_after_its_checkpoint(tmp_path):
    first = tblog.EventLog(tmp_path / "tb", purge_from=1)
    for step in range(1, 6):  # a process that checkpointed step 2, logged up to 5, and was killed
        first.scalars({"train/loss": float(step), "eval/return": -float(step)}, step)
    first.flush()
    second = tblog.EventLog(tmp_path / "tb", purge_from=3)  # resumed from the step-2 checkpoint
    for step in range(3, 7):
        second.scalars({"train/loss": 10.0 * step}, step)
    second.close()
    assert len(event_files(tmp_path)) == 2, "each process writes its own file, the resumed one sorting last"
    starts = [e.step for p in event_files(tmp_path) for e in read_events(p) if e.HasField("session_log")]
    assert starts == [1, 3]
    assert collections.Counter(raw_points(tmp_path))[("train/loss", 4)] == 2  # in the files twice ...
    want = [("train/loss", 1, 1.0), ("train/loss", 2, 2.0), ("eval/return", 1, -1.0), ("eval/return", 2, -2.0)] + \
        [("train/loss", s, 10.0 * s) for s in range(3, 7)]
    assert sorted(tensorboard_view(tmp_path)) == sorted(want)  # ... shown once, with the resumed value


# --------------------------------------------------------------------------- Ctrl-C, in-process


def _interrupting_evaluate(monkeypatch, nth: int) -> None:
    """Ctrl-C in the ``nth`` evaluation, in its first episode."""
    import pathwise.envs

    evaluate, calls = pathwise.envs.evaluate, [0]

    def faulty(act, *args, **kwargs):
        calls[0] += 1
        if calls[0] < nth:
            return evaluate(act, *args, **kwargs)
        steps = [0]

        def act_then_interrupt(obs):
            steps[0] += 1
            if steps[0] == 5:
                raise KeyboardInterrupt
            return act(obs)

        return evaluate(act_then_interrupt, *args, **kwargs)

    monkeypatch.setattr(pathwise.envs, "evaluate", faulty)


@pytest.mark.parametrize("nth", [2, 4], ids=["mid-run", "final"])
def test_ctrl_c_in_an_evaluation_resumes_to_the_uninterrupted_run(reference, tmp_path, monkeypatch, nth):
    run = tmp_path / "run"
    _interrupting_evaluate(monkeypatch, nth)
    with pytest.raises(KeyboardInterrupt):
        train("reinforce", ENV, STEPS, seed=SEED, overrides=SMALL, out=run, eval_every=EVAL_EVERY,
              eval_episodes=EPISODES, quiet=True)
    monkeypatch.undo()
    meta, _ = ckpt.read(run / "checkpoints" / "last.npz")
    c = meta["counters"]
    assert len(meta["evals"]) == nth - 1 and c["env_steps"] >= c["next_eval"], "the evaluation is still due"
    assert len(meta["history"]) == c["iterations"]
    resume(run, quiet=True)
    assert_same_run(run, reference)


@pytest.mark.parametrize("where", ["saving best.npz", "logging an iteration"])
def test_ctrl_c_in_the_bookkeeping_waits_for_its_end_then_resumes_exactly(reference, tmp_path, monkeypatch, where):
    """A real SIGINT, delivered where a bare KeyboardInterrupt would leave best.npz stale or an iteration
    counted but not in TensorBoard."""
    run, calls = tmp_path / "run", [0]
    if where == "saving best.npz":
        save = ckpt.save

        def interrupting(path, *args, **kwargs):
            if Path(path).name == "best.npz":
                calls[0] += 1
                if calls[0] == 2:
                    os.kill(os.getpid(), signal.SIGINT)
            return save(path, *args, **kwargs)

        monkeypatch.setattr(ckpt, "save", interrupting)
    else:
        scalars = tblog.EventLog.scalars

        def interrupting(self, values, step):
            if any(tag.startswith("train/") for tag in values):
                calls[0] += 1
                if calls[0] == 3:
                    os.kill(os.getpid(), signal.SIGINT)
            return scalars(self, values, step)

        monkeypatch.setattr(tblog.EventLog, "scalars", interrupting)
    with pytest.raises(KeyboardInterrupt):
        train("reinforce", ENV, STEPS, seed=SEED, overrides=SMALL, out=run, eval_every=EVAL_EVERY,
              eval_episodes=EPISODES, quiet=True)
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    meta, _ = ckpt.read(run / "checkpoints" / "last.npz")
    assert len(meta["history"]) == meta["counters"]["iterations"] >= 1
    if where == "saving best.npz":
        best, _ = ckpt.read(run / "checkpoints" / "best.npz")
        assert best["counters"]["best_step"] == meta["counters"]["best_step"], "best.npz is not stale"
    resume(run, quiet=True)
    assert_same_run(run, reference)
