"""Lease locks with fencing tokens, and rate limits, built on the contract's primitives (so
they work on every backend that offers ATOMIC and EXPIRY, and through the hybrid router).

>>> async with LeaseLock(storage, "rebalance-campaign-c1", ttl=30) as lock:
...     ...   # only one worker, on any host, runs this at a time (while the lease lasts)
...     await write_fenced(storage, "campaign:c1:plan", plan, lock.fencing_token)

>>> limiter = SlidingWindowRateLimiter(storage, "seller-api", limit=100, window=60)
>>> if not (await limiter.hit()).allowed: ...

A lease can end while its holder is paused (a GC pause, a stalled VM) and another worker takes
it; the first one, waking up, does not know. Its writes to what the lock guards must then be
refused: every acquisition gets a **fencing token** that strictly increases with each
successful acquisition of the same lock name, across processes and lease expiries, and
:func:`write_fenced` refuses a write whose token is older than one the key has already seen
(:class:`~ad_buyer_storage.errors.StaleFencingTokenError`).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ad_buyer_storage.client.api import StoreAPI
from ad_buyer_storage.client.validation import TTL
from ad_buyer_storage.errors import (
    LockNotOwnedError,
    LockTimeoutError,
    StaleFencingTokenError,
    VersionConflictError,
)

__all__ = [
    "LeaseLock",
    "RateLimitResult",
    "RateLimiter",
    "SlidingWindowRateLimiter",
    "read_fenced",
    "write_fenced",
]

# A released lock becomes a tombstone that expires at once: the contract has no conditional
# delete, and a version-checked write is what makes release safe (only the owner's lease).
_TOMBSTONE_TTL = 0.001


class LeaseLock:
    """A lock on ``lock:<name>`` held for at most *ttl* seconds unless extended.

    Safe across processes and hosts: acquiring is set-if-absent; releasing and extending
    check, with the value's version, that the lease is still ours (it may have expired and
    been taken by someone else: then :class:`LockNotOwnedError`).

    Each successful acquisition gets :attr:`fencing_token`, from a counter at ``fence:<name>``
    (durable: the hybrid router keeps it on the durable store, so tokens never go back even if
    the locks' store loses its data). Taking the lease, drawing the token, and stamping it
    into the lease are three steps; the lease must still be ours at the last one, or the
    attempt starts again. So a holder whose stamp succeeded held the lease without a break
    since before it drew its token, and any later holder took the lease after that and drew
    a larger one.
    """

    def __init__(self, storage: StoreAPI, name: str, *, ttl: float = 30.0, retry_interval: float = 0.05) -> None:
        self.storage = storage
        self.key = "lock:" + name
        self.fence_key = "fence:" + name
        self.ttl = ttl
        self.retry_interval = retry_interval
        self.owner = os.urandom(12).hex()
        #: Strictly increasing per successful acquisition of this lock name; None until acquired.
        self.fencing_token: int | None = None

    # `timeout` as in threading.Lock.acquire: a deadline over several round trips and waits.
    async def acquire(self, *, blocking: bool = True, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Take the lease; wait for it (up to *timeout* s) unless ``blocking=False``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            lease = {"owner": self.owner, "acquired_at": time.time(), "fencing_token": None}
            if await self.storage.set_if_absent(self.key, lease, ttl=self.ttl) and await self._stamp_token():
                return True
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                return False
            await asyncio.sleep(self.retry_interval * random.uniform(0.5, 1.5))

    async def _stamp_token(self) -> bool:
        """Draw the next token and write it into our lease, iff the lease is still ours."""
        token = await self.storage.incr(self.fence_key)
        held = await self.storage.get_versioned(self.key)
        if held is None or not isinstance(held.value, dict) or held.value.get("owner") != self.owner:
            return False  # expired meanwhile (and maybe taken): this attempt failed
        try:
            await self.storage.set(
                self.key, {**held.value, "fencing_token": token}, keep_ttl=True, if_version=held.version
            )
        except VersionConflictError:
            return False
        self.fencing_token = token
        return True

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


async def write_fenced(storage: StoreAPI, key: str, value: Any, token: int | None, *, ttl: TTL = None) -> Any:
    """Write *value* at *key* unless a write with a newer fencing token got there first.

    The key holds ``{"fencing_token": t, "value": v}``; a write whose *token* is lower than the
    stored one raises :class:`~ad_buyer_storage.errors.StaleFencingTokenError` and writes
    nothing (an equal token is the same holder writing again). Atomic per key (a versioned
    write). Returns *value*. Read it back with :func:`read_fenced`.
    """
    if not isinstance(token, int) or isinstance(token, bool):
        raise LockNotOwnedError("a fenced write needs the fencing token of a held lock (acquire it first)")

    def fenced(current: Any) -> dict[str, Any]:
        seen = current.get("fencing_token") if isinstance(current, dict) else None
        if isinstance(seen, int) and token < seen:
            raise StaleFencingTokenError(
                f"{key!r} was written under fencing token {seen}; this write carries {token}, from a lease that ended"
            )
        return {"fencing_token": token, "value": value}

    await storage.update(key, fenced, default=None, ttl=ttl)
    return value


async def read_fenced(storage: StoreAPI, key: str, default: Any = None) -> Any:
    """The value :func:`write_fenced` stored at *key*, or *default*."""
    stored = await storage.get(key)
    return stored["value"] if isinstance(stored, dict) and "value" in stored else default


@dataclass(frozen=True)
class RateLimitResult:
    allowed: bool
    count: int
    remaining: int
    #: Seconds until a hit of the same cost would be allowed (0 if it would be now); for the
    #: fixed window, until the window ends.
    reset_after: float
    #: When the hit was judged (seconds since the epoch): its place in the window.
    at: float = 0.0


class RateLimiter:
    """Fixed-window limit: at most *limit* hits per *window* seconds, across every process.

    Each window is one counter, ``rate_limit:<name>:<window number>``, incremented atomically
    and expiring with its window. Windows follow the caller's clock: hosts whose clocks
    disagree by d seconds may count a hit near a boundary in the neighbouring window.
    """

    def __init__(self, storage: StoreAPI, name: str, *, limit: int, window: float) -> None:
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
            at=now,
        )


class SlidingWindowRateLimiter:
    """At most *limit* hits in **any** *window* seconds, across every process.

    :class:`RateLimiter` counts per fixed window and admits up to twice the limit across a
    window's edge. This one keeps, at ``rate_limit:<name>``, the admitted hits of the last
    *window* seconds (a time and a cost each) and admits a hit only if the hits of the window
    ending now leave room for it; the log is replaced with a versioned write, so concurrent
    hits from any number of processes are serialised, and a refused hit writes nothing.

    Times come from the callers' clocks (hosts whose clocks disagree by d seconds may admit
    hits d seconds early). The log holds at most *limit* entries: each hit costs a read and a
    write of it, fine for limits in the thousands; beyond 100,000 use :class:`RateLimiter`.
    """

    MAX_LIMIT = 100_000

    def __init__(
        self, storage: StoreAPI, name: str, *, limit: int, window: float, clock: Callable[[], float] = time.time
    ) -> None:
        if not 1 <= limit <= self.MAX_LIMIT or not window > 0:
            raise ValueError(f"a sliding-window limit needs 1 <= limit <= {self.MAX_LIMIT} and window > 0")
        self.storage = storage
        self.key = "rate_limit:" + name
        self.limit = limit
        self.window = window
        self._clock = clock

    async def hit(self, cost: int = 1) -> RateLimitResult:
        """Admit a hit of *cost* if the last *window* seconds leave room for it."""
        if not isinstance(cost, int) or isinstance(cost, bool) or not 1 <= cost <= self.limit:
            raise ValueError(f"a hit costs between 1 and the limit ({self.limit}), not {cost!r}")
        window_ms = max(1, round(self.window * 1000))
        for attempt in range(1000):
            now_ms = int(self._clock() * 1000)
            held = await self.storage.get_versioned(self.key)
            log: list[list[int]] = held.value if held is not None and isinstance(held.value, list) else []
            # Never judge a hit earlier than the last one admitted (a caller slow between its
            # clock and its read): the log stays in time order, which the guarantee rests on.
            now_ms = max(now_ms, log[-1][0]) if log else now_ms
            live = [entry for entry in log if entry[0] > now_ms - window_ms]
            used = sum(entry[1] for entry in live)
            if used + cost > self.limit:
                room = _room_after(live, used + cost - self.limit, window_ms, now_ms)
                return RateLimitResult(False, used, self.limit - used, room, now_ms / 1000)
            if live and live[-1][0] == now_ms:
                live[-1] = [now_ms, live[-1][1] + cost]  # same millisecond: one entry
            else:
                live.append([now_ms, cost])
            try:
                if held is None:
                    if not await self.storage.set_if_absent(self.key, live, ttl=self.window):
                        raise VersionConflictError("created meanwhile")
                else:
                    await self.storage.set(self.key, live, ttl=self.window, if_version=held.version)
            except VersionConflictError:
                await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** min(attempt, 6))))
                continue
            used += cost
            return RateLimitResult(True, used, self.limit - used, 0.0, now_ms / 1000)
        raise VersionConflictError(f"{self.key!r}: 1000 concurrent attempts lost; try again")


def _room_after(live: list[list[int]], excess: int, window_ms: int, now_ms: int) -> float:
    """Seconds until hits worth *excess* leave the window (the oldest leave first)."""
    freed = 0
    for at, cost in live:
        freed += cost
        if freed >= excess:
            return max(0.0, (at + window_ms - now_ms) / 1000)
    return window_ms / 1000
