"""Redis backend on redis.asyncio, for one server, Sentinel or a Redis Cluster: the classes.

Layout: every key is ``PREFIX + key``, a small hash ``{d: <JSON text>, v: <version>}``, so
that ``HINCRBY`` gives exact server-side 64-bit increments and every write carries its version.
Writes that must touch value, version and expiry together run as Lua scripts (atomic on the
server); bulk reads and writes are one script call per batch (per hash slot on a cluster).

* TTLs are native and in milliseconds (``PEXPIRE``/``PTTL``), on the server's clock.
* Listing is ``SCAN`` with the escaped literal prefix as ``MATCH``, deduplicated, then matched
  by core's glob (Redis matches bytes; the contract matches characters). Never ``KEYS``.

The concerns live beside this module (see the package README's "Modules"): ``settings``,
``urls``, ``errors`` (the one error table and the retry rules), ``connections`` (the pools and
the sending of calls), ``scripts`` (the Lua), ``transactions`` (commit, turns), ``pubsub``,
``namespaces``. This module keeps the primitives and the two public classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

from redis import exceptions as redis_errors

from ad_buyer_storage.contract.glob import GlobPattern, escape_glob
from ad_buyer_storage.contract.protocol import Condition, Record, Write
from ad_buyer_storage.errors import NotConnectedError, StorageError
from ad_buyer_storage.kit.batches import results_or_raise
from ad_buyer_storage.kit.seen import SeenKeys

from . import scripts
from .errors import redis_py_faults
from .pubsub import PubSub
from .scripts import CONDITION_CODES
from .settings import RedisSettings
from .transactions import Transactions
from .urls import SentinelTarget, is_cluster_url, is_sentinel_url, parse_sentinel_url

__all__ = [
    "RedisBackend",
    "RedisClusterBackend",
    "RedisSettings",
    "SentinelTarget",
    "is_cluster_url",
    "is_sentinel_url",
    "parse_sentinel_url",
]


class _RedisKeyValue(Transactions):
    """The primitives, for one server or a cluster."""

    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        full = [self._full(k) for k in keys]
        if len(full) == 1:
            value, version = await self._call(lambda c: c.hmget(full[0], "d", "v"), idempotent=True)
            return [None if value is None else Record(value, version.decode())]
        groups = self._groups(full)
        replies = await self._run_scripts(scripts.READ, [([full[i] for i in g], []) for g in groups], idempotent=True)
        out: list[object] = [None] * len(full)
        for group, flat in zip(groups, replies, strict=True):
            for n, i in enumerate(group):
                value, version = flat[2 * n], flat[2 * n + 1]
                if value is not None:
                    out[i] = Record(value, version.decode())
                elif version is not None:
                    out[i] = self._item_error(version)
        return results_or_raise(out)

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        if not self._registered:  # written again after clear(): claim the namespace again
            await self._register()
        full = [self._full(w.key) for w in writes]
        groups = self._groups(full)
        calls: list[tuple[list[bytes], list[Any]]] = []
        for group in groups:
            meta: list[str] = []
            tokens: list[str] = []
            for i in group:
                w = writes[i]
                expected = w.expected_version or ""
                meta.append(
                    f"{CONDITION_CODES[w.condition]}{'1' if w.keep_ttl else '0'}{'' if w.ttl_ms is None else w.ttl_ms}"
                    f",{len(w.version.encode())},{len(expected.encode())};"
                )
                tokens += (w.version, expected)
            values = [writes[i].value for i in group]
            calls.append(([full[i] for i in group], ["".join(meta), "".join(tokens), *values]))
        # Unconditional writes are idempotent (same value, same version): safe to send again.
        idempotent = all(w.condition is Condition.ALWAYS for w in writes)
        replies = await self._run_scripts(scripts.WRITE, calls, idempotent=idempotent)
        out: list[object] = [False] * len(writes)
        for group, applied in zip(groups, replies, strict=True):
            for n, i in enumerate(group):
                out[i] = self._item_error(applied[n]) if isinstance(applied[n], bytes) else applied[n] == 1
        return results_or_raise(out)

    def _item_error(self, marker: bytes) -> StorageError:
        """The error a script reported for one key (``b"E" + the server's message``)."""
        return self._errors.error_for(redis_errors.ResponseError(marker[1:].decode(errors="replace")))

    async def remove(self, keys: Sequence[str]) -> int:
        return await self._per_slot("DEL", [self._full(k) for k in keys])

    async def count(self, keys: Sequence[str]) -> int:
        return await self._per_slot("EXISTS", [self._full(k) for k in keys])

    async def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        with SeenKeys() as seen:  # SCAN may return a key twice (during rehashing): exact, bounded memory
            async for page in self._scan_pages(pattern, max(batch_size, self._scan_count)):
                page = [raw for raw in page if raw.startswith(self._prefix_bytes) and b"\x00" not in raw]  # no turns
                for raw in await seen.first_time(page):
                    key = raw[self._cut :].decode()
                    if pattern.is_prefix_only or pattern.matches(key):
                        yield key

    async def _scan_pages(self, pattern: GlobPattern, count: int) -> AsyncIterator[list[bytes]]:
        """SCAN's pages (every primary's, on a cluster), repeats and all."""
        match = escape_glob(self.key_prefix + pattern.prefix) + "*"
        client = self._client
        if client is None:
            raise NotConnectedError("the Redis backend is not connected")
        if self.cluster:
            iterator = client.scan_iter(match=match, count=count)
            page: list[bytes] = []
            while True:
                with self._errors.mapped(), redis_py_faults():
                    raw = await anext(iterator, None)
                if raw is not None:
                    page.append(raw)
                if page and (raw is None or len(page) >= count):
                    yield page
                    page = []
                if raw is None:
                    return
        cursor: Any = 0
        while True:

            def scan_page(c: Any, cur: Any = cursor) -> Awaitable[tuple[Any, list[bytes]]]:
                return c.scan(cur, match=match, count=count)  # type: ignore[no-any-return]

            cursor, raws = await self._call(scan_page, idempotent=True)
            yield raws
            if cursor == 0:
                return

    async def get_ttl(self, key: str) -> int:
        # PTTL answers -2 (missing) and -1 (no expiry): the protocol's NO_KEY and NO_EXPIRY.
        return int(await self._call(lambda c: c.pttl(self._full(key)), idempotent=True))

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        args = ("" if ttl_ms is None else str(ttl_ms),)
        return bool(
            await self._call(lambda c: scripts.run(c, scripts.SET_TTL, [self._full(key)], args), idempotent=True)
        )

    async def read_refresh(self, key: str, ttl_ms: int | None) -> Record | None:
        args = ("" if ttl_ms is None else str(ttl_ms),)
        # Idempotent: renewing twice from now is renewing once.
        row = await self._call(lambda c: scripts.run(c, scripts.READ_REFRESH, [self._full(key)], args), idempotent=True)
        return None if not row else Record(row[0], row[1].decode())

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        if not self._registered:
            await self._register()
        full = self._full(key)
        args = (amount, version, "" if ttl_ms is None else str(ttl_ms))
        return int(await self._call(lambda c: scripts.run(c, scripts.INCREMENT, [full], args), idempotent=False))


class RedisClusterBackend(_RedisKeyValue):
    """A Redis Cluster (``redis+cluster://seed-host:port``): multi-key work is split by hash slot.

    No pub/sub: redis-py's asyncio cluster client has none, so the capability is not claimed.
    """

    cluster = True


class RedisBackend(_RedisKeyValue, PubSub):
    """One Redis server (``redis://``, ``rediss://``, ``unix://``) or Sentinel's master, with pub/sub."""
