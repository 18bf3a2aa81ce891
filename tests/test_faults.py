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
    try:  # and TensorBoard itself, where it is installed (it is not a dependency)
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        pass
    else:
        acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
        acc.Reload()
        assert sorted(view) == sorted((t, e.step, e.value) for t in acc.Tags()["scalars"] for e in acc.Scalars(t))
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


def test_tensorboard_itself_shows_each_step_once(tmp_path):
    """TensorBoard's own reader, where it is installed (it is not a dependency), agrees with tensorboard_view."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    test_a_restart_marker_hides_what_a_stopped_process_logged_after_its_checkpoint(tmp_path)
    acc = accumulator.EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    got = [(tag, e.step, e.value) for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)]
    assert sorted(got) == sorted(tensorboard_view(tmp_path))


# --------------------------------------------------------------------------- Ctrl-C, in-process


def _interrupting_evaluate(monkeypatch, nth: int) -> None:
    """Ctrl-C in the ``nth`` evaluation, at its fifth step (the episodes are played in lockstep)."""
    import pathwise.envs

    evaluate, calls = pathwise.envs.evaluate_lockstep, [0]

    def faulty(act, *args, **kwargs):
        calls[0] += 1
        if calls[0] < nth:
            return evaluate(act, *args, **kwargs)

        def act_then_interrupt(obs, t):
            if t == 4:
                raise KeyboardInterrupt
            return act(obs, t)

        return evaluate(act_then_interrupt, *args, **kwargs)

    monkeypatch.setattr(pathwise.envs, "evaluate_lockstep", faulty)


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
    # Python's own Ctrl-C handler, as in a terminal (a pytest-xdist worker ignores SIGINT, and a process that
    # ignores it rightly never gets KeyboardInterrupt)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train("reinforce", ENV, STEPS, seed=SEED, overrides=SMALL, out=run, eval_every=EVAL_EVERY,
                  eval_episodes=EPISODES, quiet=True)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.undo()
    meta, _ = ckpt.read(run / "checkpoints" / "last.npz")
    assert len(meta["history"]) == meta["counters"]["iterations"] >= 1
    if where == "saving best.npz":
        best, _ = ckpt.read(run / "checkpoints" / "best.npz")
        assert best["counters"]["best_step"] == meta["counters"]["best_step"], "best.npz is not stale"
    resume(run, quiet=True)
    assert_same_run(run, reference)


# --------------------------------------------------------------------------- SIGKILL, subprocesses


def _argv(run: Path, steps: int = STEPS) -> list[str]:
    return ["train", "reinforce", "--env", ENV, "--steps", str(steps), "--seed", str(SEED), "--out", str(run),
            "--quiet", "--eval-every", str(EVAL_EVERY), "--eval-episodes", str(EPISODES), "--set", *CLI_SET]


class Killer:
    """Runs ``pathwise train`` (fresh or ``--resume``) in subprocesses that die by SIGKILL, and counts them."""

    def __init__(self, tmp_path: Path):
        self.log = tmp_path / "stderr.txt"  # a file, not a pipe: a full pipe would block the child
        self.env = {**os.environ, "PATHWISE_QUIET": "1", "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
                    # the children compile the same programs: compile once (the same executables, bit for bit)
                    "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
                    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        self.kills: list[str] = []

    def start(self, run: Path, fault: str, steps: int = STEPS) -> subprocess.Popen:
        fresh = not (run / "config.json").exists()
        argv = _argv(run, steps) if fresh else ["train", "--resume", str(run), "--quiet"]
        with open(self.log, "ab") as err:
            return subprocess.Popen([sys.executable, str(ROOT / "tests" / "faulty_cli.py"), fault, *argv],
                                    env=self.env, stdout=subprocess.DEVNULL, stderr=err)

    def finish(self, proc: subprocess.Popen, fault: str, timeout: float = 600) -> int:
        try:
            rc = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if rc == -signal.SIGKILL:
            self.kills.append(fault)
        else:
            assert rc == 0, f"{fault}: exit status {rc}\n{self.log.read_text()[-3000:]}"
        return rc

    def targeted(self, run: Path, fault: str, steps: int = STEPS) -> int:
        """A process that kills itself at the fault point, or finishes the run first (exit status 0)."""
        return self.finish(self.start(run, fault, steps), fault)

    def at_random(self, run: Path, rng: random.Random, within_s: float) -> int:
        """A process killed at a random time in the ``within_s`` seconds after it opened its event file
        (imports done; it may be compiling, training, evaluating or writing); it may finish first."""
        before = len(event_files(run))
        proc, deadline = self.start(run, "none"), time.monotonic() + 600
        while len(event_files(run)) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, within_s))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        return self.finish(proc, f"random (run at {_progress(run)} steps)")


def _progress(run: Path) -> int:
    return ckpt.read(run / "checkpoints" / "last.npz")[0]["counters"]["env_steps"]


def test_sigkill_in_an_evaluation_and_in_checkpoint_writes_then_resume(reference, tmp_path):
    """Three kills: in an evaluation (the steps since the checkpoint are in TensorBoard twice), in the write
    of a checkpoint (a stale temporary stays) and between two writes; each resumed with `--resume`."""
    if not sys.platform.startswith("linux"):
        pytest.skip("tests/faulty_cli.py finds a write's file through /proc")
    run, killer = tmp_path / "run", Killer(tmp_path)
    for fault in ("eval:2", "write:2", "renamed:1"):
        assert killer.targeted(run, fault) == -signal.SIGKILL, f"{fault} was not reached"
        if fault == "eval:2":  # after the first checkpoint, in the second evaluation
            assert _progress(run) >= EVAL_EVERY
            assert max(collections.Counter(raw_points(run)).values()) == 1  # (one process: no step twice yet)
        if fault == "write:2":
            assert list(run.rglob(".*.tmp")), "the kill landed mid-write"
    assert len(killer.kills) == 3
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert max(collections.Counter(raw_points(run)).values()) > 1, "no step was logged twice: nothing was tested"
    assert_same_run(run, reference)


@pytest.mark.slow
def test_twenty_sigkills_at_random_times_and_in_writes_and_evaluations(tmp_path):
    """20 SIGKILLs of a 12-evaluation run: 9 at chosen points (in evaluations, in checkpoint writes, between
    writes), the rest at random times; every run, resumed with `--resume` until done, ends as the
    uninterrupted run. Where a run finishes before the 20th kill, the next kills hit a new one."""
    if not sys.platform.startswith("linux"):
        pytest.skip("tests/faulty_cli.py finds a write's file through /proc")
    steps = 12 * EVAL_EVERY
    reference = tmp_path / "reference"
    train("reinforce", ENV, steps, seed=SEED, overrides=SMALL, out=reference, eval_every=EVAL_EVERY,
          eval_episodes=EPISODES, quiet=True)
    rng, killer = random.Random(13), Killer(tmp_path)
    targeted = ["eval:1", "write:1", "renamed:1", "write:3", "renamed:2", "eval:2", "write:5", "renamed:4",
                "write:7"]
    runs: list[Path] = []
    run = None
    while len(killer.kills) < 20:
        if run is None:  # a fresh run, killed after its first checkpoint so that it can resume
            run = tmp_path / f"run{len(runs)}"
            runs.append(run)
            assert killer.targeted(run, "eval:2", steps) == -signal.SIGKILL
            continue
        fault = targeted[0] if targeted else None
        rc = killer.targeted(run, fault) if fault else killer.at_random(run, rng, within_s=4.0)
        if rc == 0:  # it finished before the fault: the next kills hit a new run
            run = None
        elif fault:
            targeted.pop(0)
    for r in runs:
        assert main(["train", "--resume", str(r), "--quiet"]) == 0  # finishes it, or changes nothing
        assert_same_run(r, reference)
    print(f"{len(killer.kills)} kills over {len(runs)} runs:", killer.kills)
    assert len(killer.kills) >= 20 and not targeted, killer.kills
