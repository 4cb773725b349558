"""PostgreSQL backend on an asyncpg pool: one table per namespace.

* Every primitive is one statement (bulk ones with ``= ANY($1)`` and ``unnest``), atomic on
  its own; set-if-absent, increments and versioned writes included.
* Expiry uses the database server's clock (``now()``): one clock however many app hosts.
  Expired rows are invisible at once and purged by a sweeper in bounded batches, under an
  advisory lock so only one instance sweeps at a time.
* The table is created on first connect under an advisory lock (concurrent cold starts race
  on ``CREATE TABLE IF NOT EXISTS`` otherwise) and its schema version recorded.
* Keys are ``text COLLATE "C"``: byte order, so prefix listing is a primary-key range scan.
* Values are a ``json`` column: PostgreSQL checks that the text is JSON and keeps it verbatim,
  so a value reads back exactly as written (``1e23`` stays a float, ``-0.0`` keeps its sign),
  as on every other backend; ``jsonb`` would respell numbers and reorder keys. Core decodes
  the text. Schema version 1 tables (``jsonb``) are converted in place on first connect.
* Behind a pooler in transaction mode (PgBouncer ``pool_mode=transaction``; detected at
  connect, or ``pooling="transaction"``) no session state is relied on: the statement cache is
  off, the DDL and sweep locks are transaction-scoped (they always are), and ``LISTEN`` needs a
  direct connection (``listen_url``): without one a subscription is refused, never dead.
* Optional read replicas (``read_urls``) serve listing and filtered reads (``scan``, ``query``):
  read-your-writes per backend object, by WAL position: after this object wrote, a replica
  serves it only once it has replayed up to the primary's WAL position taken after the write;
  a replica behind, down or refusing sends the read to the primary.
* Idempotent operations are retried once after a dropped connection (the first query after a
  server restart fails); others raise ``OutcomeUnknownError`` (the kit's :class:`RetryPolicy`,
  told which asyncpg errors are which). Driver errors are translated in
  :meth:`PostgresBackend._translate`, with the password redacted (the kit's :class:`ErrorMap`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg

from ad_buyer_storage.contract.glob import GlobPattern, prefix_upper_bound
from ad_buyer_storage.contract.protocol import (
    NO_EXPIRY,
    NO_KEY,
    Capability,
    Check,
    Condition,
    Filter,
    Peer,
    PoolUsage,
    Record,
    Write,
)
from ad_buyer_storage.errors import (
    AuthenticationError,
    BackendError,
    BusyError,
    ConfigurationError,
    InvalidValueError,
    NotConnectedError,
    OutcomeUnknownError,
    ReadOnlyError,
    StorageError,
    StorageFullError,
    StorageTimeoutError,
    TLSError,
    UnavailableError,
)
from ad_buyer_storage.kit import turns
from ad_buyer_storage.kit.batches import each_or_error, in_bulk_or_each, results_or_raise
from ad_buyer_storage.kit.errormap import ErrorMap, NoConnection, driver_message, in_flight_error, unchained
from ad_buyer_storage.kit.identifiers import DEFAULT_INDEXED_FIELDS, check_identifier, is_identifier
from ad_buyer_storage.kit.identifiers import indexed_fields as indexed_fields_of
from ad_buyer_storage.kit.redaction import redact_url
from ad_buyer_storage.kit.retry import RetryPolicy
from ad_buyer_storage.kit.scan import Page, scan_pages
from ad_buyer_storage.kit.subscription import Deliver, queue_subscription
from ad_buyer_storage.kit.sweeper import Sweeper, purge_in_batches
from ad_buyer_storage.kit.urls import encode_credentials, server_of

__all__ = ["POOLING_MODES", "SCHEMA_VERSION", "PostgresBackend", "normalise_dsn", "split_urls"]

log = logging.getLogger("ad_buyer_storage.postgres")
T = TypeVar("T")

SCHEMA_VERSION = 3  # 1: value jsonb; 2: value json (exact text); 3: ttl_ms, the TTL each key was given
#: ``auto``: detect a pooler in transaction mode at connect; ``transaction``: one is there;
#: ``session``: a direct connection or session pooling (each client its own server session).
POOLING_MODES = ("auto", "transaction", "session")
_MAX_NOTIFY_BYTES = 7999  # PostgreSQL's NOTIFY payload limit is 8000 bytes
# Errors after which the statement certainly did not run: safe to send anything again.
_NOT_SENT = (asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.TooManyConnectionsError)
# The server rolled the statement back to break a deadlock or a serialization conflict: it
# certainly did not apply, so it may be sent again whatever it does.
_ROLLED_BACK = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
# A dropped connection: the statement may or may not have run.
_CONNECTION_LOST = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    # A backend terminated mid-statement can leave asyncpg's protocol out of step ("cannot
    # switch to state 12; another operation is in progress"): that connection is as good as
    # lost (seen in our F4 test; MagicStack/asyncpg#1069).
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
    OSError,
)
# TimeoutError is an OSError: the policy tests for timeouts first, and never resends one.
_RETRY = RetryPolicy(
    connection_lost=(*_CONNECTION_LOST, *_NOT_SENT),
    timed_out=(TimeoutError,),
    never_sent=_NOT_SENT,
    rolled_back=_ROLLED_BACK,
    rolled_back_retries=5,
)


def normalise_dsn(url: str) -> str:
    """Accept ``postgresql://``, ``postgres://`` and the seed's ``postgresql+asyncpg://``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise ConfigurationError(
            f"not a PostgreSQL URL: {redact_url(url)}; expected postgresql://user:password@host:5432/database"
        )
    dsn = encode_credentials("postgresql://" + rest)  # asyncpg itself refuses "+asyncpg"
    _check_ports(url, dsn)
    return dsn


