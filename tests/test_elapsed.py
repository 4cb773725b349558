"""The kit's TTL bound: from the time that really passed, never from a fixed slack."""

from __future__ import annotations

import pytest

from ad_buyer_storage import ManualClock
from ad_buyer_storage.testing import Elapsed, _elapsed


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> FakeMonotonic:
    fake = FakeMonotonic()
    monkeypatch.setattr(_elapsed, "_monotonic", fake)
    return fake


def test_a_slow_machine_is_not_a_wrong_ttl(monotonic: FakeMonotonic) -> None:
    """Issue 23: a runbook that took 8.8 s left 591.194 s of a 600 s TTL; `595 < remaining` failed."""
    elapsed = Elapsed()
    monotonic.now += 8.806
    assert elapsed.seconds() == pytest.approx(8.806)
    assert elapsed.check_ttl(591.194, 600, "kept") == 591.194
    assert elapsed.check_ttl(600, 600, "kept") == 600


def test_the_bound_still_rejects_what_no_delay_explains(monotonic: FakeMonotonic) -> None:
    elapsed = Elapsed()
    monotonic.now += 0.010
    elapsed.check_ttl(1.49, 1.5, "ok")
    elapsed.check_ttl(1.5 - 0.010 - Elapsed.ROUNDING + 1e-9, 1.5, "ok")  # the rounding allowance
    with pytest.raises(AssertionError, match=r"ttl=1\.5 must be kept to the millisecond: ttl\(\) = 1\.0, not between"):
        elapsed.check_ttl(1.0, 1.5, "ttl=1.5 must be kept to the millisecond")  # rounded down to whole seconds
    with pytest.raises(AssertionError, match=r"not between 1\.488 and 1\.5 .*0\.010 s passed"):
        elapsed.check_ttl(1.501, 1.5, "never more than given")
    with pytest.raises(AssertionError, match="ttl\\(\\) = None"):
        elapsed.check_ttl(None, 1.5, "an expiry")


def test_on_a_manual_clock_only_its_advances_count(monotonic: FakeMonotonic) -> None:
    clock = ManualClock()
    elapsed = Elapsed(clock)
    monotonic.now += 60.0  # a stalled machine: irrelevant to a store that keeps time by the clock
    elapsed.check_ttl(1.5, 1.5, "exact")
    with pytest.raises(AssertionError):
        elapsed.check_ttl(1.0, 1.5, "the 60 s the machine stalled do not excuse a rounded TTL")
    clock.advance(2)
    assert elapsed.seconds() == pytest.approx(2)
    elapsed.check_ttl(98, 100, "two seconds of the clock")
    with pytest.raises(AssertionError):
        elapsed.check_ttl(97.9, 100, "no more than two")


def test_a_lag_is_bounded_by_the_time_passed(monotonic: FakeMonotonic) -> None:
    elapsed = Elapsed()
    monotonic.now += 0.050
    assert elapsed.check_lag(0.050, "ok") == 0.050
    elapsed.check_lag(0.0, "ok")
    with pytest.raises(AssertionError, match=r"the copy follows: 0\.060 s apart, not between 0 and the 0\.050 s"):
        elapsed.check_lag(0.060, "the copy follows")
    with pytest.raises(AssertionError):
        elapsed.check_lag(-0.010, "the copy is never earlier")
