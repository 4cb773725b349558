"""SQLite backend on aiosqlite: the class, wiring the modules beside it.

Design (two driver facts: aiosqlite serves a connection from one worker thread; SQLite has one writer at a time):

* every primitive is ONE SQL statement in autocommit mode (:mod:`.statements`): atomic on its
  own, one thread hop per call. The one multi-statement transaction, :meth:`SQLiteBackend.commit`,
  is one thread hop too (:mod:`.transaction`): a function run on aiosqlite's worker thread (its
  private ``_execute`` hook, checked at connect by :mod:`.connection`), so no other statement can
  land inside it; it takes the write lock up front (``BEGIN IMMEDIATE``), so its checks and
  writes are one step for every process on the file;
* WAL + ``synchronous=NORMAL`` + ``busy_timeout``: several processes on one host may write the
  same file; a write statement takes the write lock up front, so ``busy_timeout`` applies. A
  commit is in the WAL when the call returns: it survives the process being killed, and with
  ``synchronous="FULL"`` (an fsync per commit) also a power cut;
* prefix listing is a primary-key range scan (``key >= p AND key < p'``), never ``LIKE``
  (which folds case and treats ``_``/``%`` as wildcards), paginated by key; filtered listing
  (:meth:`SQLiteBackend.query`) adds ``json_extract`` conditions, which an expression index
  per indexed field (``SQLITE_INDEXED_FIELDS``: status, campaign_id... by default) serves;
* reads never write; expired rows are invisible (``expires_at > now``) and purged by a
  background sweeper in bounded batches;
* the database file is created 0600 (SQLite gives ``-wal``/``-shm`` the same mode; :mod:`.paths`);
* driver errors become ours by one table (:mod:`.errors`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from ad_buyer_storage.contract.clock import Clock, system_clock
from ad_buyer_storage.contract.glob import GlobPattern, prefix_upper_bound
from ad_buyer_storage.contract.protocol import (
    INT64_MAX,
    INT64_MIN,
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
from ad_buyer_storage.errors import ConfigurationError, InvalidValueError, NotConnectedError
from ad_buyer_storage.kit import turns
from ad_buyer_storage.kit.batches import each_or_error, in_bulk_or_each, results_or_raise
from ad_buyer_storage.kit.errormap import ErrorMap
from ad_buyer_storage.kit.identifiers import indexed_fields as indexed_fields_of
from ad_buyer_storage.kit.scan import Page, scan_pages
from ad_buyer_storage.kit.sweeper import Sweeper, purge_in_batches

from .connection import check_worker_hooks, open_connection, pragmas
from .errors import ERRORS, raise_if_closed, translator
from .paths import create_private_file, file_mode, parse_sqlite_url
from .settings import MAX_BUSY_TIMEOUT, SQLiteSettings
from .statements import MAX_KEYS_PER_STATEMENT, MAX_ROWS_PER_STATEMENT, Statements
from .transaction import WHOLE_FILE, fcntl, hold_turn, open_turns_file, run_commit, upsert_params

__all__ = ["MAX_BUSY_TIMEOUT", "SQLiteBackend", "parse_sqlite_url"]

log = logging.getLogger("ad_buyer_storage.sqlite")


class SQLiteBackend:
    """One SQLite file (or ``:memory:``), one table per namespace.

    ``SQLiteBackend(path, settings)`` uses the :class:`SQLiteSettings` given;
    ``SQLiteBackend(path, table=..., busy_timeout=...)`` builds them from the keywords alone (the
    environment unread; an unknown name is refused, naming the closest one). *clock* drives expiry
    (tests); *read_only* opens an existing file so that SQLite itself refuses every write.
    """

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str] = "./ad_buyer.db",
        settings: SQLiteSettings | None = None,
        /,
        *,
        clock: Clock = system_clock,
        read_only: bool = False,
        **fields: Any,
    ) -> None:
        if settings is None:
            if fields.get("sweep_interval", 0) is None:  # before settings: None disabled the sweeper
                fields["sweep_interval"] = 0
            settings = SQLiteSettings.given(**fields)
        elif fields:
            raise ConfigurationError(
                f"SQLiteBackend takes its settings model or keyword settings, not both (got {', '.join(fields)})"
            )
        if "\x00" in str(path):
            raise ConfigurationError("an SQLite path cannot contain a NUL character (check DATABASE_URL)")
        self.settings = settings
        self._synchronous = settings.synchronous
        self.indexed_fields = indexed_fields_of("SQLITE_INDEXED_FIELDS", settings.indexed_fields)
        self.path = str(path)
        self._absolute_path = self.path if self.path == ":memory:" else os.path.abspath(self.path)
        self.table = settings.table
        self.in_memory = self.path == ":memory:"
        self._turns_check: int | None = None  # see _turns_fd()
        self.read_only = read_only
        self.capabilities = frozenset(
            {Capability.EXPIRY, Capability.ATOMIC, Capability.TRANSACTIONS, Capability.REFRESH}
            | (set() if self.in_memory else {Capability.DURABLE, Capability.MULTI_PROCESS, Capability.TURNS})
        )
        self._busy_timeout = settings.busy_timeout
        self._sweep_batch = settings.sweep_batch
        self._clock = clock
        self._conn: aiosqlite.Connection | None = None
        self._errors = ErrorMap(translator(self.path), ERRORS.driver_errors)
        interval = None if read_only else settings.sweep_interval or None  # 0: no sweeper
        self._sweeper = Sweeper(self.purge_expired, interval, self.table, log)
        self._sql = Statements(f'"{self.table}"')

    def __repr__(self) -> str:
        return f"SQLiteBackend(path={self.path!r}, table={self.table!r})"

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        try:
            # What fails here is translated, the file's creation (an OSError) included.
            with self._errors.mapped():
                await self._open()
        except Exception:
            await self.aclose()
            raise
        self._sweeper.start()

    async def _open(self) -> None:
        check_worker_hooks()
        target, uri = self.path, False
        if self.read_only and not self.in_memory:
            # An existing file, opened so that SQLite itself refuses every write.
            target, uri = Path(self._absolute_path).as_uri() + "?mode=ro", True
        elif not self.in_memory:
            await asyncio.to_thread(create_private_file, self.path)
        self._conn = await open_connection(target, uri=uri, busy_timeout=self._busy_timeout)
        setup = pragmas(
            busy_timeout=self._busy_timeout,
            in_memory=self.in_memory,
            read_only=self.read_only,
            synchronous=self._synchronous,
        )
        if not self.read_only:
            setup += [self._sql.create_table, self._sql.create_index]
            setup += [self._sql.field_index(field) for field in self.indexed_fields]
        for statement in setup:
            await self._conn.execute_fetchall(statement)
        if not self.read_only:
            await self._add_ttl_column(self._conn)

    async def _add_ttl_column(self, conn: aiosqlite.Connection) -> None:
        """Tables made before sliding TTLs lack ``ttl_ms`` (the TTL each key was given): add it.
        Rows written before keep NULL there: they are renewed only to an explicit TTL."""
        columns = {row[1] for row in await conn.execute_fetchall(f"PRAGMA table_info({self._sql.t})")}
        if "ttl_ms" not in columns:
            try:
                await conn.execute_fetchall(f"ALTER TABLE {self._sql.t} ADD COLUMN ttl_ms INTEGER")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise

    async def aclose(self) -> None:
        await self._sweeper.stop()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        check, self._turns_check = self._turns_check, None
        if check is not None:
            os.close(check)

    async def ping(self) -> None:
        await self._fetch("SELECT 1", ())

    def peer(self) -> Peer:
        return Peer("sqlite", self.path)

    def pool_usage(self) -> PoolUsage | None:
        """Its one connection (while open), counted as in use: the backend holds it."""
        return None if self._conn is None else PoolUsage(used=1, idle=0, max=1)

    async def info(self) -> Mapping[str, object]:
        rows = await self._fetch("SELECT sqlite_version()", ())
        mode = await self._fetch("PRAGMA journal_mode", ())
        facts: dict[str, object] = {
            "backend": "sqlite",
            "sqlite_version": rows[0][0],
            "path": self._absolute_path,
            "table": self.table,
            "journal_mode": mode[0][0],
            "synchronous": self._synchronous,
        }
        if not self.in_memory:
            facts["file_mode"] = await asyncio.to_thread(file_mode, self.path)
        return facts

    # -- plumbing --------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        conn = self._conn
        if conn is None:
            raise NotConnectedError("the SQLite backend is not connected")
        try:
            with self._errors.mapped():
                return list(await conn.execute_fetchall(sql, params))
        except ValueError as exc:  # aiosqlite's closed connection, its one builtin error; else a bug
            raise_if_closed(exc)
            raise

    # -- primitives ------------------------------------------------------------------------
    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        now = self._now_ms()
        if len(keys) == 1:
            rows = await self._fetch(self._sql.read_one, (keys[0], now))
            return [Record(rows[0][0], rows[0][1]) if rows else None]
        found: dict[str, Record] = {}
        for start in range(0, len(keys), MAX_KEYS_PER_STATEMENT):
            chunk = keys[start : start + MAX_KEYS_PER_STATEMENT]
            for key, value, version in await self._fetch(self._sql.read_many(len(chunk)), (*chunk, now)):
                found[key] = Record(value, version)
        return [found.get(key) for key in keys]

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        now = self._now_ms()
        outcomes: list[object] = []
        i = 0
        while i < len(writes):
            if writes[i].condition is Condition.ALWAYS:
                # Consecutive unconditional writes with the same keep_ttl go in one statement.
                j, keep = i, writes[i].keep_ttl
                while (
                    j < len(writes)
                    and j - i < MAX_ROWS_PER_STATEMENT
                    and writes[j].condition is Condition.ALWAYS
                    and writes[j].keep_ttl == keep
                ):
                    j += 1
                outcomes += await in_bulk_or_each(writes[i:j], lambda rows: self._upsert(rows, now),
                                                  lambda row: self._upsert((row,), now))  # fmt: skip
                i = j
            else:
                outcomes.append(await each_or_error(functools.partial(self._conditional, writes[i], now)))
                i += 1
        return results_or_raise(outcomes)

    async def _upsert(self, rows: Sequence[Write], now: int) -> list[bool]:
        await self._fetch(self._sql.upsert(len(rows), rows[0].keep_ttl), upsert_params(rows, now))
        return [True] * len(rows)

    async def _conditional(self, w: Write, now: int) -> bool:
        expires = None if w.ttl_ms is None else now + w.ttl_ms
        if w.condition is Condition.IF_ABSENT:
            rows = await self._fetch(self._sql.insert_if_absent, (w.key, w.value, w.version, expires, w.ttl_ms, now))
        else:
            sql = self._sql.update_if_version_keep if w.keep_ttl else self._sql.update_if_version
            args = (w.value, w.version) + (() if w.keep_ttl else (expires, w.ttl_ms)) + (w.key, w.expected_version, now)
            rows = await self._fetch(sql, args)
        return bool(rows)

    async def commit(self, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str]) -> bool:
        conn = self._conn
        if conn is None:
            raise NotConnectedError("the SQLite backend is not connected")
        try:
            with self._errors.mapped():
                run_in_thread: Any = conn._execute  # checked at connect
                # Unless this context holds the turn (see turn()), a turn held elsewhere fails this
                # commit; one that only checks (a read set validated) writes nothing a turn protects.
                only_checks = not (writes or deletes)
                held = turns.held(self, [WHOLE_FILE])
                turn_fd = None if self.in_memory or only_checks or held else self._turns_fd()
                args = (conn._conn, self._sql, checks, writes, deletes, self._now_ms(), turn_fd)
                return bool(await run_in_thread(run_commit, *args))
        except ValueError as exc:  # aiosqlite's closed connection, its one builtin error; else a bug
            raise_if_closed(exc)
            raise

    def _turns_fd(self) -> int:
        """The descriptor this backend's commits try a shared lock of the turns file on."""
        if self._turns_check is None:
            self._turns_check = open_turns_file(self._absolute_path)
        return self._turns_check

    @asynccontextmanager
    async def turn(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """The turn (see SupportsTurns), of the whole database (see :mod:`.transaction`). In
        memory (one process) there is none."""
        if self.in_memory or fcntl is None or not keys or turns.held(self, [WHOLE_FILE]):
            yield
            return
        async with hold_turn(self, self._absolute_path, self._errors):
            yield

    async def query(
        self, prefix: str, where: Sequence[Filter], after: str | None, limit: int
    ) -> Sequence[tuple[str, Record]]:
        sql, params = self._sql.query(prefix, where, after, self._now_ms(), limit)
        return [(key, Record(value, version)) for key, value, version in await self._fetch(sql, params)]

    async def remove(self, keys: Sequence[str]) -> int:
        now = self._now_ms()
        removed = 0
        for start in range(0, len(keys), MAX_KEYS_PER_STATEMENT):
            chunk = keys[start : start + MAX_KEYS_PER_STATEMENT]
            rows = await self._fetch(self._sql.remove(len(chunk)), chunk)
            removed += sum(1 for (expires,) in rows if expires is None or expires > now)
        return removed

    async def remove_prefix(self, prefix: str) -> int:
        now = self._now_ms()
        upper = prefix_upper_bound(prefix)
        sql, args = (
            (self._sql.remove_range, (prefix, upper)) if upper is not None else (self._sql.remove_from, (prefix,))
        )
        rows = await self._fetch(sql, args)
        return sum(1 for (expires,) in rows if expires is None or expires > now)

    async def count(self, keys: Sequence[str]) -> int:
        now = self._now_ms()
        total = 0
        for start in range(0, len(keys), MAX_KEYS_PER_STATEMENT):
            chunk = keys[start : start + MAX_KEYS_PER_STATEMENT]
            rows = await self._fetch(self._sql.count(len(chunk)), (*chunk, now))
            total += rows[0][0]
        return total

    def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        return scan_pages(pattern, batch_size, self._scan_page)

    async def _scan_page(self, page: Page) -> list[str]:
        sql = self._sql.scan(first=page.inclusive, bounded=page.stop is not None)
        rows = await self._fetch(sql, (*page.bounds, self._now_ms(), page.limit))
        return [key for (key,) in rows]

    async def get_ttl(self, key: str) -> int:
        now = self._now_ms()
        rows = await self._fetch(self._sql.get_expiry, (key, now))
        if not rows:
            return NO_KEY
        expires = rows[0][0]
        return NO_EXPIRY if expires is None else int(expires) - now

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        now = self._now_ms()
        expires = None if ttl_ms is None else now + ttl_ms
        return bool(await self._fetch(self._sql.set_expiry, (expires, ttl_ms, key, now)))

    async def read_refresh(self, key: str, ttl_ms: int | None) -> Record | None:
        now = self._now_ms()
        rows = await self._fetch(self._sql.read_refresh, (ttl_ms, now, ttl_ms, ttl_ms, key, now))
        return Record(rows[0][0], rows[0][1]) if rows else None

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        now = self._now_ms()
        expires = None if ttl_ms is None else now + ttl_ms
        low, high = (INT64_MIN, INT64_MAX - amount) if amount >= 0 else (INT64_MIN - amount, INT64_MAX)
        args = (key, str(amount), version, expires, ttl_ms, now, amount, now, now, now, low, high)
        rows = await self._fetch(self._sql.increment, args)
        if rows:
            return int(rows[0][0])
        # Nothing written: the live value is not a 64-bit integer, or the sum would overflow.
        (record,) = await self.read((key,))
        raise InvalidValueError(
            f"cannot increment {key!r} by {amount}: "
            + ("the result would overflow 64 bits" if record and _is_int_text(record.value) else "not an integer")
        )

    # -- expiry sweeping -------------------------------------------------------------------
    async def purge_expired(self) -> int:
        """Delete expired rows in bounded batches; return how many."""
        return await purge_in_batches(self._purge_batch, self._sweep_batch)

    async def _purge_batch(self, limit: int) -> int:
        return len(await self._fetch(self._sql.purge, (self._now_ms(), limit)))


def _is_int_text(text: str | bytes) -> bool:
    if isinstance(text, bytes):
        text = text.decode()
    try:
        return str(int(text)) == text
    except ValueError:
        return False