_HOST_PORT = re.compile(r"(?:\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?")


def _check_ports(url: str, dsn: str) -> None:
    """Each host's port, if given, is a TCP port (1 to 65535): ``:99999`` would otherwise fail
    at the first connect as a driver error, ``:0`` as an unreachable server. Not quoted: a
    malformed URL's authority may hold a piece of a password."""
    authority = re.split(r"[/?]", dsn.partition("://")[2], maxsplit=1)[0].rpartition("@")[2]
    for host in authority.split(","):
        match = _HOST_PORT.fullmatch(host.strip())
        port = match.group("port") if match else None
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigurationError(
                f"PostgreSQL URL {redact_url(url)}: each host's port must be a number from 1 to 65535"
            )


def split_urls(text: str | Sequence[str] | None) -> list[str]:
    """``POSTGRES_READ_URL``: one URL or several, comma-separated. A comma also separates the
    hosts of a multi-host URL and may sit in a password, so a new URL starts only at a piece
    that starts with a scheme (``postgresql://``...)."""
    if text is None:
        return []
    if not isinstance(text, str):
        return [u for u in text if u]
    urls: list[str] = []
    for piece in text.split(","):
        if urls and not SCHEME_START.match(piece.strip()):
            urls[-1] += "," + piece
        elif piece.strip():
            urls.append(piece.strip())
    return urls


SCHEME_START = re.compile(r"(?i)(postgresql|postgres|postgresql\+asyncpg)://")
_REPLICA_RETRY_AFTER = 5.0  # seconds a replica that failed is left alone before it is tried again


@dataclass
class _Replica:
    url: str
    dsn: str
    errors: ErrorMap
    pool: Any = None
    down_until: float = 0.0


