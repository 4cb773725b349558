"""``Store``: the whole generic key/value API, built on a backend's few primitives.

Validation (keys, TTLs, patterns, amounts) and encoding happen here, before any I/O, so every
backend refuses bad input identically and a backend author implements only
:class:`~ad_buyer_storage.contract.protocol.StorageBackend`. The buyer agent's domain
(deals, sessions...) is a layer on top (:class:`ad_buyer_storage.Storage`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from ad_buyer_storage.client import telemetry
from ad_buyer_storage.client.base import Selection, Updater, Versioned, _Flagged, _merge_writes, _State, check_claims
from ad_buyer_storage.client.coalesce import Coalescer
from ad_buyer_storage.client.codec import DEFAULT_MAX_VALUE_BYTES, JsonCodec
from ad_buyer_storage.client.combine import KeyedGroups
from ad_buyer_storage.client.keyvalue import KeyValue
from ad_buyer_storage.client.listing import Listing
from ad_buyer_storage.client.transacting import Transacting
from ad_buyer_storage.client.validation import TTL, check_key
from ad_buyer_storage.contract.protocol import (
    NO_EXPIRY,
    NO_KEY,
    Capability,
    StorageBackend,
    SupportsAtomic,
    SupportsExpiry,
    SupportsPubSub,
    SupportsQuery,
    SupportsRemovePrefix,
    SupportsRouting,
)
from ad_buyer_storage.errors import InvalidInputError, KeyNotFoundError

__all__ = ["TTL", "Selection", "Store", "Updater", "Versioned", "check_claims"]


class Store(KeyValue, Listing, Transacting):
    """Async key/value store with TTL, atomics, versions, listing and pub/sub, on one backend.

    ``async with Store(backend) as store:`` connects and closes; ``aclose()`` is idempotent;
    any use before ``connect()`` or after ``aclose()`` raises a
    :class:`~ad_buyer_storage.errors.LifecycleError`.
    """

    def __init__(
        self,
        backend: StorageBackend,
        *,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        describe: str | None = None,
        coalesce: bool = True,
    ) -> None:
        self._backend = backend
        self._codec = JsonCodec(max_value_bytes=max_value_bytes)
        self._caps = frozenset(backend.capabilities)
        # A router (hybrid) answers per key: its routes may differ (pub/sub on Redis only...).
        self._caps_for = backend.capabilities_for if isinstance(backend, SupportsRouting) else None
        # Hook protocols, checked once: a runtime protocol check costs tens of microseconds.
        self._routing = backend if isinstance(backend, SupportsRouting) else None
        self._prefix_remover = backend if isinstance(backend, SupportsRemovePrefix) else None
        self._querier = backend if isinstance(backend, SupportsQuery) else None
        # The methods of the flags, typed: each called only where its flag is claimed (for the
        # key, behind a router); connect() refuses a backend claiming a flag it lacks methods of.
        self._expiry = cast(SupportsExpiry, backend)
        self._atomic = cast(SupportsAtomic, backend)
        self._flagged = cast(_Flagged, backend)
        may = self._caps if self._routing is None else frozenset(Capability)  # a router: per key
        self._committer = self._flagged if Capability.TRANSACTIONS in may else None
        # transact()'s per-key locks for retries; a lock nobody holds or waits for goes away.
        self._key_locks = weakref.WeakValueDictionary()
        self._state = _State.NEW
        self._connect_lock = None
        self._describe = describe
        # Concurrent single-key reads and writes share round trips (see coalesce.py); through a
        # router, only with calls bound for the same route, so one route's outage stays its own.
        route_of = backend.route_of if isinstance(backend, SupportsRouting) else None
        self._reads = Coalescer(self._read_batch, lane=route_of, kind="read") if coalesce else None
        self._writes = (
            Coalescer(
                backend.write,
                key=lambda w: w.key,
                lane=None if route_of is None else lambda w: route_of(w.key),
                merge=_merge_writes,
                kind="write",
            )
            if coalesce
            else None
        )
        # Concurrent updates and increments of one key combine into one round trip (combine.py).
        self._updates = KeyedGroups(self._apply_updates) if coalesce else None
        self._increments = KeyedGroups(self._apply_increments) if coalesce else None

    # -- expiry ------------------------------------------------------------------------------
    async def ttl(self, key: str) -> float | None:
        """Seconds left before *key* expires, None if it never does; KeyNotFoundError if missing."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "ttl", key, Store.ttl(self, key))
        backend = self.require_open()
        key = check_key(key)
        if Capability.EXPIRY not in self.capabilities_for(key):
            if await backend.count((key,)) == 0:
                raise KeyNotFoundError(f"{key!r} does not exist")
            return None
        remaining = await self._expiry.get_ttl(key)
        if remaining == NO_KEY:
            raise KeyNotFoundError(f"{key!r} does not exist")
        return None if remaining == NO_EXPIRY else remaining / 1000

    async def expire(self, key: str, ttl: TTL) -> bool:
        """Give a live *key* a new TTL; False if it does not exist."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "expire", key, Store.expire(self, key, ttl))
        self.require_open()
        key = check_key(key)
        if ttl is None:
            raise InvalidInputError("expire() needs a ttl; use persist() to remove an expiry")
        ttl_ms = self._ttl_ms(ttl, key)
        return await self._expiry.set_ttl(key, ttl_ms)

    async def persist(self, key: str) -> bool:
        """Remove the expiry of a live *key*; False if it does not exist."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "persist", key, Store.persist(self, key))
        self.require_open()
        key = check_key(key)
        self._require(Capability.EXPIRY, "expiry", key)
        return await self._expiry.set_ttl(key, None)

    # -- pub/sub -----------------------------------------------------------------------------
    def _pubsub(self, channel: str) -> SupportsPubSub:
        self.require_open()
        self._require(Capability.PUBSUB, "publish/subscribe", channel)
        return self._flagged

    async def publish(self, channel: str, message: Any) -> int:
        """Publish a JSON-encodable *message*; return how many subscribers got it (-1: unknown)."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "publish", channel, Store.publish(self, channel, message))
        channel = check_key(channel)
        backend = self._pubsub(channel)
        return await backend.publish(channel, self._codec.encode(message))

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[Any]]:
        """``async with storage.subscribe(ch) as messages: async for m in messages: ...``"""
        channel = check_key(channel)
        backend = self._pubsub(channel)
        decode = self._codec.decode
        async with backend.subscribe(channel) as raw:

            async def decoded() -> AsyncIterator[Any]:
                async for text in raw:
                    yield decode(text)

            yield decoded()

    # -- health ------------------------------------------------------------------------------
    async def ping(self) -> float:
        """One round trip; return its latency in seconds."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "ping", None, Store.ping(self))
        backend = self.require_open()
        start = time.perf_counter()
        await backend.ping()
        return time.perf_counter() - start

    async def info(self) -> dict[str, object]:
        """What ``doctor`` shows: backend facts (never a secret) and capabilities."""
        backend = self.require_open()
        facts = dict(await backend.info())
        facts.setdefault("backend", backend.name)
        facts["capabilities"] = sorted(c.value for c in self._caps)
        return facts
