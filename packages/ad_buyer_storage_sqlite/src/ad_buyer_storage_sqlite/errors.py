"""SQLite's errors mapped to ours by one table, in one place.

Two kinds of rows, both first-match, most specific first:

* :data:`RESULT_CODES`: SQLite's own classes of error are its primary result codes, and sqlite3
  raises most of them as one Python class (``OperationalError``), telling the code in
  ``sqlite_errorcode``. So for a ``sqlite3.Error`` the code is the class, looked up here first;
* :data:`ERRORS`: the driver's classes (:class:`~ad_buyer_storage.kit.errortable.ErrorTable`):
  any other ``sqlite3.Error`` (a constraint, a corrupt file, a misuse) is a ``BackendError``; an
  ``OSError`` is the database file (or its ``-turns`` file) that could not be created.

No text rules: every SQLite reply has a code. Only these classes are caught (``ERRORS.driver_errors``);
a bug stays a bug. aiosqlite's one builtin, the ``ValueError`` it raises for a call on a closed
connection, is not in the table: :func:`raise_if_closed` catches it narrowly where a call is made.
No outcome is ever unknown: SQLite runs in this process and never loses a reply.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from ad_buyer_storage.errors import (
    BackendError,
    BusyError,
    NotConnectedError,
    ReadOnlyError,
    StorageError,
    StorageFullError,
    UnavailableError,
)
from ad_buyer_storage.kit.errormap import Translator
from ad_buyer_storage.kit.errortable import ErrorTable, Row

from .paths import on_read_only_file_system

__all__ = ["ERRORS", "RESULT_CODES", "ResultCode", "raise_if_closed", "translate", "translator"]


class ResultCode(NamedTuple):
    """Primary result codes (``sqlite_errorcode & 0xFF``) -> our error; *name* for readers."""

    name: str
    codes: tuple[int, ...]
    error: type[StorageError]


RESULT_CODES: tuple[ResultCode, ...] = (
    ResultCode("another connection holds the lock", (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED), BusyError),
    ResultCode("disk full", (sqlite3.SQLITE_FULL,), StorageFullError),
    ResultCode("read-only database", (sqlite3.SQLITE_READONLY,), ReadOnlyError),
    # On a file system mounted read-only, SQLite says only "unable to open" (a WAL database
    # needs its -shm file beside it): translate() makes that a ReadOnlyError.
    ResultCode(
        "cannot open or read the file",
        (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_PERM),
        UnavailableError,
    ),
)

ERRORS = ErrorTable(
    "SQLite",
    rows=(
        Row(sqlite3.Error, BackendError),  # a code not above, or none
        Row(OSError, UnavailableError),  # creating the database file or its -turns file
    ),
)

#: What aiosqlite says, with a plain ValueError, for a call on a connection that is closed.
_CLOSED = ("Connection closed", "no active connection")


def _result_code(exc: BaseException) -> ResultCode | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or not isinstance(code, int):
        return None
    return next((row for row in RESULT_CODES if code & 0xFF in row.codes), None)


def translate(exc: BaseException, path: str) -> StorageError:
    """The storage error for a driver error of the database at *path* (returned, never raised)."""
    if isinstance(exc, OSError):
        return UnavailableError(f"cannot create SQLite database {path}: {exc.strerror}")
    message = f"SQLite {path}: {exc}"
    code = _result_code(exc)
    if code is not None:
        if code.error is UnavailableError and on_read_only_file_system(path):
            return ReadOnlyError(f"{message} (the file system holding it is mounted read-only)")
        return code.error(message)
    row = ERRORS.rule_for(exc)
    error: type[StorageError] = row.error if row is not None and isinstance(row.error, type) else ERRORS.fallback
    return error(message)


def translator(path: str) -> Translator:
    """The backend's translator for the database at *path* (no secret: a path is no URL)."""

    def bound(exc: BaseException, /, *, outcome_unknown: bool) -> StorageError:
        return translate(exc, path)

    return bound


def raise_if_closed(exc: ValueError) -> None:
    """Raise ``NotConnectedError`` if *exc* is aiosqlite's closed connection; else return (the
    caller re-raises it: any other ValueError is a bug, never a storage error)."""
    if type(exc) is ValueError and str(exc) in _CLOSED:
        raise NotConnectedError("the SQLite connection is closed") from exc