def _lock_id(*parts: str) -> int:
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


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

    def __init__(
        self,
        url: str,
        *,
        schema: str = "public",
        table: str = "kv_store",
        pool_min: int = 2,
        pool_max: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        acquire_timeout: float = 5.0,
        statement_cache_size: int = 100,
        sweep_interval: float | None = 60.0,
        sweep_batch: int = 500,
        indexed_fields: str = DEFAULT_INDEXED_FIELDS,
        pooling: str = "auto",
        listen_url: str | None = None,
        read_urls: str | Sequence[str] | None = None,
    ) -> None:
        check_identifier("POSTGRES_SCHEMA", schema)
        if pooling not in POOLING_MODES:
            raise ConfigurationError(f"POSTGRES_POOLING must be one of {', '.join(POOLING_MODES)}, not {pooling!r}")
        self.indexed_fields = indexed_fields_of("POSTGRES_INDEXED_FIELDS", indexed_fields)
        check_identifier("POSTGRES_TABLE", table)
        if pool_min > pool_max:
            raise ConfigurationError(f"POSTGRES_POOL_MIN ({pool_min}) must be <= POSTGRES_POOL_MAX ({pool_max})")
        self._url = url
        self._dsn = normalise_dsn(url)
        self._pooling = pooling
        # What stands between us and the server: "direct", "session" (said so), "transaction",
        # or "unknown" (a proxy or pooler of unknown mode: no statement cache, LISTEN probed).
        self._between = {"transaction": "transaction", "session": "session"}.get(pooling, "unknown")
        self._listen_url = listen_url or None
        self._listen_dsn = normalise_dsn(listen_url) if listen_url else None
        self.schema = schema
        self.table = table
        self._pool_min, self._pool_max = pool_min, pool_max
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._turn_wait = max(command_timeout, 60.0)  # a queue of turns, each a transaction long
        self._acquire_timeout = acquire_timeout
        self._statement_cache_size = statement_cache_size
        self._sweep_batch = sweep_batch
        self._pool: Any = None
        self._turns: Any = None  # the turns' own pool (see turn())
        self._turns_opening = asyncio.Lock()
        self._waiting = 0  # calls waiting for a pooled connection (telemetry)
        read = split_urls(read_urls)
        secrets = (url, listen_url, *read)
        self._errors = ErrorMap(self._translate, (Exception,), secrets=secrets)
        self._listen_errors = ErrorMap(
            lambda exc, *, outcome_unknown: _classify(exc, listen_url or url, outcome_unknown=outcome_unknown),
            (Exception,),
            secrets=secrets,
        )
        self._replicas = [_Replica(u, normalise_dsn(u), self._replica_errors(u, secrets)) for u in read]
        self._next_replica = 0
        # Read-your-writes: set when a write of this object ended (applied, refused or unknown);
        # the next replica read then takes the primary's WAL position as the bar to clear.
        self._wrote = False
        self._write_lsn: str | None = None
        self.replica_reads = 0  # reads a replica served (for info() and the tests)
        self.primary_fallbacks = 0  # replica reads that went to the primary instead
        self._sweeper = Sweeper(self.purge_expired, sweep_interval, f"{schema}.{table}", log)
        self._sql = _Statements(f'"{schema}"."{table}"')
        self._lock = _lock_id("ad_buyer_storage", schema, table)

    def __repr__(self) -> str:
        return f"PostgresBackend({redact_url(self._url)!r}, table={self.schema}.{self.table})"

    @staticmethod
    def _replica_errors(url: str, secrets: Sequence[str | None]) -> ErrorMap:
        return ErrorMap(
            lambda exc, *, outcome_unknown: _classify(exc, url, outcome_unknown=outcome_unknown),
            (Exception,),
            secrets=secrets,
        )

    def _translate(self, exc: BaseException, *, outcome_unknown: bool) -> StorageError:
        """The one place asyncpg and socket errors become storage errors (raised by self._errors)."""
        return _classify(exc, self._url, outcome_unknown=outcome_unknown)

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        try:
            with self._errors.mapped():
                if self._pooling == "auto":
                    self._between = await self._detect_pooler()
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._pool_min,
                    max_size=self._pool_max,
                    timeout=self._connect_timeout,
                    command_timeout=self._command_timeout,
                    # A pooler in transaction mode hands each transaction any server session:
                    # a statement prepared in one is unknown to the next.
                    statement_cache_size=self._cache_size,
                    reset=_keep_session,
                )
                await self._create_schema()
                for replica in self._replicas:
                    # No connection yet (min_size=0): a replica that is down must not stop the app.
                    replica.pool = await self._lazy_pool(replica.dsn)
        except Exception:
            await self.aclose()
            raise
        self._sweeper.start()

    @property
    def _cache_size(self) -> int:
        # A pooler in transaction mode hands each transaction any server session: a statement
        # prepared in one is unknown to the next, or worse, another client's of the same name.
        return self._statement_cache_size if self._between in ("direct", "session") else 0

    async def _detect_pooler(self) -> str:
        """What stands between us and the server, from a probe connection (and a second one
        when it is not direct):

        * ``direct``: the server sees our own socket (its ``inet_client_port()`` is our local
          port; on a unix socket, its own socket directory and port are the ones we dialled);
        * ``transaction``: two client connections open at once ran statements in one server
          session (``pg_backend_pid()``), or one client's statements moved between sessions,
          which only a pooler in transaction (or statement) mode does;
        * ``unknown``: something else is in between (a session pooler, a TCP proxy, or a
          transaction pooler busy enough to hide it): run as if transaction pooling, but let
          subscriptions check that LISTEN delivers (see ``_listen``).
        """

        async def probe() -> Any:
            return await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, command_timeout=self._command_timeout,
                statement_cache_size=0,
            )  # fmt: skip

        first = await probe()
        try:
            row = await first.fetchrow(
                "SELECT pg_backend_pid(), inet_client_port(), current_setting('port'), "
                "current_setting('unix_socket_directories')"
            )
            a = row[0]
            if _sees_our_socket(first, row[1], row[2], row[3]):
                return "direct"
            second = None
            try:
                second = await probe()
                b = await second.fetchval("SELECT pg_backend_pid()")
            except TimeoutError:
                # A second server session was not to be had while the first is held: a session
                # pooler at its pool size (a transaction pooler would have lent the first one).
                if second is not None:
                    second.terminate()
                return "unknown"
            try:
                seen = {a}
                for _ in range(3):
                    if a == b or len(seen) > 1:
                        return "transaction"
                    a = await first.fetchval("SELECT pg_backend_pid()")
                    b = await second.fetchval("SELECT pg_backend_pid()")
                    seen.add(a)
                return "transaction" if a == b or len(seen) > 1 else "unknown"
            finally:
                await _close_quietly(second, self._command_timeout)
        finally:
            await _close_quietly(first, self._command_timeout)

    async def _create_schema(self) -> None:
        async with self._pool.acquire(timeout=self._acquire_timeout) as conn, conn.transaction():
            # Eight instances cold-starting at once: only one runs the DDL at a time.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self._lock)
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(self._sql.create_meta)
            found = await conn.fetchval(self._sql.read_version, self.table)
            if found is not None and found > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"table {self.schema}.{self.table} has schema version {found}; this release knows "
                    f"{SCHEMA_VERSION}: upgrade ad-buyer-storage-postgres"
                )
            await conn.execute(self._sql.create_table)
            await conn.execute(self._sql.create_index)
            for field in self.indexed_fields:
                await conn.execute(self._sql.field_index(field))
            if found == 1:
                # jsonb kept values as respelt documents; json keeps text. Their text is
                # already jsonb's, so nothing changes for them but their type.
                await conn.execute(self._sql.upgrade_to_json)
            if found is not None and found < 3:
                # Rows written before keep NULL: they are renewed only to an explicit TTL.
                await conn.execute(self._sql.add_ttl_column)
            await conn.execute(self._sql.write_version, self.table, SCHEMA_VERSION)

    async def aclose(self) -> None:
        await self._sweeper.stop()
        for replica in self._replicas:
            replica_pool, replica.pool = replica.pool, None
            if replica_pool is not None:
                try:
                    await asyncio.wait_for(replica_pool.close(), timeout=self._command_timeout)
                except (TimeoutError, Exception):  # noqa: BLE001 - a dead replica: drop connections hard
                    replica_pool.terminate()
        for pool in (self._turns, self._pool):
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), timeout=self._command_timeout)
                except (TimeoutError, Exception):  # noqa: BLE001 - a dead server: drop connections hard
                    pool.terminate()
        self._pool = self._turns = None

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
        return PoolUsage(used=size - idle, idle=idle, max=self._pool_max, pending=self._waiting)

    async def info(self) -> Mapping[str, object]:
        version = await self._call(lambda c: c.fetchval("SHOW server_version"), idempotent=True)
        pool = self._pool
        return {
            "backend": "postgres",
            "url": redact_url(self._url),
            "server_version": version,
            "table": f"{self.schema}.{self.table}",
            "schema_version": SCHEMA_VERSION,
            "pool_size": pool.get_size() if pool else 0,
            "pool_idle": pool.get_idle_size() if pool else 0,
            "pool_min": self._pool_min,
            "pool_max": self._pool_max,
            "pooling": self._between,
            "statement_cache_size": self._cache_size,
            "listen_url": redact_url(self._listen_url) if self._listen_url else None,
            "read_urls": [redact_url(r.url) for r in self._replicas],
            "replica_reads": self.replica_reads,
            "primary_fallbacks": self.primary_fallbacks,
            "clock": "database server (now())",
        }

    # -- plumbing --------------------------------------------------------------------------
    async def _call(self, fn: Callable[[Any], Awaitable[T]], *, idempotent: bool) -> T:
        """Run *fn(connection)* on a pooled connection; resent only where that is safe (_RETRY)."""
        return await _RETRY.run(self._connection, fn, idempotent=idempotent, errors=self._errors)

    @asynccontextmanager
    async def _connection(self, of: Any = None) -> AsyncIterator[Any]:
        """A connection of the pool (*of*: the turns' one), terminated instead of released if it
        died or timed out."""
        pool = self._pool if of is None else of
        if pool is None:
            raise NotConnectedError("the PostgreSQL backend is not connected")
        self._waiting += 1
        try:
            conn = await pool.acquire(timeout=self._acquire_timeout)
        except TimeoutError:
            if pool.get_size() >= self._pool_max and pool.get_idle_size() == 0:
                raise NoConnection(
                    f"no free connection among {self._pool_max} within {self._acquire_timeout} s", busy=True
                ) from None
            # The pool had room: opening a new connection is what timed out.
            raise NoConnection(f"no connection within {self._acquire_timeout} s", busy=False) from None
        finally:
            self._waiting -= 1
        broken = False
        try:
            yield conn
        except _CONNECTION_LOST:  # TimeoutError included
            broken = True
            raise
        finally:
            if broken:
                # Never wait on a connection that timed out or died: a graceful release
                # would wait for the query's cancellation, itself stuck on a dead link.
                # (If asyncpg already saw it die, it has returned it to the pool itself.)
                with contextlib.suppress(Exception):
                    conn.terminate()
            with contextlib.suppress(Exception):
                await pool.release(conn)

    async def _write_call(self, fn: Callable[[Any], Awaitable[T]], *, idempotent: bool) -> T:
        """:meth:`_call` for a statement that writes: whatever its outcome, this object's next
        replica read must see the primary's state as of after it."""
        try:
            return await self._call(fn, idempotent=idempotent)
        finally:
            self._wrote = True

    async def _own_writes_lsn(self) -> str | None:
        """The WAL position a replica must have replayed to hold every write this object
        finished (None: it never wrote). Taken after the flag is cleared, so a write that
        finishes meanwhile raises the bar again for the next read."""
        if self._wrote:
            self._wrote = False
            try:
                self._write_lsn = await self._call(
                    lambda c: c.fetchval("SELECT pg_current_wal_lsn()::text"), idempotent=True
                )
            except BaseException:
                self._wrote = True
                raise
        return self._write_lsn

    async def _read_call(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """A listing or filtered read: on a replica that is up and has replayed this object's
        own writes, else on the primary."""
        if not self._replicas:
            return await self._call(fn, idempotent=True)
        lsn = await self._own_writes_lsn()
        count = len(self._replicas)
        start, self._next_replica = self._next_replica, (self._next_replica + 1) % count
        for replica in (self._replicas[(start + i) % count] for i in range(count)):
            if replica.pool is None or replica.down_until > time.monotonic():
                continue
            try:
                with replica.errors.mapped():
                    conn = await replica.pool.acquire(timeout=self._acquire_timeout)
                    try:
                        if lsn is None or await conn.fetchval(_CAUGHT_UP, lsn):
                            result = await fn(conn)
                            self.replica_reads += 1
                            return result
                    except _CONNECTION_LOST:
                        conn.terminate()
                        raise
                    finally:
                        with contextlib.suppress(Exception):
                            await replica.pool.release(conn)
            except (UnavailableError, StorageTimeoutError, OutcomeUnknownError, AuthenticationError, TLSError) as exc:
                replica.down_until = time.monotonic() + _REPLICA_RETRY_AFTER
                log.warning("read replica %s left alone for %.0f s: %s", redact_url(replica.url),
                            _REPLICA_RETRY_AFTER, exc)  # fmt: skip
            except StorageError as exc:
                # Busy, a conflict with recovery, a table it has not replayed yet: the primary answers.
                log.debug("read replica %s could not serve a read: %s", redact_url(replica.url), exc)
        self.primary_fallbacks += 1
        return await self._call(fn, idempotent=True)

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
        outcomes: list[object] = [False] * len(writes)

        async def each_in_bulk(indexes: list[int], bulk: Any, one: Any) -> None:
            rows = [writes[i] for i in indexes]
            for i, outcome in zip(indexes, await in_bulk_or_each(rows, bulk, one), strict=True):
                outcomes[i] = outcome

        for keep in (False, True):
            batch = [i for i, w in enumerate(writes) if w.condition is Condition.ALWAYS and w.keep_ttl is keep]
            if batch:
                sql = self._sql.upsert_many_keep_ttl if keep else self._sql.upsert_many
                await each_in_bulk(
                    batch, functools.partial(self._upsert, sql), functools.partial(self._upsert_row, sql)
                )
        absent = [i for i, w in enumerate(writes) if w.condition is Condition.IF_ABSENT]
        if len(absent) > 1 and len({writes[i].key for i in absent}) == len(absent):
            # Many set-if-absent writes (a bulk copy): one statement, the applied keys returned.
            await each_in_bulk(absent, self._insert_many_if_absent, self._insert_if_absent)
        else:
            for i in absent:
                outcomes[i] = await each_or_error(functools.partial(self._insert_if_absent, writes[i]))
        for i, w in enumerate(writes):
            if w.condition is Condition.IF_VERSION:
                outcomes[i] = await each_or_error(functools.partial(self._update_if_version, w))
        return results_or_raise(outcomes)

    @staticmethod
    def _columns(rows: Sequence[Write]) -> tuple[list[str], list[str], list[str], list[int | None]]:
        return [w.key for w in rows], [w.value for w in rows], [w.version for w in rows], [w.ttl_ms for w in rows]

    async def _upsert(self, sql: str, rows: Sequence[Write]) -> list[bool]:
        # One statement for all of them (unnest); idempotent: the same value and version again.
        await self._write_query("execute", sql, *self._columns(rows), idempotent=True)
        return [True] * len(rows)

    async def _upsert_row(self, sql: str, row: Write) -> bool:
        (applied,) = await self._upsert(sql, (row,))
        return applied

    async def _insert_many_if_absent(self, rows: Sequence[Write]) -> list[bool]:
        sql = self._sql.insert_many_if_absent
        found = await self._write_query("fetch", sql, *self._columns(rows), idempotent=False)
        applied = {row[0] for row in found}
        return [w.key in applied for w in rows]

    async def _insert_if_absent(self, w: Write) -> bool:
        args = (w.key, w.value, w.version, w.ttl_ms)
        return bool(await self._write_query("fetchval", self._sql.insert_if_absent, *args, idempotent=False))

    async def _update_if_version(self, w: Write) -> bool:
        args = (w.key, w.value, w.version, w.ttl_ms, w.keep_ttl, w.expected_version)
        return bool(await self._write_query("fetchval", self._sql.update_if_version, *args, idempotent=False))

    async def commit(self, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str]) -> bool:
        """One SERIALIZABLE transaction: lock and compare the checked rows' versions, then write
        and delete. Serializable, so two transactions that each found absent a key the other
        creates cannot both commit; a serialization failure or deadlock is a conflict (False),
        as is a changed version: nothing applied either way."""
        checked = sorted(key for key, _ in checks)
        touched = {*checked, *(w.key for w in writes), *deletes}
        # Keys under another's turn (see turn()) fail this commit: a shared try-lock per key; a
        # commit that only checks (a read set validated) writes nothing a turn protects.
        foreign = sorted(self._turn_ids(touched - turns.held(self, touched))) if writes or deletes else []

        async def transaction(conn: Any) -> bool:
            try:
                async with conn.transaction(isolation="serializable"):
                    if foreign and not await conn.fetchval(self._sql.try_turns_shared, foreign):
                        raise _Conflict
                    live = dict(await conn.fetch(self._sql.lock_versions, checked)) if checked else {}
                    if any(live.get(key) != version for key, version in checks):
                        raise _Conflict
                    for keep in (False, True):
                        rows = [w for w in writes if w.keep_ttl is keep]
                        if rows:
                            sql = self._sql.upsert_many_keep_ttl if keep else self._sql.upsert_many
                            await conn.execute(sql, *self._columns(rows))
                    if deletes:
                        await conn.execute(self._sql.remove, sorted(deletes))
            except (_Conflict, *_ROLLED_BACK):
                return False
            return True

        return await self._write_call(transaction, idempotent=False)

    @asynccontextmanager
    async def turn(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """The turn on *keys* (see SupportsTurns): an exclusive transaction-level advisory lock
        per key, taken in one order (no deadlock between takers) on a pooled connection kept in
        a transaction for the block (so a transaction pooler keeps it pinned); PostgreSQL queues
        the takers of a lock first come first served. Commits elsewhere try a shared lock on
        each key they touch, and fail while a turn holds one."""
        mine = turns.held(self, keys)
        wanted = sorted(set(keys) - mine)
        if not wanted:
            yield
            return
        async with contextlib.AsyncExitStack() as stack:
            with self._errors.mapped():
                # Turns have connections of their own: a holder's reads and commit, and waiters
                # queued behind it, never compete with it for the pool's (a full pool deadlocked).
                conn = await stack.enter_async_context(self._connection(await self._turns_pool()))
                transaction = conn.transaction()
                await transaction.start()
            try:
                with self._errors.mapped():
                    for lock_id in sorted(self._turn_ids(wanted)):
                        await conn.execute(self._sql.take_turn, lock_id, timeout=self._turn_wait)
                with turns.holding(self, wanted):
                    yield
            finally:
                with contextlib.suppress(Exception):  # a rollback releases the locks; nothing was written
                    await transaction.rollback()

    async def _turns_pool(self) -> Any:
        """The pool turns are held on, opened at the first turn (most processes never take one)."""
        if self._pool is None:
            raise NotConnectedError("the PostgreSQL backend is not connected")
        if self._turns is None:
            async with self._turns_opening:
                if self._turns is None:
                    self._turns = await self._lazy_pool(self._dsn)
        return self._turns

    async def _lazy_pool(self, dsn: str) -> Any:
        """A pool of *dsn* that opens no connection before one is asked for (a replica, turns)."""
        return await asyncpg.create_pool(
            dsn,
            min_size=0,
            max_size=self._pool_max,
            timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
            statement_cache_size=self._cache_size,
            reset=_keep_session,
        )

    def _turn_ids(self, keys: set[str] | Sequence[str]) -> set[int]:
        """One advisory lock id per key (64 bits of a hash of the table and the key; two keys
        sharing one only make their turns wait for each other)."""
        table = f"{self.schema}.{self.table}\x00"
        return {
            int.from_bytes(hashlib.blake2b((table + key).encode(), digest_size=8).digest(), "big", signed=True)
            for key in keys
        }

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

    # -- pub/sub (LISTEN/NOTIFY) -----------------------------------------------------------
    def _channel(self, channel: str) -> str:
        # Channel names are identifiers of at most 63 bytes: hash ours into that space.
        return "abs_" + hashlib.sha256(f"{self.schema}.{self.table}\x00{channel}".encode()).hexdigest()[:40]

    async def publish(self, channel: str, message: str) -> int:
        if len(message.encode()) > _MAX_NOTIFY_BYTES:
            raise InvalidValueError(f"pub/sub messages on PostgreSQL are limited to {_MAX_NOTIFY_BYTES} bytes")
        name = self._channel(channel)
        await self._call(lambda c: c.execute("SELECT pg_notify($1, $2)", name, message), idempotent=False)
        return -1  # NOTIFY does not report how many listened

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return queue_subscription(functools.partial(self._listen, self._channel(channel)))

    @asynccontextmanager
    async def _listen(self, name: str, deliver: Deliver) -> AsyncIterator[None]:
        if self._pool is None:
            raise NotConnectedError("the PostgreSQL backend is not connected")
        dsn = self._listen_dsn or self._dsn
        if self._listen_dsn is None and self._between == "transaction":
            # LISTEN through transaction pooling registers on whichever server session ran it,
            # and that session goes back to the pooler's pool: notifications would never come.
            raise ConfigurationError(
                f"subscribe() through a pooler in transaction mode ({redact_url(self._url)}) would never "
                "receive anything: set POSTGRES_LISTEN_URL (listen_url=) to a direct connection to the "
                "PostgreSQL server, or use session pooling"
            )
        # A dedicated connection: LISTEN state must not leak into the pool.
        with self._listen_errors.mapped():
            conn = await asyncpg.connect(dsn, timeout=self._connect_timeout, statement_cache_size=0)
        try:
            with self._listen_errors.mapped():
                await conn.add_listener(name, lambda _c, _pid, _ch, payload: deliver(payload))
                if self._listen_dsn is None and self._between == "unknown":
                    await self._check_delivery(conn)
            yield
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=self._command_timeout)

    async def _check_delivery(self, conn: Any) -> None:
        """Something of unknown mode stands between us and the server: check that a NOTIFY
        sent through the pool reaches this LISTEN connection. Through transaction pooling it
        never does (the listening server session went back to the pooler's pool)."""
        probe = "abs_probe_" + os.urandom(8).hex()
        arrived = asyncio.Event()

        def heard(*_: object) -> None:
            arrived.set()

        await conn.add_listener(probe, heard)
        try:
            await self._call(lambda c: c.execute("SELECT pg_notify($1, 'probe')", probe), idempotent=True)
            wait = min(2.0, self._command_timeout)
            try:
                await asyncio.wait_for(arrived.wait(), timeout=wait)
            except TimeoutError:
                raise ConfigurationError(
                    f"subscribe() through {redact_url(self._url)} would never receive anything: a probe NOTIFY "
                    f"did not arrive within {wait:g} s (a pooler in transaction mode?); set POSTGRES_LISTEN_URL "
                    "(listen_url=) to a direct connection to the PostgreSQL server, or POSTGRES_POOLING=session "
                    "if it is a session pooler"
                ) from None
        finally:
            with contextlib.suppress(Exception):
                await conn.remove_listener(probe, heard)

    # -- expiry sweeping -------------------------------------------------------------------
    async def purge_expired(self) -> int:
        """Delete expired rows in bounded batches unless another instance is sweeping."""
        return await purge_in_batches(self._purge_batch, self._sweep_batch)

    async def _purge_batch(self, limit: int) -> int | None:
        async def purge(conn: Any) -> int | None:
            async with conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", self._lock + 1):
                    return None  # another instance holds the sweep
                return int(await conn.fetchval(self._sql.purge, limit))

        return await self._call(purge, idempotent=True)


