"""A run's TensorBoard events (``RUN_DIR/tb/``), written so that a resumed run shows every step once.

Each process that trains a run writes its own event file, and starts it with TensorBoard's restart marker:
a ``SessionLog.START`` event at the step after the state it starts from (the checkpoint's env steps + 1).
A stopped process may have logged steps past its last checkpoint; the resumed one logs them again, and
TensorBoard, reading the files in name (= start) order, discards at a ``START`` marker every event at that
step or later from the files before it (``EventAccumulator``'s purge of orphaned data; the Rust data server
reaches the same by discarding, per series, the points at and after a step that is logged again, as a
resumed run does for every series when it repeats the iterations and evaluations after its checkpoint). So
TensorBoard shows each (tag, step) once, with the value the finished run has. This is TensorBoard's own
mechanism (tensorboardX's ``SummaryWriter(purge_step=...)`` writes the same marker); a tool that reads the
raw files without it sees the purged points too.

Events are written synchronously (no writer thread and queue) and flushed before every checkpoint, so what
was logged up to a checkpoint is on disk when the checkpoint is, and survives a kill.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

from pathwise import checkpoint as ckpt

#: Seconds between flushes while training (a checkpoint always flushes).
FLUSH_EVERY_S = 30.0


class EventLog:
    """One process's event file in ``directory``, its first event a restart marker at ``purge_from``."""

    def __init__(self, directory: str | Path, purge_from: int):
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.record_writer import RecordWriter

        # TensorBoard orders a run's files by name: whole seconds first, then nanoseconds, so two processes that
        # start in the same second get two files (tensorboardX's own name would be the same, the second
        # truncating the first), in start order
        now = time.time_ns()
        self.path = Path(directory) / f"events.out.tfevents.{now // 10**9:010d}.{socket.gethostname()}.{now:020d}"
        with self._io():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = RecordWriter(str(self.path))
        self._write(Event(wall_time=now / 1e9, file_version="brain.Event:2"))
        self._write(Event(wall_time=now / 1e9, step=int(purge_from),
                          session_log=SessionLog(status=SessionLog.START)))
        self.flush()

    @contextlib.contextmanager
    def _io(self):
        """A failed write (full disk, read-only folder) is one line naming the event file."""
        try:
            yield
        except OSError as exc:
            if isinstance(exc, ckpt.WriteError):
                raise
            raise ckpt.write_error(self.path, exc, "the events logged before it are intact") from exc

    def _write(self, event) -> None:
        with self._io():
            self._writer.write(event.SerializeToString())

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log ``{tag: value}`` at ``step``."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])
        self._write(Event(wall_time=time.time(), step=int(step), summary=summary))
        if time.monotonic() - self._flushed > FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Everything logged so far to disk (before a checkpoint is written)."""
        with self._io():
            self._writer.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        self.flush()
        with self._io():
            self._writer.close()


__all__ = ["EventLog", "FLUSH_EVERY_S"]
