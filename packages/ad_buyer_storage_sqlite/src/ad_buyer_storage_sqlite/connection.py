"""Opening aiosqlite's connection: the private worker hook a commit runs on, checked; the
worker thread made a daemon; the pragmas every connection starts with.

aiosqlite runs every call as a function on its worker thread (``Connection._execute``, with the
sqlite3 connection as ``Connection._conn``): a transaction uses the same hook to run as one step.
Both are private, in every release from 0.20 to 0.22 (our range stops there), and were one to
lack them, ``connect()`` fails loudly rather than run transactions unsafely or quietly stop
claiming them.
"""

from __future__ import annotations

import importlib.metadata
import threading

import aiosqlite

from ad_buyer_storage.errors import ConfigurationError

__all__ = ["check_worker_hooks", "missing_worker_hooks", "open_connection", "pragmas"]

_WORKER_HOOKS = ("_execute", "_conn")


def missing_worker_hooks() -> list[str]:
    return [name for name in _WORKER_HOOKS if not hasattr(aiosqlite.Connection, name)]


def check_worker_hooks() -> None:
    """A ``ConfigurationError`` naming the release to install if this aiosqlite lacks the hook."""
    if missing := missing_worker_hooks():
        version = importlib.metadata.version("aiosqlite")
        raise ConfigurationError(
            f"aiosqlite {version} lacks Connection.{', Connection.'.join(missing)}, on which this backend runs "
            "a transaction as one step: install a release ad-buyer-storage-sqlite supports (aiosqlite>=0.20,<0.23)"
        )


async def open_connection(target: str, *, uri: bool, busy_timeout: float) -> aiosqlite.Connection:
    """An autocommit connection to *target* (a path, or a ``file:`` URI if *uri*)."""
    connection = aiosqlite.connect(target, isolation_level=None, timeout=busy_timeout, check_same_thread=False, uri=uri)
    # aiosqlite's worker thread is non-daemon: a connection never closed would keep the
    # interpreter from exiting. Committed statements are already in the WAL, so a daemon
    # thread loses nothing when the process ends.
    # Up to 0.21 the connection is its worker thread; from 0.22 it holds one (private `_thread`).
    worker = connection if isinstance(connection, threading.Thread) else getattr(connection, "_thread", None)
    if isinstance(worker, threading.Thread) and not worker.is_alive():
        worker.daemon = True
    return await connection


def pragmas(*, busy_timeout: float, in_memory: bool, read_only: bool, synchronous: str) -> list[str]:
    """The pragmas a new connection runs: the busy timeout; WAL and ``synchronous`` for a file it writes."""
    setup = [f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}"]
    if not in_memory and not read_only:
        setup += ["PRAGMA journal_mode = WAL", f"PRAGMA synchronous = {synchronous}"]
    return setup