def _sees_our_socket(conn: Any, client_port: int | None, port: str, socket_dirs: str) -> bool:
    """Whether the server's view of this connection's client is this very socket."""
    transport = getattr(conn, "_transport", None)
    if transport is None:
        return False
    local = transport.get_extra_info("sockname")
    if isinstance(local, tuple) and len(local) >= 2:  # TCP: the port the server sees is ours
        return client_port is not None and client_port == local[1]
    peer = transport.get_extra_info("peername")
    if client_port is None and isinstance(peer, str) and peer:  # a unix socket: the server's own?
        directory, _, name = peer.rpartition("/")
        dirs = {d.strip() for d in socket_dirs.split(",")}
        return name == f".s.PGSQL.{port}" and directory in dirs
    return False


async def _close_quietly(conn: Any, seconds: float) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=seconds)
    except Exception:  # noqa: BLE001 - a probe connection: drop it hard
        conn.terminate()


async def _keep_session(conn: Any) -> None:
    """Pool reset hook: asyncpg still rolls back open transactions; we change no session state,
    so the default RESET ALL round trip on every release is skipped."""


_TLS_NEGOTIATION_FAILED = ("rejected SSL upgrade", "error response during SSL exchange")
_TLS_REQUIRED = frozenset({"require", "verify-ca", "verify-full"})


