"""PostgreSQL backend on an asyncpg pool: one table per namespace. This module is the class,
wiring the concerns that live beside it:

* ``settings.py``: every setting, spelled once; the class is built from :class:`PostgresSettings`
  (or from a URL and keyword fields, which build one without reading the environment);
* ``dsn.py``: URLs (schemes, ports checked before any I/O, several read URLs in one setting);
* ``statements.py``: the SQL, and the advisory lock ids; ``schema.py``: the DDL and migrations;
* ``errors.py``: asyncpg's errors mapped to ours by one table, and what may be sent again;
* ``pooling.py``: what stands between us and the server (PgBouncer...), and the pools;
* ``replicas.py``: listing and filtered reads on hot standbys, read-your-writes;
* ``notify.py``: LISTEN/NOTIFY.

Every primitive is one statement (bulk ones with ``= ANY($1)`` and ``unnest``), atomic on its
own; expiry uses the database server's clock (``now()``), expired rows are invisible at once
and purged in bounded batches by one instance at a time. Idempotent operations are retried
once after a dropped connection; others raise ``OutcomeUnknownError`` (``errors.RETRY``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from ad_buyer_storage.contract.glob import GlobPattern, prefix_upper_bound
from ad_buyer_storage.contract.protocol import (
    NO_EXPIRY,
    NO_KEY,
    Capability,
    Check,
    Filter,
    Peer,
    PoolUsage,
    Record,
    Write,
)
from ad_buyer_storage.errors import ConfigurationError, InvalidValueError, NotConnectedError
from ad_buyer_storage.kit.identifiers import check_identifier
from ad_buyer_storage.kit.identifiers import indexed_fields as indexed_fields_of
from ad_buyer_storage.kit.redaction import redact_url
from ad_buyer_storage.kit.scan import Page, scan_pages
from ad_buyer_storage.kit.subscription import Deliver, queue_subscription
from ad_buyer_storage.kit.sweeper import Sweeper, purge_in_batches
from ad_buyer_storage.kit.urls import server_of

from .dsn import normalise_dsn, split_urls
from .errors import CONNECTION_LOST, RETRY, URL_PARSE_ERRORS, error_map
from .notify import Listener, channel_name, check_payload
from .pooling import POOLING_MODES, PoolGate, between_at_start, cache_size, create_pool, detect_pooler
from .replicas import Replica, ReplicaReads
from .schema import SCHEMA_VERSION, create_schema
from .settings import PostgresSettings
from .statements import NOTIFY, Statements, lock_id
from .turn import Turns
from .writes import Writes

__all__ = ["POOLING_MODES", "SCHEMA_VERSION", "PostgresBackend", "PostgresSettings", "normalise_dsn", "split_urls"]

log = logging.getLogger("ad_buyer_storage.postgres")
T = TypeVar("T")


class PostgresBackend:
    """Keys of one namespace in one PostgreSQL table."""

    name = "postgres"
    capabilities = frozenset(
        {
            Capability.EXPIRY,
            Capability.ATOMIC,
            Capability.MULTI_PROCESS,
            Capability.DURABLE,
            Capability.PUBSUB,
            Capability.TRANSACTIONS,
            Capability.REFRESH,
            Capability.TURNS,
        }
    )

    def __init__(self, settings: PostgresSettings | str, /, **fields: Any) -> None:
        """``PostgresBackend(settings)``, or ``PostgresBackend(url, schema=..., pool_max=...)``
        with any field of :class:`PostgresSettings` (the environment is not read then)."""
        self.settings = s = PostgresSettings.of(settings, fields)
        if not s.url:
            raise ConfigurationError("the 'postgres' backend needs DATABASE_URL (postgresql://user@host:5432/db)")
        check_identifier("POSTGRES_SCHEMA", s.schema_name)
        self.indexed_fields = indexed_fields_of("POSTGRES_INDEXED_FIELDS", s.indexed_fields)
        check_identifier("POSTGRES_TABLE", s.table)
        if s.pool_min > s.pool_max:
            raise ConfigurationError(f"POSTGRES_POOL_MIN ({s.pool_min}) must be <= POSTGRES_POOL_MAX ({s.pool_max})")
        self._url = url = s.url
        self._dsn = normalise_dsn(url)
        self.schema, self.table = s.schema_name, s.table
        # What stands between us and the server: "direct", "session" (said so), "transaction",
        # or "unknown" (a proxy or pooler of unknown mode: no statement cache, LISTEN probed).
        self._between = between_at_start(s.pooling)
        self._connect_timeout, self._command_timeout = s.timeouts
        self._turn_wait = max(self._command_timeout, 60.0)  # a queue of turns, each a transaction long
        self._pool: Any = None
        self._gate = PoolGate(timeout=s.acquire_timeout, most=s.pool_max, lost=CONNECTION_LOST)
        read = split_urls(s.read_url)
        secrets = (url, s.listen_url, *read)
        self._errors = error_map(url, secrets)
        listen_url = s.listen_url or None
        self._listener = Listener(
            url=url,
            dsn=self._dsn,
            listen_dsn=normalise_dsn(listen_url) if listen_url else None,
            errors=error_map(listen_url or url, secrets),
            connect_timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
        )
        self._reads = ReplicaReads(read, secrets=secrets, acquire_timeout=s.acquire_timeout)
        self._sweeper = Sweeper(self.purge_expired, s.sweep_interval or None, f"{self.schema}.{self.table}", log)
        self._sql = Statements(f'"{self.schema}"."{self.table}"')
        self._writes = Writes(self._sql, self._write_query)
        self._lock = lock_id("ad_buyer_storage", self.schema, self.table)
        self._turns = Turns(
            self, table=f"{self.schema}.{self.table}", sql=self._sql, errors=self._errors, wait=self._turn_wait,
            open_pool=self._open_turns_pool, connection=self._connection,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"PostgresBackend({redact_url(self._url)!r}, table={self.schema}.{self.table})"

    @property
    def _pool_max(self) -> int:
        return self.settings.pool_max

    @property
    def _cache_size(self) -> int:
        return cache_size(self._between, self.settings.statement_cache_size)

    @property
    def _listen_dsn(self) -> str | None:
        return self._listener.listen_dsn

    @property
    def _replicas(self) -> list[Replica]:
        return self._reads.replicas

    @property
    def replica_reads(self) -> int:
        """Reads a replica served (for info() and the tests)."""
        return self._reads.reads

    @property
    def primary_fallbacks(self) -> int:
        """Replica reads that went to the primary instead."""
        return self._reads.fallbacks

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        s = self.settings
        try:
            # asyncpg parses the URL when it opens a connection: its ValueError is caught here only.
            with self._errors.mapped(also=URL_PARSE_ERRORS):
                if s.pooling == "auto":
                    timeouts = {"connect_timeout": self._connect_timeout, "command_timeout": self._command_timeout}
                    self._between = await detect_pooler(self._dsn, **timeouts)
                self._pool = await self._new_pool(self._dsn, min_size=s.pool_min)
                conn = await self._pool.acquire(timeout=s.acquire_timeout)
            with self._errors.mapped():
                try:
                    await create_schema(
                        conn, self._sql, where=f"{self.schema}.{self.table}", table=self.table, lock=self._lock,
                        indexed_fields=self.indexed_fields,
                    )  # fmt: skip
                finally:
                    await self._pool.release(conn)
                await self._reads.open(self._lazy_pool)
        except Exception:
            await self.aclose()
            raise
        self._sweeper.start()

    async def _new_pool(self, dsn: str, *, min_size: int) -> Any:
        return await create_pool(
            dsn, min_size=min_size, max_size=self.settings.pool_max, connect_timeout=self._connect_timeout,
            command_timeout=self._command_timeout, cache=self._cache_size,
        )  # fmt: skip

    async def _lazy_pool(self, dsn: str) -> Any:
        """A pool of *dsn* that opens no connection before one is asked for (a replica, turns)."""
        return await self._new_pool(dsn, min_size=0)

    async def aclose(self) -> None:
        await self._sweeper.stop()
        await self._reads.close(self._command_timeout)
        for pool in (self._turns.pool, self._pool):
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), timeout=self._command_timeout)
                except (TimeoutError, Exception):  # noqa: BLE001 - a dead server: drop connections hard
                    pool.terminate()
        self._pool = self._turns.pool = None

    async def ping(self) -> None:
        await self._call(lambda c: c.fetchval("SELECT 1"), idempotent=True)

    def peer(self) -> Peer:
        host, port, path = server_of(self._url, 5432)
        database = path.lstrip("/")
        return Peer("postgresql", f"{database}.{self.schema}" if database else self.schema, host, port)

    def pool_usage(self) -> PoolUsage | None:
        pool = self._pool
        if pool is None:
            return None
        size, idle = pool.get_size(), pool.get_idle_size()
        return PoolUsage(used=size - idle, idle=idle, max=self._pool_max, pending=self._gate.waiting)

    async def info(self) -> Mapping[str, object]:
        version = await self._call(lambda c: c.fetchval("SHOW server_version"), idempotent=True)
        pool, s = self._pool, self.settings
        return {
            "backend": "postgres",
            "url": redact_url(self._url),
            "server_version": version,
            "table": f"{self.schema}.{self.table}",
            "schema_version": SCHEMA_VERSION,
            "pool_size": pool.get_size() if pool else 0,
            "pool_idle": pool.get_idle_size() if pool else 0,
            "pool_min": s.pool_min,
            "pool_max": s.pool_max,
            "pooling": self._between,
            "statement_cache_size": self._cache_size,
            "listen_url": redact_url(s.listen_url) if s.listen_url else None,
            "read_urls": [redact_url(r.url) for r in self._replicas],
            "replica_reads": self.replica_reads,
            "primary_fallbacks": self.primary_fallbacks,
            "clock": "database server (now())",
        }

    # -- plumbing --------------------------------------------------------------------------
    async def _call(self, fn: Callable[[Any], Awaitable[T]], *, idempotent: bool) -> T:
        """Run *fn(connection)* on a pooled connection; resent only where that is safe (RETRY)."""
        return await RETRY.run(self._connection, fn, idempotent=idempotent, errors=self._errors)

    @asynccontextmanager
    async def _connection(self, of: Any = None) -> AsyncIterator[Any]:
        """A connection of the pool (*of*: the turns' one), terminated instead of released if it
        died or timed out."""
        pool = self._pool if of is None else of
        if pool is None:
            raise NotConnectedError("the PostgreSQL backend is not connected")
        async with self._gate.connection(pool) as conn:
            yield conn

    async def _write_call(self, fn: Callable[[Any], Awaitable[T]], *, idempotent: bool) -> T:
        """:meth:`_call` for a statement that writes: whatever its outcome, this object's next
        replica read must see the primary's state as of after it."""
        try:
            return await self._call(fn, idempotent=idempotent)
        finally:
            self._reads.wrote()

    async def _read_call(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """A listing or filtered read: on a replica that is up and has replayed this object's
        own writes, else on the primary."""
        return await self._reads.read(fn, functools.partial(self._call, idempotent=True))

    async def _write_query(self, method: str, sql: str, *args: Any, idempotent: bool) -> Any:
        """``connection.<method>(sql, *args)`` through :meth:`_write_call`."""
        return await self._write_call(lambda c: getattr(c, method)(sql, *args), idempotent=idempotent)

    # -- primitives ------------------------------------------------------------------------
    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        if len(keys) == 1:
            row = await self._call(lambda c: c.fetchrow(self._sql.read_one, keys[0]), idempotent=True)
            return [None if row is None else Record(row[0], row[1])]
        rows = await self._call(lambda c: c.fetch(self._sql.read_many, list(keys)), idempotent=True)
        found = {key: Record(value, version) for key, value, version in rows}
        return [found.get(key) for key in keys]

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        return await self._writes.write(writes)

    async def commit(self, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str]) -> bool:
        """One SERIALIZABLE transaction (writes.py). Serializable, so two transactions that each
        found absent a key the other creates cannot both commit."""
        touched = {*(key for key, _ in checks), *(w.key for w in writes), *deletes}
        # Keys under another's turn (see turn()) fail this commit: a shared try-lock per key; a
        # commit that only checks (a read set validated) writes nothing a turn protects.
        foreign = self._turns.foreign(touched) if writes or deletes else []
        commit = functools.partial(self._writes.commit, checks=checks, writes=writes, deletes=deletes, foreign=foreign)
        return await self._write_call(commit, idempotent=False)

    def turn(self, keys: Sequence[str]) -> AbstractAsyncContextManager[None]:
        """The turn on *keys* (see SupportsTurns and turn.py)."""
        return self._turns.turn(keys)

    async def _turns_pool(self) -> Any:
        return await self._turns.opened_pool()

    async def _open_turns_pool(self) -> Any:
        if self._pool is None:
            raise NotConnectedError("the PostgreSQL backend is not connected")
        return await self._lazy_pool(self._dsn)

    async def remove(self, keys: Sequence[str]) -> int:
        rows = await self._write_call(lambda c: c.fetch(self._sql.remove, sorted(keys)), idempotent=True)
        return sum(1 for (live,) in rows if live)

    async def remove_prefix(self, prefix: str) -> int:
        upper = prefix_upper_bound(prefix)
        if upper is None:
            count = await self._write_query("fetchval", self._sql.remove_from, prefix, idempotent=True)
        else:
            count = await self._write_query("fetchval", self._sql.remove_range, prefix, upper, idempotent=True)
        return int(count)

    async def count(self, keys: Sequence[str]) -> int:
        return int(await self._call(lambda c: c.fetchval(self._sql.count, list(keys)), idempotent=True))

    def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        return scan_pages(pattern, batch_size, self._scan_page)

    async def _scan_page(self, page: Page) -> list[str]:
        sql = self._sql.scan(first=page.inclusive, bounded=page.stop is not None)
        rows = await self._read_call(lambda c: c.fetch(sql, *page.bounds, page.limit))
        return [key for (key,) in rows]

    async def get_ttl(self, key: str) -> int:
        row = await self._call(lambda c: c.fetchrow(self._sql.get_ttl, key), idempotent=True)
        if row is None:
            return NO_KEY
        return NO_EXPIRY if row[0] is None else int(row[0])

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        return bool(await self._write_call(lambda c: c.fetchval(self._sql.set_ttl, key, ttl_ms), idempotent=True))

    async def query(
        self, prefix: str, where: Sequence[Filter], after: str | None, limit: int
    ) -> Sequence[tuple[str, Record]]:
        sql, params = self._sql.query(prefix, where, after, limit)
        rows = await self._read_call(lambda c: c.fetch(sql, *params))
        return [(key, Record(value, version)) for key, value, version in rows]

    async def read_refresh(self, key: str, ttl_ms: int | None) -> Record | None:
        # Idempotent: renewing twice from now is renewing once.
        row = await self._write_call(lambda c: c.fetchrow(self._sql.read_refresh, key, ttl_ms), idempotent=True)
        return None if row is None else Record(row[0], row[1])

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        args = (key, amount, version, ttl_ms)
        result = await self._write_call(lambda c: c.fetchval(self._sql.increment, *args), idempotent=False)
        if result is None:
            raise InvalidValueError(
                f"cannot increment {key!r} by {amount}: not a 64-bit integer, or the result would overflow"
            )
        return int(result)

    # -- pub/sub (LISTEN/NOTIFY, notify.py) ------------------------------------------------
    def _channel(self, channel: str) -> str:
        return channel_name(f"{self.schema}.{self.table}", channel)

    async def publish(self, channel: str, message: str) -> int:
        check_payload(message)
        name = self._channel(channel)
        await self._call(lambda c: c.execute(NOTIFY, name, message), idempotent=False)
        return -1  # NOTIFY does not report how many listened

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return queue_subscription(functools.partial(self._listen, self._channel(channel)))

    @asynccontextmanager
    async def _listen(self, name: str, deliver: Deliver) -> AsyncIterator[None]:
        if self._pool is None:
            raise NotConnectedError("the PostgreSQL backend is not connected")
        async with self._listener.listen(name, deliver, between=self._between, notify=self._notify):
            yield

    async def _notify(self, sql: str, channel: str, payload: str) -> None:
        """A NOTIFY through the pool, for the listener's delivery probe (idempotent: a probe)."""
        await self._call(lambda c: c.execute(sql, channel, payload), idempotent=True)

    # -- expiry sweeping -------------------------------------------------------------------
    async def purge_expired(self) -> int:
        """Delete expired rows in bounded batches unless another instance is sweeping."""
        return await purge_in_batches(self._purge_batch, self.settings.sweep_batch)

    async def _purge_batch(self, limit: int) -> int | None:
        async def purge(conn: Any) -> int | None:
            async with conn.transaction():
                if not await conn.fetchval(self._sql.try_sweep_lock, self._lock + 1):
                    return None  # another instance holds the sweep
                return int(await conn.fetchval(self._sql.purge, limit))

        return await self._call(purge, idempotent=True)
