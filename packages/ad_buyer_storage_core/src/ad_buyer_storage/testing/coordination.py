"""Coordination: lease locks with fencing tokens and the sliding-window rate limiter, on the
backend's atomics (the helpers are core code; this checks nothing in the backend breaks them)."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid

import pytest

from ad_buyer_storage.client.coordination import LeaseLock, SlidingWindowRateLimiter, read_fenced, write_fenced
from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.errors import LockNotOwnedError, StaleFencingTokenError

from ._base import ContractBase, also_uncoalesced, certifies, fails_with
from ._child import limiter_attack_in_processes
from .harness import Subject

__all__ = ["CoordinationContract", "most_in_any_window"]


def most_in_any_window(times: list[float], window: float) -> int:
    """The most of *times* (sorted, seconds) that fall in one window ``[t, t + window)``."""
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - window:
            start += 1
        most = max(most, end - start + 1)
    return most


class CoordinationContract(ContractBase):
    """Area ``coordination``: fencing tokens refuse a paused holder's late write; the sliding
    window never admits more than its limit in any window, from tasks or processes."""

    @certifies("coordination", Capability.ATOMIC, Capability.EXPIRY)
    async def test_fencing_tokens_refuse_a_paused_holders_late_write(self, subject: Subject) -> None:
        storage = subject.storage
        first = LeaseLock(storage, "rebalance", ttl=0.3)
        assert await first.acquire(blocking=False), "a free lock must be acquired"
        assert first.fencing_token is not None, "an acquired lock must have a fencing token"
        await write_fenced(storage, "campaign:plan", "first's plan", first.fencing_token)
        await subject.elapse(0.4)  # the first holder pauses past its lease
        second = LeaseLock(storage, "rebalance", ttl=30)
        assert await second.acquire(blocking=False), "an expired lease must be taken by the next caller"
        assert second.fencing_token is not None, "an acquired lock must have a fencing token"
        assert second.fencing_token > first.fencing_token, (
            f"fencing tokens must strictly increase across a lease expiry: {first.fencing_token} then "
            f"{second.fencing_token}"
        )
        await write_fenced(storage, "campaign:plan", "second's plan", second.fencing_token)
        await fails_with(
            StaleFencingTokenError,
            write_fenced(storage, "campaign:plan", "first's late plan", first.fencing_token),
            "a write fenced with an older token than the key has seen must be refused",
        )
        got = await read_fenced(storage, "campaign:plan")
        assert got == "second's plan", f"a refused fenced write must write nothing: read {got!r}"
        await fails_with(LockNotOwnedError, first.release(), "releasing an expired, taken lease must fail")
        await second.release()

    @also_uncoalesced
    @certifies("coordination", Capability.ATOMIC, Capability.EXPIRY)
    async def test_fencing_tokens_strictly_increase_under_contention(self, subject: Subject) -> None:
        storage = subject.storage
        tokens: list[int] = []

        async def worker() -> None:
            for _ in range(3):
                lock = LeaseLock(storage, "contended", ttl=30, retry_interval=0.002)
                async with lock:
                    assert lock.fencing_token is not None, "an acquired lock must have a fencing token"
                    tokens.append(lock.fencing_token)  # in the order the lease was held
                    await asyncio.sleep(0)
                await subject.elapse(0.002)  # a released lease is a tombstone for a millisecond

        await asyncio.gather(*(worker() for _ in range(8)))
        assert len(tokens) == 24, f"every acquisition must succeed: {len(tokens)} of 24"
        assert tokens == sorted(set(tokens)), (
            f"tokens must strictly increase with each acquisition: {tokens} (the lease is a set-if-absent, the "
            "token an increment: one of them is not atomic)"
        )

    @also_uncoalesced
    @certifies("coordination", Capability.ATOMIC, Capability.EXPIRY)
    async def test_the_sliding_window_never_admits_more_than_its_limit(self, subject: Subject) -> None:
        clock = subject.clock if subject.harness.uses_clock else time.time
        limiter = SlidingWindowRateLimiter(subject.storage, "edge", limit=5, window=1.0, clock=clock)
        if subject.harness.uses_clock:
            subject.move_clock_to((int(clock()) // 10 + 1) * 10 + 0.9)  # just before a fixed window's edge
        admitted = []
        for _ in range(3):  # three bursts, a few milliseconds apart, straddling the edge
            results = await asyncio.gather(*(limiter.hit() for _ in range(8)))
            admitted += [r.at for r in results if r.allowed]
            refused = [r for r in results if not r.allowed]
            assert all(0 < r.reset_after <= 1.0 for r in refused), "a refused hit must say when to retry"
            await subject.elapse(0.15)
        most = most_in_any_window(sorted(admitted), 1.0)
        assert most <= 5, (
            f"a limit of 5 per second must hold in every 1 s window: {most} admitted in one (the limiter counts "
            "with set-if-absent and version-checked writes: one of them is not atomic)"
        )
        assert len(admitted) >= 5, f"the limiter must admit up to its limit: {len(admitted)} admitted"
        await subject.elapse(1.1)
        later = await limiter.hit()
        assert later.allowed, "once the window has passed, hits must be admitted again"

    @pytest.mark.multiprocess
    @certifies("coordination", Capability.ATOMIC, Capability.EXPIRY, Capability.MULTI_PROCESS)
    async def test_the_sliding_window_holds_across_processes_at_the_edge(self, subject: Subject) -> None:
        recipe = subject.harness.child_backend
        assert recipe is not None, "a backend claiming MULTI_PROCESS needs a harness with child_backend"
        name = "attack-" + uuid.uuid4().hex[:8]
        with tempfile.TemporaryDirectory() as out:
            admitted = await limiter_attack_in_processes(recipe, name, 10, 0.5, 3, out)
        most = most_in_any_window(admitted, 0.5)
        assert most <= 10, f"4 processes hitting a limit of 10 per 0.5 s: {most} admitted in one 0.5 s window"
        assert len(admitted) >= 30, f"over 3 windows the limit must be reached each window: {len(admitted)} admitted"