def _tls_required(url: str) -> bool:
    """Whether *url* (or PGSSLMODE, which asyncpg also reads) insists on TLS."""
    query = parse_qs(urlsplit(url).query)
    mode = (query.get("sslmode") or query.get("ssl") or [os.environ.get("PGSSLMODE", "")])[0]
    return mode.lower() in _TLS_REQUIRED or mode.lower() == "true"


def _classify(exc: BaseException, url: str, *, outcome_unknown: bool) -> StorageError:
    """The storage error for an asyncpg or socket error *exc* (password redacted); unchained
    where even the redacted driver's words are not worth keeping."""
    pg = asyncpg.exceptions
    if isinstance(exc, NoConnection):  # our pool wait gave up
        where = f"PostgreSQL {redact_url(url)}: {exc}"
        return unchained(BusyError(where) if exc.busy else StorageTimeoutError(where))
    message = driver_message("PostgreSQL", url, exc)
    if isinstance(exc, (pg.InvalidPasswordError, pg.InvalidAuthorizationSpecificationError)):
        return unchained(AuthenticationError(message))
    if isinstance(exc, ssl.SSLError):
        return TLSError(message)
    if isinstance(exc, ConnectionError) and any(s in str(exc) for s in _TLS_NEGOTIATION_FAILED):
        if _tls_required(url):
            return TLSError(f"{message} (the URL requires TLS)")
        # Without sslmode=require asyncpg still asks for TLS first: a PostgreSQL server answers
        # yes or no, anything else is another kind of server.
        return BackendError(f"{message} (the server does not speak the PostgreSQL protocol: another service's port?)")
    if isinstance(exc, pg.ClientConfigurationError) and ("certificate" in str(exc) or "ssl" in str(exc).lower()):
        return unchained(ConfigurationError(message))  # names a missing file, not a secret
    if isinstance(exc, pg.TooManyConnectionsError):
        return BusyError(message)
    if isinstance(exc, (pg.DiskFullError, pg.OutOfMemoryError)):
        return StorageFullError(message)
    if isinstance(exc, pg.ReadOnlySQLTransactionError):
        return ReadOnlyError(message)
    if isinstance(exc, (pg.QueryCanceledError, TimeoutError, _CONNECTION_LOST, pg.CannotConnectNowError)):
        timed_out = isinstance(exc, (pg.QueryCanceledError, TimeoutError))
        return in_flight_error(message, timed_out=timed_out, outcome_unknown=outcome_unknown)
    if isinstance(exc, _ROLLED_BACK):
        return BusyError(f"{message} (rolled back each time it was tried)")
    if isinstance(exc, pg.InvalidCatalogNameError):
        return unchained(ConfigurationError(message))
    if isinstance(exc, (pg.ClientConfigurationError, ValueError)):
        # The parser's own words may quote a piece of the password: say what to check instead.
        return unchained(
            ConfigurationError(
                f"DATABASE_URL {redact_url(url)} could not be used ({type(exc).__name__}); expected "
                "postgresql://user:password@host:5432/database with a numeric port"
            )
        )
    return BackendError(message)


