"""The one multi-statement transaction (a commit) and the turns that guard it.

A commit runs as ONE function on aiosqlite's worker thread (:func:`run_commit`): nothing else
runs on the connection meanwhile. It takes the write lock up front (``BEGIN IMMEDIATE``), so its
checks and writes are one step for every process on the file.

A turn (see ``SupportsTurns``) is of the whole database: an exclusive ``flock`` of the file beside
it named ``<database>-turns`` (:func:`hold_turn`), waited for on a thread of its own; the kernel
queues the takers. Commits elsewhere try a shared lock of it once they hold SQLite's write lock,
and fail while a turn holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from ad_buyer_storage.contract.protocol import Check, Write
from ad_buyer_storage.kit import turns
from ad_buyer_storage.kit.errormap import ErrorMap

from .statements import MAX_KEYS_PER_STATEMENT, MAX_ROWS_PER_STATEMENT, Statements

try:
    import fcntl
except ImportError:  # not on Windows: no turns there (transactions stay optimistic)
    fcntl = None  # type: ignore[assignment]

__all__ = ["WHOLE_FILE", "fcntl", "hold_turn", "open_turns_file", "run_commit", "upsert_params"]

#: What a turn holds on SQLite: the whole database.
WHOLE_FILE = "*"


def open_turns_file(database: str) -> int:
    """A descriptor of ``<database>-turns`` (created 0600 on first use)."""
    return os.open(database + "-turns", os.O_RDWR | os.O_CREAT, 0o600)


def upsert_params(rows: Sequence[Write], now: int) -> tuple[Any, ...]:
    """The parameters of :meth:`Statements.upsert` for *rows* (one keep_ttl), written at *now*."""
    # A tuple: sqlite3 binds one a few microseconds faster than a list.
    params = tuple(
        field
        for row in rows
        for field in (row.key, row.value, row.version, None if row.ttl_ms is None else now + row.ttl_ms, row.ttl_ms)
    )
    return (*params, now, now) if rows[0].keep_ttl else params


def run_commit(
    db: sqlite3.Connection,
    sql: Statements,
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
        for start in range(0, len(keys), MAX_KEYS_PER_STATEMENT):
            chunk = keys[start : start + MAX_KEYS_PER_STATEMENT]
            live.update(db.execute(sql.versions(len(chunk)), (*chunk, now)).fetchall())
        if any(live.get(key) != version for key, version in checks):
            db.execute("ROLLBACK")
            return False
        for keep in (False, True):
            rows = [w for w in writes if w.keep_ttl is keep]
            for start in range(0, len(rows), MAX_ROWS_PER_STATEMENT):
                batch = rows[start : start + MAX_ROWS_PER_STATEMENT]
                db.execute(sql.upsert(len(batch), keep), upsert_params(batch, now)).fetchall()
        for start in range(0, len(deletes), MAX_KEYS_PER_STATEMENT):
            gone = deletes[start : start + MAX_KEYS_PER_STATEMENT]
            db.execute(sql.remove(len(gone)), gone).fetchall()  # RETURNING: step every row
        db.execute("COMMIT")
        return True
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")  # nothing of it applies
        raise
    finally:
        if shared and turn_fd is not None and fcntl is not None:
            fcntl.flock(turn_fd, fcntl.LOCK_UN)


@asynccontextmanager
async def hold_turn(owner: object, database: str, errors: ErrorMap) -> AsyncIterator[None]:
    """The turn of the database at the absolute path *database*, held by *owner* (a backend) in
    this context; *errors* translates an ``OSError`` of the turns file."""
    with errors.mapped():
        fd = open_turns_file(database)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: taken at once, no thread
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    else:
        try:
            with turns.holding(owner, [WHOLE_FILE]):
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
        with errors.mapped():
            await taken
    except BaseException:
        # Cancelled while waiting: the thread may still take the lock; closing the
        # descriptor once it has returned releases it. (Its result is then never read.)
        threading.Thread(target=release_when_taken, args=(waiter,), daemon=True).start()
        raise
    try:
        with turns.holding(owner, [WHOLE_FILE]):
            yield
    finally:
        os.close(fd)  # releases the lock
