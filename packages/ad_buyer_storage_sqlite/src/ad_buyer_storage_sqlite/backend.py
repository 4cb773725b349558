"""SQLite backend on aiosqlite.

Design (two driver facts: aiosqlite serves a connection from one worker thread; SQLite has one writer at a time):

* every primitive is ONE SQL statement in autocommit mode: atomic on its own, one thread hop
  per call. The one multi-statement transaction, :meth:`SQLiteBackend.commit`, is one thread
  hop too: a function run on aiosqlite's worker thread (its ``_execute``, the same private
  hook each of its own methods uses), so no other statement can land inside it; it takes the
  write lock up front (``BEGIN IMMEDIATE``), so its checks and writes are one step for every
  process on the file. That hook is private: our range of aiosqlite is bounded to the releases
  that have it, and were one to lack it, ``connect()`` fails loudly (``ConfigurationError``)
  rather than run transactions unsafely or quietly stop claiming them;
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
* the database file is created 0600 (SQLite gives ``-wal``/``-shm`` the same mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import logging
import os
import sqlite3
import threading
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
from ad_buyer_storage.errors import (
    BackendError,
    BusyError,
    ConfigurationError,
    InvalidValueError,
    NotConnectedError,
    ReadOnlyError,
    StorageError,
    StorageFullError,
    UnavailableError,
)
from ad_buyer_storage.kit import turns
from ad_buyer_storage.kit.batches import each_or_error, in_bulk_or_each, results_or_raise
from ad_buyer_storage.kit.errormap import ErrorMap
from ad_buyer_storage.kit.identifiers import DEFAULT_INDEXED_FIELDS, check_identifier, is_identifier
from ad_buyer_storage.kit.identifiers import indexed_fields as indexed_fields_of
from ad_buyer_storage.kit.redaction import redact_url
from ad_buyer_storage.kit.scan import Page, scan_pages
from ad_buyer_storage.kit.sweeper import Sweeper, purge_in_batches

__all__ = ["MAX_BUSY_TIMEOUT", "SQLiteBackend", "parse_sqlite_url"]

log = logging.getLogger("ad_buyer_storage.sqlite")

#: aiosqlite runs every call as a function on its worker thread (``Connection._execute``, with
#: the sqlite3 connection as ``Connection._conn``): a transaction uses the same hook to run as
#: one step. Both are private, in every release from 0.20 to 0.22 (our range stops there).
_WORKER_HOOKS = ("_execute", "_conn")


def _missing_worker_hooks() -> list[str]:
    return [name for name in _WORKER_HOOKS if not hasattr(aiosqlite.Connection, name)]


try:
    import fcntl
except ImportError:  # not on Windows: no turns there (transactions stay optimistic)
    fcntl = None  # type: ignore[assignment]

#: What a turn holds on SQLite: the whole database (see SQLiteBackend.turn).
_WHOLE_FILE = "*"


_MAX_ROWS_PER_STATEMENT = 1000  # 5 parameters a row, well under SQLite's 32,766 limit
_MAX_KEYS_PER_STATEMENT = 5000
#: Seconds. PRAGMA busy_timeout holds milliseconds in a C int: above that, SQLite silently waits 0.
MAX_BUSY_TIMEOUT = (2**31 - 1) // 1000


def parse_sqlite_url(url: str) -> str:
    """``sqlite:///./x.db`` -> ``./x.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``; memory forms."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("sqlite", "sqlite+aiosqlite"):
        raise ConfigurationError(
            f"not a sqlite URL: {redact_url(url)}; expected sqlite:///relative.db or sqlite:////abs.db"
        )
    rest = rest.split("?", 1)[0]
    if rest in ("", "/", "/:memory:", ":memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise ConfigurationError(
            f"sqlite URLs name a file after three slashes: sqlite:///path.db (got {redact_url(url)})"
        )
    return rest[1:]  # "/./x.db" -> "./x.db", "//abs/x.db" -> "/abs/x.db"