# On a replica: has it replayed the WAL up to $1? (On a primary named as a replica: always.)
_CAUGHT_UP = (
    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END"
    " >= $1::text::pg_lsn"
)


class _Conflict(Exception):
    """A checked version differed: roll the transaction back."""


class _Statements:
    """Every SQL statement, built once per table. Keys and values are always bound."""

    def __init__(self, t: str) -> None:
        schema = t.split(".")[0]
        live = "(expires_at IS NULL OR expires_at > now())"
        expiry = "CASE WHEN {ms} IS NULL THEN NULL ELSE now() + {ms} * interval '1 millisecond' END"
        self.create_meta = (
            f"CREATE TABLE IF NOT EXISTS {schema}.ad_buyer_storage_schema "
            "(table_name text PRIMARY KEY, schema_version integer NOT NULL, updated_at timestamptz DEFAULT now())"
        )
        self.read_version = f"SELECT schema_version FROM {schema}.ad_buyer_storage_schema WHERE table_name = $1"
        self.write_version = (
            f"INSERT INTO {schema}.ad_buyer_storage_schema (table_name, schema_version) VALUES ($1, $2) "
            "ON CONFLICT (table_name) DO UPDATE SET schema_version = excluded.schema_version, updated_at = now()"
        )
        self.create_table = (
            f'CREATE TABLE IF NOT EXISTS {t} (key text COLLATE "C" PRIMARY KEY, value json NOT NULL, '
            "version text NOT NULL, expires_at timestamptz, ttl_ms bigint)"
        )
        self.upgrade_to_json = f"ALTER TABLE {t} ALTER COLUMN value TYPE json USING value::text::json"
        self.add_ttl_column = f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS ttl_ms bigint"
        index = t.split(".")[1][:-1] + '_expires_at"'
        self.create_index = f"CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at) WHERE expires_at IS NOT NULL"
        self.read_one = f"SELECT value, version FROM {t} WHERE key = $1 AND {live}"
        self.read_many = f"SELECT key, value, version FROM {t} WHERE key = ANY($1::text[]) AND {live}"
        new_expiry = expiry.format(ms="u.ttl")
        upsert = (
            f"INSERT INTO {t} AS kv (key, value, version, expires_at, ttl_ms) "
            f"SELECT u.key, u.value::json, u.version, {new_expiry}, u.ttl "
            "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(key, value, version, ttl) "
            # Rows are locked in key order, as by every other multi-row statement here: two
            # batches sharing keys wait for each other instead of deadlocking.
            "ORDER BY u.key "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version, "
        )
        replaced = "expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms"
        self.upsert_many = upsert + replaced
        kept = "kv.expires_at IS NULL OR kv.expires_at > now()"  # a live row keeps its expiry
        self.upsert_many_keep_ttl = (
            upsert + f"expires_at = CASE WHEN {kept} THEN kv.expires_at ELSE excluded.expires_at END, "
            f"ttl_ms = CASE WHEN {kept} THEN kv.ttl_ms ELSE excluded.ttl_ms END"
        )
        self.insert_many_if_absent = (
            upsert + replaced + " WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now() RETURNING kv.key"
        )
        self.insert_if_absent = (
            f"INSERT INTO {t} AS kv (key, value, version, expires_at, ttl_ms) "
            f"VALUES ($1, $2::text::json, $3, {expiry.format(ms='$4::bigint')}, $4::bigint) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version, "
            "expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms "
            "WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now() RETURNING true"
        )
        self.update_if_version = (
            f"UPDATE {t} SET value = $2::text::json, version = $3, "
            f"expires_at = CASE WHEN $5::bool THEN expires_at ELSE {expiry.format(ms='$4::bigint')} END, "
            "ttl_ms = CASE WHEN $5::bool THEN ttl_ms ELSE $4::bigint END "
            f"WHERE key = $1 AND version = $6 AND {live} RETURNING true"
        )
        self.remove = f"DELETE FROM {t} WHERE key = ANY($1::text[]) RETURNING {live}"
        self.count = f"SELECT count(*) FROM {t} WHERE key = ANY($1::text[]) AND {live}"
        self.take_turn = "SELECT pg_advisory_xact_lock($1::bigint)"
        self.try_turns_shared = "SELECT bool_and(pg_try_advisory_xact_lock_shared(id)) FROM unnest($1::bigint[]) AS id"
        self.lock_versions = (
            f"SELECT key, version FROM {t} WHERE key = ANY($1::text[]) AND {live} ORDER BY key FOR UPDATE"
        )
        gone = (
            "WITH gone AS (DELETE FROM {t} WHERE {where} RETURNING {live} AS live) "
            "SELECT count(*) FILTER (WHERE live) FROM gone"
        )
        self.remove_range = gone.format(t=t, where="key >= $1 AND key < $2", live=live)
        self.remove_from = gone.format(t=t, where="key >= $1", live=live)
        self.get_ttl = (
            f"SELECT CASE WHEN expires_at IS NULL THEN NULL ELSE "
            f"greatest(1, ceil(extract(epoch FROM expires_at - now()) * 1000))::bigint END "
            f"FROM {t} WHERE key = $1 AND {live}"
        )
        self.set_ttl = (
            f"UPDATE {t} SET expires_at = {expiry.format(ms='$2::bigint')}, ttl_ms = $2::bigint "
            f"WHERE key = $1 AND {live} RETURNING true"
        )
        renew = "coalesce($2::bigint, ttl_ms)"  # the TTL given, else the one recorded
        self.read_refresh = (
            f"UPDATE {t} SET expires_at = CASE WHEN {renew} IS NULL THEN expires_at "
            f"ELSE now() + {renew} * interval '1 millisecond' END, ttl_ms = {renew} "
            f"WHERE key = $1 AND {live} RETURNING value, version"
        )
        expired = "(kv.expires_at IS NOT NULL AND kv.expires_at <= now())"
        current = "(kv.value #>> '{}')"
        self.increment = (
            f"INSERT INTO {t} AS kv (key, value, version, expires_at, ttl_ms) "
            f"VALUES ($1, to_json($2::bigint), $3, {expiry.format(ms='$4::bigint')}, $4::bigint) "
            f"ON CONFLICT (key) DO UPDATE SET "
            f"value = CASE WHEN {expired} THEN excluded.value "
            f"ELSE to_json(({current})::numeric + $2::bigint) END, "
            f"version = excluded.version, "
            f"expires_at = CASE WHEN {expired} THEN excluded.expires_at ELSE kv.expires_at END, "
            f"ttl_ms = CASE WHEN {expired} THEN excluded.ttl_ms ELSE kv.ttl_ms END "
            # Only a JSON integer, and only if the sum stays in 64 bits: else nothing is written.
            f"WHERE {expired} OR (json_typeof(kv.value) = 'number' AND {current} ~ '^-?[0-9]+$' "
            f"AND ({current})::numeric + $2::bigint BETWEEN -9223372036854775808 AND 9223372036854775807) "
            "RETURNING (value #>> '{}')::bigint"
        )
        self.purge = (
            f"WITH gone AS (DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires_at <= now() "
            "LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING 1) SELECT count(*) FROM gone"
        )
        self._t, self._live = t, live

    def field_index(self, field: str) -> str:
        """An index on one top-level JSON field (and the key, so a prefix range stays in it)."""
        name = self._t.split(".")[1][:-1] + f'_f_{field}"'
        path = f"(value->>'{field}')"  # the very text query() writes, or it is not used
        return f"CREATE INDEX IF NOT EXISTS {name} ON {self._t} ({path}, key) WHERE {path} IS NOT NULL"

    def query(self, prefix: str, where: Sequence[Filter], after: str | None, limit: int) -> tuple[str, list[Any]]:
        """A filtered page: the key range, liveness, and per filter a condition that holds
        exactly when the field equals the value as JSON (an index serves plain field names)."""
        params: list[Any] = []

        def bind(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        conds = [f"key >= {bind(prefix)}" if after is None or after < prefix else f"key > {bind(after)}"]
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            conds.append(f"key < {bind(upper)}")
        conds.append(self._live)
        for field, value in where:
            name = f"'{field}'" if is_identifier(field) else f"{bind(field)}::text"
            text, kind = f"(value->>{name})", f"json_typeof(value->{name})"
            if value is None:
                conds.append(f"{kind} = 'null'")
            elif isinstance(value, bool):
                conds.append(f"({kind} = 'boolean' AND {text} = '{str(value).lower()}')")
            elif isinstance(value, str):
                conds.append(f"({text} = {bind(value)}::text AND {kind} = 'string')")
            else:  # a number: by value (1 = 1.0), and only if the field is a number
                conds.append(f"(CASE WHEN {kind} = 'number' THEN {text}::numeric = {bind(str(value))}::numeric END)")
        where_sql = " AND ".join(conds)
        return f"SELECT key, value, version FROM {self._t} WHERE {where_sql} ORDER BY key LIMIT {bind(limit)}", params

    def scan(self, *, first: bool, bounded: bool) -> str:
        lower = "key >= $1" if first else "key > $1"
        upper, limit = ("AND key < $2 ", "$3") if bounded else ("", "$2")
        return f"SELECT key FROM {self._t} WHERE {lower} {upper}AND {self._live} ORDER BY key LIMIT {limit}"
