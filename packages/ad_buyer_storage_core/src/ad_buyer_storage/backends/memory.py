"""The in-memory backend: the reference implementation of the contract.

Registered as ``memory``. Nothing is shared between processes or kept after ``aclose()``.
Handy for unit tests of code that uses the storage layer (pass a :class:`ManualClock` to test
expiry without sleeping).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NamedTuple

from ad_buyer_storage.contract.clock import Clock, system_clock
from ad_buyer_storage.contract.glob import GlobPattern
from ad_buyer_storage.contract.protocol import (
    INT64_MAX,
    INT64_MIN,
    NO_EXPIRY,
    NO_KEY,
    Capability,
    Check,
    Condition,
    Peer,
    PoolUsage,
    Record,
    Write,
)
from ad_buyer_storage.errors import ConfigurationError, InvalidValueError
from ad_buyer_storage.kit.subscription import Deliver, queue_subscription

__all__ = ["MemoryBackend", "create_backend"]


class _Entry(NamedTuple):
    value: str
    version: str
    expires_at_ms: int | None
    ttl_ms: int | None = None  # the TTL it was last given (SupportsRefresh)


class MemoryBackend:
    """A dict with expiry, versions and atomic operations (atomic because nothing awaits)."""

    name = "memory"
    capabilities = frozenset(
        {Capability.EXPIRY, Capability.ATOMIC, Capability.PUBSUB, Capability.TRANSACTIONS, Capability.REFRESH}
    )

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._data: dict[str, _Entry] = {}
        self._subscribers: dict[str, set[Deliver]] = {}

    def __repr__(self) -> str:
        return f"MemoryBackend(keys={len(self._data)})"

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        return None

    def peer(self) -> Peer:
        return Peer(self.name)

    def pool_usage(self) -> PoolUsage | None:
        return None

    async def aclose(self) -> None:
        self._data.clear()

    async def ping(self) -> None:
        return None

    async def info(self) -> Mapping[str, object]:
        return {"backend": "memory", "keys_held": len(self._data), "shared_between_processes": False}

    # -- helpers ---------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _live(self, key: str, now_ms: int) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None or (entry.expires_at_ms is not None and entry.expires_at_ms <= now_ms):
            return None  # reads never write: an expired entry is left for writers to replace
        return entry

    # -- primitives ------------------------------------------------------------------------
    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        now = self._now_ms()
        out: list[Record | None] = []
        for key in keys:
            entry = self._live(key, now)
            out.append(None if entry is None else Record(entry.value, entry.version))
        return out

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        now = self._now_ms()
        results: list[bool] = []
        for w in writes:
            current = self._live(w.key, now)
            if w.condition is Condition.IF_ABSENT and current is not None:
                results.append(False)
                continue
            if w.condition is Condition.IF_VERSION and (current is None or current.version != w.expected_version):
                results.append(False)
                continue
            self._apply(w, current, now)
            results.append(True)
        return results

    def _apply(self, w: Write, current: _Entry | None, now: int) -> None:
        if w.keep_ttl and current is not None:
            self._data[w.key] = _Entry(w.value, w.version, current.expires_at_ms, current.ttl_ms)
        else:
            expires = None if w.ttl_ms is None else now + w.ttl_ms
            self._data[w.key] = _Entry(w.value, w.version, expires, w.ttl_ms)

    async def read_refresh(self, key: str, ttl_ms: int | None) -> Record | None:
        now = self._now_ms()
        entry = self._live(key, now)
        if entry is None:
            return None
        renew = entry.ttl_ms if ttl_ms is None else ttl_ms
        if renew is not None:
            self._data[key] = entry._replace(expires_at_ms=now + renew, ttl_ms=renew)
        return Record(entry.value, entry.version)

    async def commit(self, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str]) -> bool:
        # Atomic because nothing here awaits.
        now = self._now_ms()
        for key, version in checks:
            entry = self._live(key, now)
            if (None if entry is None else entry.version) != version:
                return False
        for w in writes:
            self._apply(w, self._live(w.key, now), now)
        for key in deletes:
            self._data.pop(key, None)
        return True

    async def remove(self, keys: Sequence[str]) -> int:
        now = self._now_ms()
        removed = 0
        for key in keys:
            live = self._live(key, now) is not None
            if self._data.pop(key, None) is not None and live:
                removed += 1
        return removed

    async def count(self, keys: Sequence[str]) -> int:
        now = self._now_ms()
        return sum(1 for key in keys if self._live(key, now) is not None)

    async def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        now = self._now_ms()
        prefix = pattern.prefix
        snapshot = [k for k in self._data if k.startswith(prefix)]
        for start in range(0, len(snapshot), batch_size):
            for key in snapshot[start : start + batch_size]:
                if self._live(key, now) is not None and (pattern.is_prefix_only or pattern.matches(key)):
                    yield key
            await asyncio.sleep(0)  # let other tasks run between batches, as a network store would

    async def get_ttl(self, key: str) -> int:
        now = self._now_ms()
        entry = self._live(key, now)
        if entry is None:
            return NO_KEY
        return NO_EXPIRY if entry.expires_at_ms is None else entry.expires_at_ms - now

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        now = self._now_ms()
        entry = self._live(key, now)
        if entry is None:
            return False
        self._data[key] = entry._replace(expires_at_ms=None if ttl_ms is None else now + ttl_ms, ttl_ms=ttl_ms)
        return True

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        now = self._now_ms()
        entry = self._live(key, now)
        if entry is None:
            result = amount
            expires = None if ttl_ms is None else now + ttl_ms
            given = ttl_ms
        else:
            current = _as_int64(entry.value, key)
            result = current + amount
            if not INT64_MIN <= result <= INT64_MAX:
                raise InvalidValueError(f"incrementing {key!r} by {amount} would overflow 64 bits")
            expires, given = entry.expires_at_ms, entry.ttl_ms
        self._data[key] = _Entry(str(result), version, expires, given)
        return result

    # -- pub/sub (in-process) ------------------------------------------------------------------
    async def publish(self, channel: str, message: str) -> int:
        subscribers = self._subscribers.get(channel, set())
        for deliver in subscribers:
            deliver(message)
        return len(subscribers)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return queue_subscription(functools.partial(self._listen, channel))

    @asynccontextmanager
    async def _listen(self, channel: str, deliver: Deliver) -> AsyncIterator[None]:
        self._subscribers.setdefault(channel, set()).add(deliver)
        try:
            yield
        finally:
            self._subscribers[channel].discard(deliver)


def _as_int64(text: str, key: str) -> int:
    value: Any = json.loads(text)
    if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
        raise InvalidValueError(f"the value at {key!r} is not a 64-bit integer")
    return value


def create_backend(settings: Any, /, **overrides: Any) -> MemoryBackend:
    """Registry factory: ``memory`` takes an optional ``clock`` override."""
    unknown = set(overrides) - {"clock"}
    if unknown:
        raise ConfigurationError(
            f"unknown setting(s) {', '.join(sorted(unknown))} for the memory backend; valid: clock"
        )
    return MemoryBackend(**overrides)
