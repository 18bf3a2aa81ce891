"""Progress of long commands: a tqdm bar on a terminal, plain lines in a log.

On a terminal a bar redraws itself in place with carriage returns; written to a file or a pipe those
returns pile up into one unreadable line. So :class:`Progress` draws a tqdm bar only when its stream
is a terminal (or a notebook, where tqdm draws a widget) and otherwise prints one plain line at each tenth of the work and at each event the
caller reports (an evaluation). Either way it shows one rate, named by its unit (``env steps/s``).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

#: Plain (not a terminal) output prints a line each time this fraction of the total is passed.
PLAIN_EVERY = 0.1


def is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """Progress of ``total`` units of work (``unit``: e.g. "env steps"), shown on ``stream`` (default stderr).

    :meth:`update` moves it to an absolute position with status fields (``return=-150.2``); :meth:`event`
    does the same and, in plain mode, always prints the line (an evaluation is worth one).
    """

    def __init__(self, total: int, *, desc: str, unit: str, initial: int = 0, stream: TextIO | None = None):
        self.total, self.desc, self.unit = max(int(total), int(initial)), desc, unit
        self.stream = sys.stderr if stream is None else stream
        self.n, self.start_n, self.t0 = int(initial), int(initial), time.perf_counter()
        self.status: dict[str, str] = {}
        self._bar = None
        self._next_line = self._next_mark(self.n)
        if is_terminal(self.stream) or (stream is None and "ipykernel" in sys.modules):  # a notebook: a widget
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=self.n, unit=f" {unit}", unit_scale=True,
                             desc=desc, dynamic_ncols=True, file=self.stream)

    def _next_mark(self, n: int) -> int:
        step = max(1, round(self.total * PLAIN_EVERY))
        return (n // step + 1) * step

    def rate(self) -> float:
        """Units per second of wall-clock time since this display started (evaluations included)."""
        return (self.n - self.start_n) / max(time.perf_counter() - self.t0, 1e-9)

    def _reach(self, n: int) -> int:
        """``n``, with the total raised to it where the work ran past it (a run ends after the whole iteration
        that reaches its budget): the count and the rate stay the true ones."""
        n = int(n)
        if n > self.total:
            self.total = n
            if self._bar is not None:
                self._bar.total = n
        return n

    def update(self, n: int, **status: Any) -> None:
        n = self._reach(n)
        self.status.update({k: _fmt(v) for k, v in status.items()})
        if self._bar is not None:
            self._bar.update(n - self._bar.n)
            if self.status:
                self._bar.set_postfix(self.status, refresh=False)
            self.n = n
            return
        self.n = n
        if n >= self._next_line or n >= self.total:
            self._line()

    def event(self, n: int, **status: Any) -> None:
        """Move to ``n`` and report (an evaluation): a line of its own when not on a terminal."""
        if self._bar is not None:
            self.update(n, **status)
            return
        self.n = self._reach(n)
        self.status.update({k: _fmt(v) for k, v in status.items()})
        self._line()

    def _line(self) -> None:
        fields = "".join(f", {k} {v}" for k, v in self.status.items())
        rate, elapsed = self.rate(), time.perf_counter() - self.t0
        print(f"{self.desc}: {self.n:,}/{self.total:,} {self.unit} ({self.n / max(self.total, 1):.0%}) in "
              f"{elapsed:.0f} s, {rate:,.0f} {self.unit}/s{fields}" if rate >= 100 else
              f"{self.desc}: {self.n:,}/{self.total:,} {self.unit} ({self.n / max(self.total, 1):.0%}) in "
              f"{elapsed:.0f} s, {rate:.2g} {self.unit}/s{fields}", file=self.stream, flush=True)
        self._next_line = self._next_mark(self.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


__all__ = ["PLAIN_EVERY", "Progress", "is_terminal"]
