"""Errors that are both ours and the ``sqlite3`` classes upstream's callers catch.

The buyer agent keeps its flows running by catching ``sqlite3.Error`` (ten places at v2.4.2)
and expects ``sqlite3.IntegrityError`` for a duplicate key or a missing parent row. Through the
facade, every error of ad-buyer-storage comes out as a class deriving from *both* the error
raised (``except UnavailableError`` keeps working) and the ``sqlite3`` class SQLite would have
raised in that situation, so an outage of PostgreSQL or Redis degrades the agent exactly as a
locked SQLite file did:

=====================================================  ===============================
ours                                                   also
=====================================================  ===============================
:class:`IntegrityError` (a constraint of upstream's     ``sqlite3.IntegrityError``
schema: UNIQUE, FOREIGN KEY, NOT NULL)
``UnavailableError`` (timeouts, busy, breaker open),   ``sqlite3.OperationalError``
``TransactionConflictError`` after the last retry,     (SQLite's "database is locked",
``AuthenticationError``, ``TLSError``,                 "unable to open database file",
``ConfigurationError``, full, read-only, outcome       "database or disk is full")
unknown
``InvalidInputError`` (a value no store can hold),     ``sqlite3.ProgrammingError``
``LifecycleError`` (used before connect, after close)  (as binding an unsupported type or
                                                       using a closed connection)
``UnsupportedOperationError``                          ``sqlite3.NotSupportedError``
any other ``StorageError``                             ``sqlite3.DatabaseError``
=====================================================  ===============================

Only our own errors are translated; anything else (a ``KeyError`` upstream raises on purpose,
the host state machine's ``InvalidTransitionError``, a bug) comes out unchanged.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ad_buyer_storage.errors import (
    AuthenticationError,
    BackendError,
    ConfigurationError,
    InvalidInputError,
    LifecycleError,
    StorageError,
    TLSError,
    UnavailableError,
    UnsupportedOperationError,
    VersionConflictError,
)

__all__ = ["IntegrityError", "NotSupportedError", "ProgrammingError", "sqlite_class_for", "translate"]


class IntegrityError(StorageError, sqlite3.IntegrityError):
    """A constraint of upstream's schema would be broken (UNIQUE, FOREIGN KEY, NOT NULL,
    PRIMARY KEY); nothing was written. Its message is SQLite's (``UNIQUE constraint failed:
    deals.id``), so code matching on it keeps working."""


class ProgrammingError(StorageError, sqlite3.ProgrammingError):
    """A misuse SQLite reports as ``ProgrammingError``: a value of a type no column holds, a
    store used before ``connect()`` or after ``disconnect()``."""


class NotSupportedError(StorageError, sqlite3.NotSupportedError):
    """Something only SQLite itself can do: the schema's DDL and migration functions on a raw
    ``sqlite3`` connection (see the README's documented exceptions)."""


# The order matters: the first base the error is an instance of wins.
_MAPPING: tuple[tuple[type[BaseException], type[sqlite3.Error]], ...] = (
    (InvalidInputError, sqlite3.ProgrammingError),
    (LifecycleError, sqlite3.ProgrammingError),
    (UnsupportedOperationError, sqlite3.NotSupportedError),
    (VersionConflictError, sqlite3.OperationalError),
    (UnavailableError, sqlite3.OperationalError),
    (AuthenticationError, sqlite3.OperationalError),
    (TLSError, sqlite3.OperationalError),
    (ConfigurationError, sqlite3.OperationalError),
    (BackendError, sqlite3.OperationalError),
    (StorageError, sqlite3.DatabaseError),
)
_classes: dict[type[BaseException], type[BaseException]] = {}


def sqlite_class_for(error: type[BaseException]) -> type[sqlite3.Error]:
    """The ``sqlite3`` class an error of ours is also raised as."""
    for ours, theirs in _MAPPING:
        if issubclass(error, ours):
            return theirs
    return sqlite3.DatabaseError


def _dual(cls: type[BaseException]) -> type[BaseException]:
    dual = _classes.get(cls)
    if dual is None:
        theirs = sqlite_class_for(cls)
        namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": cls.__qualname__}
        dual = type(cls.__name__, (cls, theirs), namespace)
        _classes[cls] = dual
    return dual


def translate(exc: BaseException) -> BaseException:
    """*exc* as the matching dual class if it is ours and not yet a ``sqlite3`` error; else
    *exc* itself. The copy keeps the message, the attributes and the cause."""
    if not isinstance(exc, StorageError) or isinstance(exc, sqlite3.Error):
        return exc
    cls = _dual(type(exc))
    copy = cls.__new__(cls)
    copy.args = exc.args
    copy.__dict__.update(exc.__dict__)
    copy.__cause__ = exc.__cause__
    copy.__traceback__ = exc.__traceback__
    return copy
