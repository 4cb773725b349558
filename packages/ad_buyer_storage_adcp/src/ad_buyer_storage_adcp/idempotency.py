"""The SDK's :class:`~adcp.server.idempotency.IdempotencyBackend` on one of our stores.

Layout, under ``<namespace>:idem:``: ``e:<scope>:<key>`` holds a cached response
(``{"h": payload hash, "r": response as JSON text, "x": expiry epoch}``) with a TTL to its
expiry; ``l:<scope>:<key>`` is the lease of :meth:`StorageIdempotencyBackend.hold`
(``{"o": owner token}``, TTL ``lease_seconds``, renewed while the holder lives).

``hold`` takes the lease with ``set_if_absent`` (every process sharing the store waits for it),
renews it every third of its TTL while the block runs, and deletes it on leaving, only if it is
still its own. A holder killed mid-hold keeps it at most ``lease_seconds``. Writes made inside
the hold (``put``, ``replace``) are fenced: one transaction checks that the lease is still this
holder's and writes, so a holder that lost its lease (paused past the TTL) never overwrites the
next holder's result: it gets :class:`~ad_buyer_storage.LockNotOwnedError` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
import weakref
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

from adcp.server.idempotency import CachedResponse, IdempotencyBackend

from ad_buyer_storage import InvalidInputError, LockNotOwnedError, StorageError, Store, Transaction
from ad_buyer_storage_adcp._base import StoreHolder, Target

__all__ = ["StorageIdempotencyBackend"]

log = logging.getLogger(__name__)

#: Shortest TTL given to an entry whose expiry is (nearly) past: it must still be a positive TTL.
_MIN_TTL = 0.001


class StorageIdempotencyBackend(IdempotencyBackend):
    """Idempotency cache and per-key execution lease shared by every process on the store.

    *target*: a URL (``"redis://127.0.0.1:6379/0"``), a backend name (``"hybrid"``), None (the
    settings' choice) or one of our :class:`~ad_buyer_storage.Store` objects (closed by its owner,
    not by :meth:`aclose`). *lease_seconds*: how long a crashed holder can keep a key;
    *poll_seconds*: the longest wait between two attempts to take a busy lease.
    """

    def __init__(
        self,
        target: Target = None,
        *,
        namespace: str = "adcp",
        lease_seconds: float = 30.0,
        poll_seconds: float = 0.05,
        **overrides: Any,
    ) -> None:
        if not lease_seconds > 0 or not poll_seconds > 0:
            raise InvalidInputError("lease_seconds and poll_seconds must be positive")
        self._holder = StoreHolder(target, namespace=namespace, kind="idem", **overrides)
        self._lease_seconds = float(lease_seconds)
        self._poll = float(poll_seconds)
        self._guard = asyncio.Lock()
        self._local: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()
        # The lease this task holds (its key, its owner token), for fenced writes inside hold().
        self._held: ContextVar[tuple[str, str] | None] = ContextVar(f"adcp_idem_held_{id(self)}", default=None)

    def __repr__(self) -> str:
        return f"<StorageIdempotencyBackend {self._holder.raw_store!r}>"

    @property
    def store(self) -> Store:
        return self._holder.raw_store

    @property
    def is_durable(self) -> bool:
        return self._holder.durable

    async def aclose(self) -> None:
        await self._holder.aclose()

    async def __aenter__(self) -> StorageIdempotencyBackend:
        await self._holder.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- keys and values ------------------------------------------------------------------------
    def _entry_key(self, scope_key: str, key: str) -> str:
        return self._holder.key("e", scope_key, key)

    def _lease_key(self, scope_key: str, key: str) -> str:
        return self._holder.key("l", scope_key, key)

    @staticmethod
    def _encode(entry: CachedResponse) -> dict[str, Any]:
        if not isinstance(entry.payload_hash, str):
            raise InvalidInputError("payload_hash must be str")
        return {
            "h": entry.payload_hash,
            "r": json.dumps(entry.response, allow_nan=False, separators=(",", ":")),
            "x": float(entry.expires_at_epoch),
        }

    @staticmethod
    def _decode(value: Any) -> CachedResponse:
        return CachedResponse(payload_hash=value["h"], response=json.loads(value["r"]), expires_at_epoch=value["x"])

    @staticmethod
    def _ttl(entry: CachedResponse) -> float:
        return max(entry.expires_at_epoch - time.time(), _MIN_TTL)

    # -- the backend contract ---------------------------------------------------------------------
    async def current_time(self) -> float:
        return time.time()

    async def get(self, scope_key: str, key: str) -> CachedResponse | None:
        store = await self._holder.store()
        value = await store.get(self._entry_key(scope_key, key))
        if value is None or value["x"] <= time.time():
            return None
        return self._decode(value)

    async def put(self, scope_key: str, key: str, entry: CachedResponse) -> None:
        """First writer wins: a live entry is kept (an expired one is replaced)."""
        await self._write(scope_key, key, entry, overwrite=False)

    async def put_if_absent(self, scope_key: str, key: str, entry: CachedResponse) -> bool:
        return await self._write(scope_key, key, entry, overwrite=False)

    async def replace(self, scope_key: str, key: str, entry: CachedResponse) -> None:
        """Overwrite the entry; only inside :meth:`hold` of this key, while the lease is held."""
        lease = self._held.get()
        if lease is None or lease[0] != self._lease_key(scope_key, key):
            raise LockNotOwnedError("replace() needs hold(scope_key, key)")
        await self._write(scope_key, key, entry, overwrite=True)

    async def _write(self, scope_key: str, key: str, entry: CachedResponse, *, overwrite: bool) -> bool:
        store = await self._holder.store()
        entry_key = self._entry_key(scope_key, key)
        value = self._encode(entry)
        lease = self._held.get()
        if lease is not None and lease[0] != self._lease_key(scope_key, key):
            lease = None  # held for another key: this write is not fenced by it

        async def fn(tx: Transaction) -> bool:
            if lease is not None:
                current = await tx.get(lease[0])
                if current is None or current.get("o") != lease[1]:
                    raise LockNotOwnedError("the idempotency lease expired or passed to another holder")
            if not overwrite:
                existing = await tx.get(entry_key)
                if existing is not None and existing["x"] > time.time():
                    return False
            tx.set(entry_key, value, ttl=self._ttl(entry))
            return True

        return await store.transact(fn)

    async def delete_expired(self, now_epoch: float | None = None) -> int:
        """Delete the entries whose expiry is at or before *now_epoch* (default: now).

        The store's TTLs remove them anyway; this also removes those that an earlier
        *now_epoch* declares expired.
        """
        cutoff = time.time() if now_epoch is None else float(now_epoch)
        store = await self._holder.store()
        prefix = self._holder.prefix + "e:"
        removed = 0
        after: str | None = None
        while True:
            page = await store.select(prefix, after=after, limit=500)
            for found_key, value in page.rows:
                if value["x"] <= cutoff and await self._delete_if_expired(store, found_key, cutoff):
                    removed += 1
            if page.last_key is None:
                return removed
            after = page.last_key

    @staticmethod
    async def _delete_if_expired(store: Store, found_key: str, cutoff: float) -> bool:
        async def fn(tx: Transaction) -> bool:
            value = await tx.get(found_key)
            if value is None or value["x"] > cutoff:
                return False
            tx.delete(found_key)
            return True

        return await store.transact(fn)

    # -- the execution lease ------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def hold(self, scope_key: str, key: str) -> AsyncIterator[None]:
        """Hold the key's lease, across every process on the store, for the block."""
        slot = (scope_key, key)
        async with self._guard:
            local = self._local.get(slot)
            if local is None:
                local = self._local[slot] = asyncio.Lock()
        async with local:  # this process's waiters queue here, not on the store
            store = await self._holder.store()
            lease_key = self._lease_key(scope_key, key)
            owner = secrets.token_urlsafe(18)
            await self._acquire(store, lease_key, owner)
            token = self._held.set((lease_key, owner))
            renewer = asyncio.create_task(self._renew(store, lease_key, owner))
            try:
                yield
            finally:
                self._held.reset(token)
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
                await asyncio.shield(self._release(store, lease_key, owner))

    async def _acquire(self, store: Store, lease_key: str, owner: str) -> None:
        wait = 0.002
        while not await store.set_if_absent(lease_key, {"o": owner}, ttl=self._lease_seconds):
            await asyncio.sleep(random.uniform(wait / 2, wait))
            wait = min(wait * 2, self._poll)

    async def _renew(self, store: Store, lease_key: str, owner: str) -> None:
        while True:
            await asyncio.sleep(self._lease_seconds / 3)

            async def fn(tx: Transaction) -> bool:
                current = await tx.get(lease_key)
                if current is None or current.get("o") != owner:
                    return False
                tx.set(lease_key, current, ttl=self._lease_seconds)
                return True

            try:
                if not await store.transact(fn):
                    log.warning("idempotency lease lost before the holder finished; its writes will be refused")
                    return
            except StorageError as exc:  # the store is unreachable for now: try again at the next tick
                log.warning("idempotency lease renewal failed: %s", exc)

    async def _release(self, store: Store, lease_key: str, owner: str) -> None:
        async def fn(tx: Transaction) -> None:
            current = await tx.get(lease_key)
            if current is not None and current.get("o") == owner:
                tx.delete(lease_key)

        try:
            await store.transact(fn)
        except StorageError as exc:  # it expires by itself after lease_seconds
            log.warning("idempotency lease release failed (it expires by itself): %s", exc)
