"""A progress display for long operations (``migrate``)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """A progress bar with rate and ETA on a terminal; plain periodic lines otherwise."""

    def __init__(self, total: int | None, stream: TextIO | None = None, every: float = 2.0) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.1 if self.tty else every
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < self.every:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        if self.total:
            share = min(done / self.total, 1.0)
            eta = (self.total - done) / rate if rate else 0.0
            bar = "#" * int(share * 30)
            line = f"[{bar:<30}] {done:,}/{self.total:,} {share:6.1%}  {rate:,.0f} keys/s  ETA {eta:5.1f}s"
        else:
            line = f"{done:,} keys  {rate:,.0f} keys/s"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
