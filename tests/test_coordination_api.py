"""The waiting shapes of locks and rate limits: how long ``async with`` waits, the
non-blocking form, and a limiter that waits for a slot."""

from __future__ import annotations

import asyncio
import time

import pytest

from ad_buyer_storage import LeaseLock, LockTimeoutError, RateLimiter, SlidingWindowRateLimiter, Store
from ad_buyer_storage.backends.memory import MemoryBackend


async def test_a_lease_lock_waits_as_told_then_says_how() -> None:
    async with Store(MemoryBackend()) as store, LeaseLock(store, "job", ttl=30):
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match="at once"):
            async with LeaseLock(store, "job", blocking=False):
                pass
        assert time.monotonic() - started < 1, "blocking=False must not wait"
        started = time.monotonic()
        with pytest.raises(LockTimeoutError, match=r"within 0\.2 s"):
            async with LeaseLock(store, "job", ttl=30, blocking_timeout=0.2):
                pass
        assert 0.2 <= time.monotonic() - started < 5, "blocking_timeout bounds the wait, not the ttl"
        assert not await LeaseLock(store, "job").acquire(blocking=False)
    async with Store(MemoryBackend()) as store, LeaseLock(store, "free", blocking=False) as lock:
        assert lock.fencing_token == 1  # a free lease is taken at once, non-blocking or not


async def test_a_sliding_limiter_waits_for_a_slot() -> None:
    async with Store(MemoryBackend()) as store:
        limiter = SlidingWindowRateLimiter(store, "api", limit=2, window=0.3)
        started = time.monotonic()
        results = [await limiter.acquire() for _ in range(3)]  # the third waits for the window
        assert all(r.allowed for r in results)
        assert time.monotonic() - started >= 0.25
        async with limiter as verdict:
            assert verdict.allowed
        while (await limiter.hit()).allowed:  # fill the window
            pass
        with pytest.raises(LockTimeoutError, match=r"within 0\.01 s"):
            await limiter.acquire(timeout=0.01)


async def test_a_fixed_window_limiter_waits_for_the_next_window() -> None:
    async with Store(MemoryBackend()) as store:
        limiter = RateLimiter(store, "fixed", limit=1, window=0.2)
        first, second = await asyncio.gather(limiter.acquire(), limiter.acquire())
        assert first.allowed
        assert second.allowed
        assert first.at // 0.2 != second.at // 0.2, "the second hit was admitted in a later window"


async def test_a_released_lease_is_free_at_once() -> None:
    """release() leaves a 1 ms tombstone (a versioned write: the contract has no conditional
    delete); a non-blocking acquire right after must not find the lease taken."""
    async with Store(MemoryBackend()) as store:
        lock = LeaseLock(store, "again")
        for _ in range(50):
            assert await lock.acquire(blocking=False)
            await lock.release()
        tokens = []
        for _ in range(3):
            async with LeaseLock(store, "again", blocking=False) as held:
                tokens.append(held.fencing_token)
        assert all(isinstance(t, int) for t in tokens)
        assert tokens == sorted(t for t in tokens if t is not None)
        assert len(set(tokens)) == 3
