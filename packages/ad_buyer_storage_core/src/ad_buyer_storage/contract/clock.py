"""Clocks for expiry. Backends that keep time themselves (memory, SQLite) take one."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "ManualClock", "system_clock"]

#: Seconds since the epoch, as ``time.time``.
Clock = Callable[[], float]

system_clock: Clock = time.time


class ManualClock:
    """A clock that only moves when told: TTL tests without sleeping.

    >>> clock = ManualClock(1_000.0)
    >>> clock.advance(1.5)
    >>> clock()
    1001.5
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a ManualClock never goes back")
        self._now += seconds

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
