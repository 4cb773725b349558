"""The SDK's :class:`~adcp.signing.AtomicReplayStore` on one of our stores: signature nonces
claimed once across every process sharing the store.

The SDK's verifier calls the replay store synchronously, from whatever thread verifies (the
Starlette helper does so on its event loop's thread). :class:`StorageReplayStore` therefore
owns an event loop on a thread of its own, where its store is connected and every call runs;
a call blocks its caller until the store answers (as the SDK's own PostgreSQL store does).

Layout, under ``<namespace>:replay:``: ``n:<keyid>:<nonce>`` marks a claimed nonce
(``{"e": its bucket}``, TTL the signature's window); ``c:<keyid>`` counts the key id's live
nonces by expiry second (``{"b": {"<second>": count}}``). A claim reads both and writes both in
one transaction: two claims of one nonce never both succeed, and the cap holds across processes.
A nonce is counted until the end of the second it expires in, so the count is never below the
number of live nonces: at the cap the answer errs on refusal ("capacity"), never on a replay.
Nothing is ever evicted to make room.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

from ad_buyer_storage import InvalidInputError, LifecycleError, StorageClosedError, Store, Transaction
from ad_buyer_storage.contract import escape_glob
from ad_buyer_storage_adcp._base import StoreHolder, Target

__all__ = ["StorageReplayStore"]

T = TypeVar("T")
ReplayClaimResult = Literal["claimed", "replayed", "capacity"]


class StorageReplayStore:
    """Replay nonces on a shared store, for ``VerifyOptions(replay_store=...)``.

    *target*: a URL, a backend name, None (the settings' choice) or an unconnected
    :class:`~ad_buyer_storage.Store` (it is connected, used and closed on this object's own
    loop thread). *per_keyid_cap*: live nonces one key id may hold; *timeout*: seconds a call
    waits for the store.
    """

    def __init__(
        self,
        target: Target = None,
        *,
        per_keyid_cap: int = 1_000_000,
        namespace: str = "adcp",
        timeout: float = 30.0,
        **overrides: Any,
    ) -> None:
        if isinstance(per_keyid_cap, bool) or not isinstance(per_keyid_cap, int) or per_keyid_cap <= 0:
            raise InvalidInputError("per_keyid_cap must be a positive int")
        if isinstance(target, Store) and target.is_open:
            raise LifecycleError(
                "StorageReplayStore connects its store on its own loop thread: give it an unconnected Store or a URL"
            )
        self._holder = StoreHolder(target, namespace=namespace, kind="replay", **overrides)
        self._cap = per_keyid_cap
        self._timeout = timeout
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="adcp-replay-store", daemon=True)
        self._thread.start()
        self._finalizer = weakref.finalize(self, _shutdown, self._holder, self._loop, self._thread)

    def __repr__(self) -> str:
        return f"<StorageReplayStore {self._holder.raw_store!r}>"

    @property
    def is_durable(self) -> bool:
        return self._holder.durable

    def close(self) -> None:
        """Close the store (if built here) and stop the loop thread. Idempotent."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> StorageReplayStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise StorageClosedError(f"{self!r} is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise LifecycleError("StorageReplayStore called from its own loop thread")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)

    def _nonce_key(self, keyid: str, nonce: str) -> str:
        return self._holder.key("n", keyid, nonce)

    def _count_key(self, keyid: str) -> str:
        return self._holder.key("c", keyid)

    # -- the ReplayStore protocol ---------------------------------------------------------------------
    def seen(self, keyid: str, nonce: str) -> bool:
        """Whether the nonce was claimed and its window has not passed."""
        return self._run(self._seen(keyid, nonce))

    def at_capacity(self, keyid: str) -> bool:
        """Whether the key id holds as many live nonces as the cap allows (or more are counted)."""
        return self._run(self._at_capacity(keyid))

    def claim(self, keyid: str, nonce: str, ttl_seconds: float) -> ReplayClaimResult:
        """Atomically: "replayed" if the nonce is live, "capacity" if the key id is at its cap,
        else record the nonce for *ttl_seconds* and answer "claimed"."""
        return self._run(self._claim(keyid, nonce, ttl_seconds, refresh=False))

    def remember(self, keyid: str, nonce: str, ttl_seconds: float) -> bool:
        """Record the nonce (a live one gets the later of its two expiries); False if the cap refuses it."""
        return self._run(self._claim(keyid, nonce, ttl_seconds, refresh=True)) != "capacity"

    def live_count(self, keyid: str) -> int:
        """The key id's counted live nonces (never fewer than the live ones)."""
        return self._run(self._live_count(keyid))

    def clear(self) -> int:
        """Forget every nonce and count of this namespace (tests, benchmarks, a reset); the number of keys removed."""
        return self._run(self._clear())

    # -- on the loop thread ------------------------------------------------------------------------------
    async def _clear(self) -> int:
        store = await self._holder.store()
        return await store.delete_pattern(escape_glob(self._holder.prefix) + "*")

    async def _seen(self, keyid: str, nonce: str) -> bool:
        store = await self._holder.store()
        return await store.exists(self._nonce_key(keyid, nonce))

    async def _live_count(self, keyid: str) -> int:
        store = await self._holder.store()
        return sum(_live(await store.get(self._count_key(keyid)), time.time()).values())

    async def _at_capacity(self, keyid: str) -> bool:
        return await self._live_count(keyid) >= self._cap

    async def _claim(self, keyid: str, nonce: str, ttl_seconds: float, *, refresh: bool) -> ReplayClaimResult:
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | float) or not ttl_seconds > 0:
            raise InvalidInputError("ttl_seconds must be a positive number")
        if not isinstance(keyid, str) or not isinstance(nonce, str):
            raise InvalidInputError("keyid and nonce are str")
        store = await self._holder.store()
        nonce_key, count_key = self._nonce_key(keyid, nonce), self._count_key(keyid)

        async def fn(tx: Transaction) -> ReplayClaimResult:
            now = time.time()
            expires = now + float(ttl_seconds)
            bucket = math.ceil(expires)
            existing = await tx.get(nonce_key)
            counts = _live(await tx.get(count_key), now)
            if existing is not None:
                if not refresh:
                    return "replayed"
                old = str(existing["e"])
                if int(old) >= bucket:
                    return "claimed"  # already held at least as long
                if counts.get(old, 0) > 0:  # the nonce moves to its later second
                    counts[old] -= 1
                    if counts[old] == 0:
                        del counts[old]
            elif sum(counts.values()) >= self._cap:
                return "capacity"
            counts[str(bucket)] = counts.get(str(bucket), 0) + 1
            tx.set(nonce_key, {"e": bucket}, ttl=float(ttl_seconds))
            tx.set(count_key, {"b": counts}, ttl=max(int(b) for b in counts) - now + 1)
            return "claimed"

        return await store.transact(fn, attempts=50)


def _live(value: Any, now: float) -> dict[str, int]:
    """The counts of the buckets that have not ended."""
    if value is None:
        return {}
    return {bucket: count for bucket, count in value["b"].items() if int(bucket) > now}


def _shutdown(holder: StoreHolder, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if loop.is_closed():
        return
    if thread.is_alive():
        try:
            asyncio.run_coroutine_threadsafe(holder.aclose(), loop).result(30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
    loop.close()
