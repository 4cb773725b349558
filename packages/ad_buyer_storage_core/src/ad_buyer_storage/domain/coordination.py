"""Lease locks and rate limits, built on the contract's primitives (so they work on every
backend that offers ATOMIC and EXPIRY, and through the hybrid router on its Redis routes).

>>> async with LeaseLock(storage, "rebalance-campaign-c1", ttl=30):
...     ...   # only one worker, on any host, runs this at a time (while the lease lasts)

>>> limiter = RateLimiter(storage, "seller-api", limit=100, window=60)
>>> if not (await limiter.hit()).allowed: ...
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ad_buyer_storage.client.store import Store
from ad_buyer_storage.domain.storage import Storage
from ad_buyer_storage.errors import LockNotOwnedError, LockTimeoutError, VersionConflictError

__all__ = ["LeaseLock", "RateLimitResult", "RateLimiter"]

# A released lock becomes a tombstone that expires at once: the contract has no conditional
# delete, and a version-checked write is what makes release safe (only the owner's lease).
_TOMBSTONE_TTL = 0.001


class LeaseLock:
    """A lock on ``lock:<name>`` held for at most *ttl* seconds unless extended.

    Safe across processes and hosts: acquiring is set-if-absent; releasing and extending
    check, with the value's version, that the lease is still ours (it may have expired and
    been taken by someone else: then :class:`LockNotOwnedError`).
    """

    def __init__(self, storage: Store | Storage, name: str, *, ttl: float = 30.0, retry_interval: float = 0.05) -> None:
        self.storage = storage
        self.key = "lock:" + name
        self.ttl = ttl
        self.retry_interval = retry_interval
        self.owner = os.urandom(12).hex()

    # `timeout` as in threading.Lock.acquire: a deadline over several round trips and waits.
    async def acquire(self, *, blocking: bool = True, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Take the lease; wait for it (up to *timeout* s) unless ``blocking=False``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            lease = {"owner": self.owner, "acquired_at": time.time()}
            if await self.storage.set_if_absent(self.key, lease, ttl=self.ttl):
                return True
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            await asyncio.sleep(self.retry_interval * random.uniform(0.5, 1.5))

    async def _own(self) -> Any:
        held = await self.storage.get_versioned(self.key)
        if held is None or not isinstance(held.value, dict) or held.value.get("owner") != self.owner:
            raise LockNotOwnedError(f"{self.key!r} is not held by this owner (expired or taken)")
        return held

    async def release(self) -> None:
        """Give the lease up; :class:`LockNotOwnedError` if it was no longer ours."""
        held = await self._own()
        try:
            await self.storage.set(self.key, {"owner": None}, ttl=_TOMBSTONE_TTL, if_version=held.version)
        except VersionConflictError:
            raise LockNotOwnedError(f"{self.key!r} changed hands while being released") from None

    async def extend(self, ttl: float | None = None) -> None:
        """Renew the lease for *ttl* (default: the lock's ttl) seconds from now."""
        held = await self._own()
        try:
            await self.storage.set(self.key, held.value, ttl=ttl or self.ttl, if_version=held.version)
        except VersionConflictError:
            raise LockNotOwnedError(f"{self.key!r} changed hands while being extended") from None

    async def locked(self) -> bool:
        value = await self.storage.get(self.key)
        return isinstance(value, dict) and value.get("owner") is not None

    async def __aenter__(self) -> LeaseLock:
        if not await self.acquire(timeout=self.ttl):
            raise LockTimeoutError(f"could not acquire {self.key!r} within {self.ttl} s")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.release()


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    count: int
    remaining: int
    reset_after: float


class RateLimiter:
    """Fixed-window limit: at most *limit* hits per *window* seconds, across every process.

    Each window is one counter, ``rate_limit:<name>:<window number>``, incremented atomically
    and expiring with its window. Windows follow the caller's clock: hosts whose clocks
    disagree by d seconds may count a hit near a boundary in the neighbouring window.
    """

    def __init__(self, storage: Store | Storage, name: str, *, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window > 0")
        self.storage = storage
        self.name = name
        self.limit = limit
        self.window = window

    async def hit(self, cost: int = 1) -> RateLimitResult:
        now = time.time()
        number = int(now // self.window)
        count = await self.storage.incr(f"rate_limit:{self.name}:{number}", cost, ttl=self.window)
        return RateLimitResult(
            allowed=count <= self.limit,
            count=count,
            remaining=max(0, self.limit - count),
            reset_after=(number + 1) * self.window - now,
        )
