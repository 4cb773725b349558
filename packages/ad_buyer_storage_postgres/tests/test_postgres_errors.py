"""asyncpg's errors through the one table (errors.py): each row, the text rules, and that nothing
but the driver's own classes is caught. No server needed."""

from __future__ import annotations

import ssl

import asyncpg
import pytest

from ad_buyer_storage.errors import (
    AuthenticationError,
    BackendError,
    BusyError,
    ConfigurationError,
    OutcomeUnknownError,
    ReadOnlyError,
    StorageError,
    StorageFullError,
    StorageTimeoutError,
    TLSError,
    UnavailableError,
)
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_postgres.errors import DRIVER_ERRORS, PoolExhausted, SlowConnect, bind

pg = asyncpg.exceptions
URL = "postgresql://app:s3cret@127.0.0.1:1/db"
TLS_URL = URL + "?sslmode=require"
REJECTED = ConnectionError('PostgreSQL server at "127.0.0.1:1" rejected SSL upgrade')


@pytest.mark.parametrize(
    ("url", "error", "expected", "words"),
    [
        (URL, PoolExhausted("no free connection among 2 within 1.0 s"), BusyError, "no free connection among 2"),
        (URL, SlowConnect("no connection within 1.0 s"), StorageTimeoutError, "no connection within"),
        (URL, pg.InvalidPasswordError("password authentication failed"), AuthenticationError, "password"),
        (URL, ssl.SSLError("certificate verify failed"), TLSError, "verify failed"),
        (URL, REJECTED, BackendError, "does not speak the PostgreSQL protocol"),
        (TLS_URL, REJECTED, TLSError, "the URL requires TLS"),
        (URL, pg.ClientConfigurationError("`sslmode` parameter must be one of"), ConfigurationError, "sslmode"),
        (URL, pg.TooManyConnectionsError("too many clients"), BusyError, "too many"),
        (URL, pg.DiskFullError("could not extend file"), StorageFullError, "extend"),
        (URL, pg.ReadOnlySQLTransactionError("read-only transaction"), ReadOnlyError, "read-only"),
        (URL, pg.QueryCanceledError("statement timeout"), StorageTimeoutError, "statement timeout"),
        (URL, TimeoutError(), StorageTimeoutError, "TimeoutError"),
        (URL, pg.ConnectionDoesNotExistError("connection was closed"), UnavailableError, "closed"),
        (URL, ConnectionResetError("reset by peer"), UnavailableError, "reset"),
        (URL, pg.DeadlockDetectedError("deadlock detected"), BusyError, "rolled back each time"),
        (URL, pg.InvalidCatalogNameError('database "db" does not exist'), ConfigurationError, "does not exist"),
        (URL, ValueError("Invalid IPv6 URL s3c"), ConfigurationError, "could not be used (ValueError)"),
        (URL, pg.UniqueViolationError("duplicate key"), BackendError, "duplicate key"),
    ],
)
def test_each_row_of_the_table(url: str, error: BaseException, expected: type[StorageError], words: str) -> None:
    translated = bind(url)(error, outcome_unknown=False)
    assert type(translated) is expected
    assert words in str(translated)
    assert "s3cret" not in str(translated)
    assert str(translated).startswith("PostgreSQL postgresql://app:***@127.0.0.1:1/db")


def test_a_malformed_urls_own_words_are_never_repeated() -> None:
    """The parser's words may quote a piece of the password: the message says what to check."""
    translated = bind(URL)(ValueError("Invalid IPv6 URL near 's3c'"), outcome_unknown=False)
    assert "s3c" not in str(translated)
    assert translated.__suppress_context__


def test_a_lost_connection_under_a_write_leaves_its_outcome_unknown() -> None:
    for error in (TimeoutError(), pg.ConnectionDoesNotExistError("closed"), OSError("broken pipe")):
        assert type(bind(URL)(error, outcome_unknown=True)) is OutcomeUnknownError


def test_only_the_drivers_own_classes_are_caught() -> None:
    assert not {ValueError, Exception, KeyError, AttributeError} & set(DRIVER_ERRORS)
    assert {pg.PostgresError, pg.InterfaceError, OSError, ssl.SSLError, TimeoutError} <= set(DRIVER_ERRORS)


@pytest.mark.parametrize("bug", [KeyError("ours"), ValueError("ours"), AttributeError("ours")])
async def test_a_bug_stays_a_bug(monkeypatch: pytest.MonkeyPatch, bug: Exception) -> None:
    """A statement function of ours raising is not dressed as a driver's or server's error (the
    map caught Exception before: a KeyError came out as BackendError)."""
    backend = PostgresBackend(URL, sweep_interval=None)
    backend._pool = object()  # "connected": the policy hands the function a connection it never uses

    async def use(_conn: object) -> None:
        raise bug

    class Connection:
        async def __aenter__(self) -> object:
            return object()

        async def __aexit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(backend, "_connection", Connection)
    with pytest.raises(type(bug), match="ours"):
        await backend._call(use, idempotent=True)


async def test_a_url_asyncpg_cannot_parse_is_a_configuration_error_at_connect() -> None:
    """urllib (inside asyncpg) raises the builtin ValueError for it: caught at the connect call."""
    backend = PostgresBackend("postgresql://app:s3cret@[::1/db", sweep_interval=None, connect_timeout=1)
    with pytest.raises(ConfigurationError, match="could not be used") as info:
        await backend.connect()
    assert "s3cret" not in str(info.value)
