"""``python tests/faulty_cli.py FAULT ARGS...``: ``pathwise ARGS...`` that SIGKILLs itself at a chosen point.

FAULT is ``KIND:N``, the process killing itself at the Nth point of that kind:

- ``write``: in the Nth atomic file write, its temporary file written and synced, not yet renamed (a stale
  ``.NAME.XXXX.tmp`` stays behind; the file keeps its previous version);
- ``renamed``: just after the Nth atomic write's rename (e.g. ``best.npz`` written and ``last.npz`` not yet,
  or a checkpoint written and its logs not yet);
- ``eval``: in the Nth evaluation, in its first episode (the iterations since the last checkpoint are logged
  to metrics and TensorBoard, the checkpoint is not written);
- ``none``: no fault (``N`` is ignored).

The faults are patched in from outside: the library has no test hook (tests/test_architecture.py).
Linux only (a write's file is found through /proc/self/fd).
"""

from __future__ import annotations

import os
import signal
import sys


def _atomic_temporary(path: str) -> bool:
    """A temporary file of ``pathwise.checkpoint.atomic_write_bytes`` (``.NAME.XXXX.tmp``)."""
    name = os.path.basename(path)
    return name.startswith(".") and name.endswith(".tmp")


def install(kind: str, n: int) -> None:
    count = [0]

    def hit() -> None:
        count[0] += 1
        if count[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    if kind == "write":
        fsync = os.fsync

        def faulty_fsync(fd):
            fsync(fd)
            if _atomic_temporary(os.readlink(f"/proc/self/fd/{fd}")):
                hit()

        os.fsync = faulty_fsync
    elif kind == "renamed":
        replace = os.replace

        def faulty_replace(src, dst, **kwargs):
            replace(src, dst, **kwargs)
            if _atomic_temporary(os.fspath(src)):
                hit()

        os.replace = faulty_replace
    elif kind == "eval":
        import pathwise.envs

        evaluate = pathwise.envs.evaluate_lockstep  # the trainer's evaluation plays its episodes in lockstep

        def faulty_evaluate(act, *args, **kwargs):
            count[0] += 1
            if count[0] < n:
                return evaluate(act, *args, **kwargs)

            def act_then_die(obs, t):
                if t == 4:  # mid-episode
                    os.kill(os.getpid(), signal.SIGKILL)
                return act(obs, t)

            return evaluate(act_then_die, *args, **kwargs)

        pathwise.envs.evaluate_lockstep = faulty_evaluate
    elif kind != "none":
        raise SystemExit(f"faulty_cli: unknown fault kind {kind!r}")


if __name__ == "__main__":
    fault_kind, _, number = sys.argv[1].partition(":")
    install(fault_kind, int(number or 0))
    from pathwise.cli import main

    sys.exit(main(sys.argv[2:]))
