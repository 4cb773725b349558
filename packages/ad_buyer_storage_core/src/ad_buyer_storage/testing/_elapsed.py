"""Bounds on a remaining TTL from the time that really passed, never from a fixed slack.

A test that writes ``ttl=30`` and then asserts ``25 < ttl() <= 30`` fails whenever the machine
stalls for five seconds between the write and the read (a loaded CI runner does). What a store
may answer is known exactly: no more than the TTL, and no less than the TTL minus the time that
passed since just before the write, less a millisecond or two of rounding. :class:`Elapsed`
measures that time and checks the bound::

    elapsed = Elapsed.of(subject)  # just before the write whose TTL is checked
    await storage.set("k", 1, ttl=30)
    remaining = await storage.ttl("k")
    elapsed.check_ttl(remaining, 30, "set(ttl=30) must give the key 30 s")

For a ``keep_ttl`` write the start is before the *original* ``set(ttl=...)``: the expiry it keeps
was set then. On a store that keeps time with the kit's :class:`~ad_buyer_storage.ManualClock`
only the clock's advances count, so the bound stays exact however slow the machine is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .harness import Subject

_monotonic = time.monotonic  # real time; tests of this module replace it

__all__ = ["Elapsed"]


class Elapsed:
    """The time that passed since it was made, on the clock a store expires keys by."""

    #: Seconds a store may lose to millisecond rounding (of the expiry it stores, and of the TTL
    #: it answers): one millisecond each.
    ROUNDING = 0.002

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        """Start now. *clock*: the manual clock the store keeps time with, if it does (then only its
        advances count, and real time, however long, does not); None for a store on real time."""
        self._clock = clock
        self._clock_start = clock() if clock is not None else 0.0
        self._start = _monotonic()

    @classmethod
    def of(cls, subject: Subject) -> Elapsed:
        """Start now, on the clock *subject*'s store expires by: the kit's, or real time."""
        return cls(subject.clock if subject.harness.uses_clock else None)

    def seconds(self) -> float:
        """Seconds passed since the start, for the store (an upper bound on real time)."""
        if self._clock is not None:
            return self._clock() - self._clock_start
        return _monotonic() - self._start

    def check_ttl(self, remaining: float | None, ttl: float, rule: str) -> float:
        """Assert that *remaining*, read now, is what a key given *ttl* seconds after the start may have left.

        That is ``ttl - elapsed - ROUNDING <= remaining <= ttl``. Fails with *rule* and the numbers;
        returns *remaining*.
        """
        elapsed = self.seconds()
        lowest = ttl - elapsed - self.ROUNDING
        if remaining is None or not lowest <= remaining <= ttl:
            raise AssertionError(
                f"{rule}: ttl() = {remaining}, not between {lowest:.3f} and {ttl} "
                f"(the {ttl} s given, less the {elapsed:.3f} s passed since just before the write)"
            )
        return remaining

    def check_lag(self, lag: float, rule: str) -> float:
        """Assert that *lag* seconds (how much later one thing happened than another, both since the
        start) is at least 0 and at most the time passed, give or take ``ROUNDING``; returns *lag*."""
        elapsed = self.seconds()
        if not -self.ROUNDING <= lag <= elapsed + self.ROUNDING:
            raise AssertionError(
                f"{rule}: {lag:.3f} s apart, not between 0 and the {elapsed:.3f} s passed since the start"
            )
        return lag