def _on_read_only_file_system(path: str) -> bool:
    try:
        return bool(os.statvfs(Path(path).resolve().parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _classify(exc: BaseException, path: str) -> StorageError:
    """The storage error for a sqlite3/aiosqlite error, or the OSError of creating the file."""
    if isinstance(exc, ValueError) and "closed" in str(exc).lower():
        return NotConnectedError("the SQLite connection is closed")
    if isinstance(exc, OSError):
        return UnavailableError(f"cannot create SQLite database {path}: {exc.strerror}")
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    message = f"SQLite {path}: {exc}"
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return BusyError(message)
    if primary == sqlite3.SQLITE_FULL:
        return StorageFullError(message)
    if primary == sqlite3.SQLITE_READONLY:
        return ReadOnlyError(message)
    if primary in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_PERM):
        if _on_read_only_file_system(path):
            # SQLite only says "unable to open": a WAL database needs its -shm file beside it.
            return ReadOnlyError(f"{message} (the file system holding it is mounted read-only)")
        return UnavailableError(message)
    return BackendError(message)


class SQLiteBackend:
    """One SQLite file (or ``:memory:``), one table per namespace."""

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str] = "./ad_buyer.db",
        *,
        table: str = "kv_store",
        busy_timeout: float = 5.0,
        sweep_interval: float | None = 60.0,
        sweep_batch: int = 500,
        clock: Clock = system_clock,
        read_only: bool = False,
        synchronous: str = "NORMAL",
        indexed_fields: str = DEFAULT_INDEXED_FIELDS,
    ) -> None:
        check_identifier("SQLITE_TABLE", table)
        if "\x00" in str(path):
            raise ConfigurationError("an SQLite path cannot contain a NUL character (check DATABASE_URL)")
        if not 0 < busy_timeout <= MAX_BUSY_TIMEOUT:  # also refuses nan
            raise ConfigurationError(f"SQLITE_BUSY_TIMEOUT must be > 0 and <= {MAX_BUSY_TIMEOUT} seconds")
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ConfigurationError(f"SQLITE_SYNCHRONOUS is NORMAL or FULL, not {synchronous!r}")
        self._synchronous = synchronous.upper()
        self.indexed_fields = indexed_fields_of("SQLITE_INDEXED_FIELDS", indexed_fields)
        self.path = str(path)
        self._absolute_path = self.path if self.path == ":memory:" else os.path.abspath(self.path)
        self.table = table
        self.in_memory = self.path == ":memory:"
        self._turns_check: int | None = None  # see _turns_fd()
        self.read_only = read_only
        self.capabilities = frozenset(
            {Capability.EXPIRY, Capability.ATOMIC, Capability.TRANSACTIONS, Capability.REFRESH}
            | (set() if self.in_memory else {Capability.DURABLE, Capability.MULTI_PROCESS, Capability.TURNS})
        )
        self._busy_timeout = busy_timeout
        self._sweep_batch = sweep_batch
        self._clock = clock
        self._conn: aiosqlite.Connection | None = None
        # aiosqlite reports a closed connection with a ValueError.
        self._errors = ErrorMap(self._translate, (sqlite3.Error, ValueError))
        self._sweeper = Sweeper(self.purge_expired, None if read_only else sweep_interval, table, log)
        self._sql = _Statements(f'"{table}"')

    def __repr__(self) -> str:
        return f"SQLiteBackend(path={self.path!r}, table={self.table!r})"

    def _translate(self, exc: BaseException, *, outcome_unknown: bool) -> StorageError:
        """The one place SQLite errors become storage errors (raised by self._errors). No
        outcome is ever unknown here: SQLite runs in this process and never loses a reply."""
        return _classify(exc, self.path)

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        try:
            # Everything that fails here is translated, the file's creation (an OSError) included.
            with self._errors.mapped(also=(Exception,)):
                await self._open()
        except Exception:
            await self.aclose()
            raise
        self._sweeper.start()

    async def _open(self) -> None:
        if missing := _missing_worker_hooks():
            version = importlib.metadata.version("aiosqlite")
            raise ConfigurationError(
                f"aiosqlite {version} lacks Connection.{', Connection.'.join(missing)}, on which this backend runs "
                "a transaction as one step: install a release ad-buyer-storage-sqlite supports (aiosqlite>=0.20,<0.23)"
            )
        target, uri = self.path, False
        if self.read_only and not self.in_memory:
            # An existing file, opened so that SQLite itself refuses every write.
            target, uri = Path(self._absolute_path).as_uri() + "?mode=ro", True
        elif not self.in_memory:
            await asyncio.to_thread(_create_private_file, self.path)
        connection = aiosqlite.connect(
            target, isolation_level=None, timeout=self._busy_timeout, check_same_thread=False, uri=uri
        )
        # aiosqlite's worker thread is non-daemon: a connection never closed would keep the
        # interpreter from exiting. Committed statements are already in the WAL, so a daemon
        # thread loses nothing when the process ends.
        # Up to 0.21 the connection is its worker thread; from 0.22 it holds one (private `_thread`).
        worker = connection if isinstance(connection, threading.Thread) else getattr(connection, "_thread", None)
        if isinstance(worker, threading.Thread) and not worker.is_alive():
            worker.daemon = True
        self._conn = await connection
        setup = [f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}"]
        if not self.in_memory and not self.read_only:
            setup += ["PRAGMA journal_mode = WAL", f"PRAGMA synchronous = {self._synchronous}"]
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
            facts["file_mode"] = await asyncio.to_thread(_file_mode, self.path)
        return facts

    # -- plumbing --------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        conn = self._conn
        if conn is None:
            raise NotConnectedError("the SQLite backend is not connected")
        with self._errors.mapped():
            return list(await conn.execute_fetchall(sql, params))

    # -- primitives ------------------------------------------------------------------------
    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        now = self._now_ms()
        if len(keys) == 1:
            rows = await self._fetch(self._sql.read_one, (keys[0], now))
            return [Record(rows[0][0], rows[0][1]) if rows else None]
        found: dict[str, Record] = {}
        for start in range(0, len(keys), _MAX_KEYS_PER_STATEMENT):
            chunk = keys[start : start + _MAX_KEYS_PER_STATEMENT]
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
                    and j - i < _MAX_ROWS_PER_STATEMENT
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
        await self._fetch(self._sql.upsert(len(rows), rows[0].keep_ttl), self._upsert_params(rows, now))
        return [True] * len(rows)

    @staticmethod
    def _upsert_params(rows: Sequence[Write], now: int) -> tuple[Any, ...]:
        # A tuple: sqlite3 binds one a few microseconds faster than a list.
        params = tuple(
            field
            for row in rows
            for field in (row.key, row.value, row.version, None if row.ttl_ms is None else now + row.ttl_ms, row.ttl_ms)
        )
        return (*params, now, now) if rows[0].keep_ttl else params

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
        run_in_thread: Any = conn._execute  # checked at connect
        with self._errors.mapped(also=(OSError,)):
            # Unless this context holds the turn (see turn()), a turn held elsewhere fails this commit;
            # one that only checks (a read set validated) writes nothing a turn protects.
            only_checks = not (writes or deletes)
            turn_fd = None if self.in_memory or only_checks or turns.held(self, [_WHOLE_FILE]) else self._turns_fd()
            return bool(
                await run_in_thread(self._transaction, conn._conn, checks, writes, deletes, self._now_ms(), turn_fd)
            )

    def _turns_fd(self) -> int:
        """The descriptor this backend's commits try a shared lock of the turns file on."""
        if self._turns_check is None:
            self._turns_check = os.open(self._absolute_path + "-turns", os.O_RDWR | os.O_CREAT, 0o600)
        return self._turns_check

    @asynccontextmanager
    async def turn(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """The turn (see SupportsTurns), of the whole database: an exclusive ``flock`` of the file
        beside it named ``<database>-turns``, waited for on a thread of its own; the kernel
        queues the takers. Commits elsewhere try a shared lock of it once they hold SQLite's
        write lock, and fail while a turn holds it. In memory (one process) there is none."""
        if self.in_memory or fcntl is None or not keys or turns.held(self, [_WHOLE_FILE]):
            yield
            return
        with self._errors.mapped(also=(OSError,)):
            fd = os.open(self._absolute_path + "-turns", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: taken at once, no thread
        except BlockingIOError:
            pass
        except BaseException:
            os.close(fd)
            raise
        else:
            try:
                with turns.holding(self, [_WHOLE_FILE]):
                    yield
            finally:
                os.close(fd)  # releases the lock
            return
        loop = asyncio.get_running_loop()
        taken: asyncio.Future[None] = loop.create_future()

        def settle(error: OSError | None) -> None:
            if taken.done():  # its taker was cancelled
                return
            if error is None:
                taken.set_result(None)
            else:
                taken.set_exception(error)

        def take() -> None:
            error = None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, error)

        def release_when_taken(waiter: threading.Thread) -> None:
            waiter.join()
            os.close(fd)

        waiter = threading.Thread(target=take, name="ad-buyer-storage-sqlite-turn", daemon=True)
        waiter.start()
        try:
            with self._errors.mapped(also=(OSError,)):
                await taken
        except BaseException:
            # Cancelled while waiting: the thread may still take the lock; closing the
            # descriptor once it has returned releases it. (Its result is then never read.)
            threading.Thread(target=release_when_taken, args=(waiter,), daemon=True).start()
            raise
        try:
            with turns.holding(self, [_WHOLE_FILE]):
                yield
        finally:
            os.close(fd)  # releases the lock

    def _transaction(
        self,
        db: sqlite3.Connection,
        checks: Sequence[Check],
        writes: Sequence[Write],
        deletes: Sequence[str],
        now: int,
        turn_fd: int | None = None,
    ) -> bool:
        """On aiosqlite's worker thread: nothing else runs on the connection meanwhile."""
        db.execute("BEGIN IMMEDIATE")
        shared = False
        try:
            if turn_fd is not None and fcntl is not None:
                try:
                    fcntl.flock(turn_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    shared = True
                except BlockingIOError:  # a turn is held elsewhere: this transaction waits for one
                    db.execute("ROLLBACK")
                    return False
            keys = [key for key, _ in checks]
            live: dict[str, str] = {}
            for start in range(0, len(keys), _MAX_KEYS_PER_STATEMENT):
                chunk = keys[start : start + _MAX_KEYS_PER_STATEMENT]
                live.update(db.execute(self._sql.versions(len(chunk)), (*chunk, now)).fetchall())
            if any(live.get(key) != version for key, version in checks):
                db.execute("ROLLBACK")
                return False
            for keep in (False, True):
                rows = [w for w in writes if w.keep_ttl is keep]
                for start in range(0, len(rows), _MAX_ROWS_PER_STATEMENT):
                    batch = rows[start : start + _MAX_ROWS_PER_STATEMENT]
                    db.execute(self._sql.upsert(len(batch), keep), self._upsert_params(batch, now)).fetchall()
            for start in range(0, len(deletes), _MAX_KEYS_PER_STATEMENT):
                gone = deletes[start : start + _MAX_KEYS_PER_STATEMENT]
                db.execute(self._sql.remove(len(gone)), gone).fetchall()  # RETURNING: step every row
            db.execute("COMMIT")
            return True
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")  # nothing of it applies
            raise
        finally:
            if shared and turn_fd is not None and fcntl is not None:
                fcntl.flock(turn_fd, fcntl.LOCK_UN)

    async def query(
        self, prefix: str, where: Sequence[Filter], after: str | None, limit: int
    ) -> Sequence[tuple[str, Record]]:
        sql, params = self._sql.query(prefix, where, after, self._now_ms(), limit)
        return [(key, Record(value, version)) for key, value, version in await self._fetch(sql, params)]

    async def remove(self, keys: Sequence[str]) -> int:
        now = self._now_ms()
        removed = 0
        for start in range(0, len(keys), _MAX_KEYS_PER_STATEMENT):
            chunk = keys[start : start + _MAX_KEYS_PER_STATEMENT]
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
        for start in range(0, len(keys), _MAX_KEYS_PER_STATEMENT):
            chunk = keys[start : start + _MAX_KEYS_PER_STATEMENT]
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


def _file_mode(path: str) -> str:
    try:
        return oct(os.stat(path).st_mode & 0o777)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def _create_private_file(path: str) -> None:
    """Create the database file 0600 if it does not exist (SQLite would use 0644). An OSError
    (no such directory, no permission) is left to the translator, as connect() runs this."""
    if os.path.exists(path):
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # another process created it first
    os.close(fd)


class _Statements:
    """Every SQL statement, built once per table. Keys are always bound, never formatted in."""

    def __init__(self, t: str) -> None:
        live = "(expires_at IS NULL OR expires_at > ?)"
        self.t = t
        self.create_table = (
            f"CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, "
            "version TEXT NOT NULL, expires_at INTEGER, ttl_ms INTEGER)"
        )
        index = t[:-1] + '_expires_at"'
        self.create_index = f"CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at) WHERE expires_at IS NOT NULL"
        self.read_one = f"SELECT value, version FROM {t} WHERE key = ? AND {live}"
        self.insert_if_absent = (
            f"INSERT INTO {t} (key, value, version, expires_at, ttl_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version, "
            "expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms "
            f"WHERE {t}.expires_at IS NOT NULL AND {t}.expires_at <= ? RETURNING 1"
        )
        self.update_if_version = (
            f"UPDATE {t} SET value = ?, version = ?, expires_at = ?, ttl_ms = ? "
            f"WHERE key = ? AND version = ? AND {live} RETURNING 1"
        )
        self.update_if_version_keep = (
            f"UPDATE {t} SET value = ?, version = ? WHERE key = ? AND version = ? AND {live} RETURNING 1"
        )
        self.get_expiry = f"SELECT expires_at FROM {t} WHERE key = ? AND {live}"
        self.set_expiry = f"UPDATE {t} SET expires_at = ?, ttl_ms = ? WHERE key = ? AND {live} RETURNING 1"
        # (ttl, now, ttl, ttl, key, now): renew to the TTL given, else to the one recorded.
        self.read_refresh = (
            f"UPDATE {t} SET expires_at = CASE WHEN coalesce(?, ttl_ms) IS NULL THEN expires_at "
            "ELSE ? + coalesce(?, ttl_ms) END, ttl_ms = coalesce(?, ttl_ms) "
            f"WHERE key = ? AND {live} RETURNING value, version"
        )
        # Plain placeholders only (CPython 3.12.0-3.12.3 warn on numbered ones bound to a
        # sequence): parameters are (key, amount text, version, expiry, ttl, now, amount, now,
        # now, now, low, high), in the order the ? appear.
        expired = f"({t}.expires_at IS NOT NULL AND {t}.expires_at <= ?)"
        self.increment = (
            f"INSERT INTO {t} (key, value, version, expires_at, ttl_ms) VALUES (?, ?, ?, ?, ?) "
            f"ON CONFLICT(key) DO UPDATE SET "
            f"value = CASE WHEN {expired} THEN excluded.value "
            f"ELSE CAST(CAST({t}.value AS INTEGER) + ? AS TEXT) END, "
            f"version = excluded.version, "
            f"expires_at = CASE WHEN {expired} THEN excluded.expires_at ELSE {t}.expires_at END, "
            f"ttl_ms = CASE WHEN {expired} THEN excluded.ttl_ms ELSE {t}.ttl_ms END "
            # Canonical integer text only (what the codec writes): rejects floats, big ints, text.
            f"WHERE {expired} OR ({t}.value = CAST(CAST({t}.value AS INTEGER) AS TEXT) "
            f"AND CAST({t}.value AS INTEGER) BETWEEN ? AND ?) RETURNING value"
        )
        self.remove_range = f"DELETE FROM {t} WHERE key >= ? AND key < ? RETURNING expires_at"
        self.remove_from = f"DELETE FROM {t} WHERE key >= ? RETURNING expires_at"
        self.purge = f"DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires_at <= ? LIMIT ?) RETURNING 1"
        self._live = live
        self._cache: dict[tuple[str, int, bool], str] = {}

    def _cached(self, kind: str, n: int, flag: bool, build: Any) -> str:
        sql = self._cache.get((kind, n, flag))
        if sql is None:
            sql = build()
            if len(self._cache) < 256:
                self._cache[(kind, n, flag)] = sql
        return sql

    def upsert(self, rows: int, keep_ttl: bool) -> str:
        def build() -> str:
            t = self.t
            values = ", ".join(["(?, ?, ?, ?, ?)"] * rows)
            kept = f"{t}.expires_at IS NULL OR {t}.expires_at > ?"  # the live row keeps its expiry
            expiry = (
                f"expires_at = CASE WHEN {kept} THEN {t}.expires_at ELSE excluded.expires_at END, "
                f"ttl_ms = CASE WHEN {kept} THEN {t}.ttl_ms ELSE excluded.ttl_ms END"
                if keep_ttl
                else "expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms"
            )
            return (
                f"INSERT INTO {t} (key, value, version, expires_at, ttl_ms) VALUES {values} "
                f"ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version, {expiry}"
            )

        return self._cached("upsert", rows, keep_ttl, build)

    def _in(self, n: int) -> str:
        return ", ".join(["?"] * n)

    def read_many(self, n: int) -> str:
        return self._cached(
            "read",
            n,
            False,
            lambda: f"SELECT key, value, version FROM {self.t} WHERE key IN ({self._in(n)}) AND {self._live}",
        )

    def field_index(self, field: str) -> str:
        """An index on one top-level JSON field (and the key, so a prefix range stays in it)."""
        path = f"json_extract(value, '$.{field}')"  # the very text query() writes, or it is not used
        return f'CREATE INDEX IF NOT EXISTS {self.t[:-1]}_f_{field}" ON {self.t} ({path}, key) WHERE {path} IS NOT NULL'

    def query(
        self, prefix: str, where: Sequence[Filter], after: str | None, now: int, limit: int
    ) -> tuple[str, list[Any]]:
        """A filtered page: the key range, liveness, and a condition per filter on a plain field
        name (a field with other characters is left to core, which checks every record)."""
        params: list[Any]
        if after is None or after < prefix:
            conds, params = ["key >= ?"], [prefix]
        else:
            conds, params = ["key > ?"], [after]
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            conds.append("key < ?")
            params.append(upper)
        conds.append(self._live)
        params.append(now)
        for field, value in where:
            if not is_identifier(field):
                continue
            path = f"'$.{field}'"
            if value is None or isinstance(value, bool):
                conds.append(f"json_type(value, {path}) = '{'null' if value is None else str(value).lower()}'")
            else:  # text equals text only, numbers compare by value (1 = 1.0), as JSON equality
                conds.append(f"json_extract(value, {path}) = ?")
                params.append(value)
        params.append(limit)
        return f"SELECT key, value, version FROM {self.t} WHERE {' AND '.join(conds)} ORDER BY key LIMIT ?", params

    def versions(self, n: int) -> str:
        return self._cached(
            "versions",
            n,
            False,
            lambda: f"SELECT key, version FROM {self.t} WHERE key IN ({self._in(n)}) AND {self._live}",
        )

    def remove(self, n: int) -> str:
        return self._cached(
            # Only the raw column: SQLite 3.40 returns NULL for `RETURNING <expression>` of a
            # DELETE on a file database, so liveness is computed by the caller.
            "remove",
            n,
            False,
            lambda: f"DELETE FROM {self.t} WHERE key IN ({self._in(n)}) RETURNING expires_at",
        )

    def count(self, n: int) -> str:
        return self._cached(
            "count", n, False, lambda: f"SELECT count(*) FROM {self.t} WHERE key IN ({self._in(n)}) AND {self._live}"
        )

    def scan(self, *, first: bool, bounded: bool) -> str:
        """A page of a keyset scan (see ad_buyer_storage.kit.scan)."""
        lower = "key >= ?" if first else "key > ?"
        upper = "AND key < ? " if bounded else ""
        return f"SELECT key FROM {self.t} WHERE {lower} {upper}AND {self._live} ORDER BY key LIMIT ?"
