"""asyncpg's errors, and the socket and TLS errors it lets through, mapped to ours by one table.

:data:`TABLE` lists driver classes -> storage errors, most specific first, and the few named
text rules for replies that have no class of their own (a refused TLS upgrade is a plain
``ConnectionError``; a TLS file asyncpg cannot use is a ``ClientConfigurationError`` like any
other). What a refused TLS upgrade means depends on the URL, not on the error: a
:class:`~ad_buyer_storage.errors.TLSError` when the URL (or ``PGSSLMODE``) insists on TLS,
else a server that does not speak PostgreSQL; :func:`bind` picks :data:`TLS_TABLE` for those
URLs. Only the classes named here are caught (:data:`DRIVER_ERRORS`); the builtin
``ValueError`` asyncpg raises for a URL its parser chokes on is caught only around the calls
that parse one (``errors.mapped(also=URL_PARSE_ERRORS)``).

:data:`RETRY` says which of them may be sent again (the kit's :class:`RetryPolicy`).
"""

from __future__ import annotations

import ssl

import asyncpg

from ad_buyer_storage.errors import (
    AuthenticationError,
    BackendError,
    BusyError,
    ConfigurationError,
    ReadOnlyError,
    StorageError,
    StorageFullError,
    StorageTimeoutError,
    TLSError,
)
from ad_buyer_storage.kit.errormap import ErrorMap, NoConnection, Translator
from ad_buyer_storage.kit.errortable import ErrorTable, Row, TextRule, lost, timed_out
from ad_buyer_storage.kit.retry import RetryPolicy

from .dsn import tls_required

__all__ = [
    "CONNECTION_LOST",
    "DRIVER_ERRORS",
    "RETRY",
    "ROLLED_BACK",
    "TABLE",
    "TLS_TABLE",
    "URL_PARSE_ERRORS",
    "PoolExhausted",
    "SlowConnect",
    "bind",
    "error_map",
]

pg = asyncpg.exceptions

# Errors after which the statement certainly did not run: safe to send anything again.
NOT_SENT = (pg.CannotConnectNowError, pg.TooManyConnectionsError)
# The server rolled the statement back to break a deadlock or a serialization conflict: it
# certainly did not apply, so it may be sent again whatever it does.
ROLLED_BACK = (pg.DeadlockDetectedError, pg.SerializationError)
# A dropped connection: the statement may or may not have run.
CONNECTION_LOST = (
    pg.ConnectionDoesNotExistError,
    pg.ConnectionFailureError,
    pg.AdminShutdownError,
    pg.CrashShutdownError,
    # A backend terminated mid-statement can leave asyncpg's protocol out of step ("cannot
    # switch to state 12; another operation is in progress"): that connection is as good as
    # lost (seen in our F4 test; MagicStack/asyncpg#1069).
    pg.InternalClientError,
    ConnectionError,
    OSError,
)
# TimeoutError is an OSError: the policy tests for timeouts first, and never resends one.
RETRY = RetryPolicy(
    connection_lost=(*CONNECTION_LOST, *NOT_SENT),
    timed_out=(TimeoutError,),
    never_sent=NOT_SENT,
    rolled_back=ROLLED_BACK,
    rolled_back_retries=5,
)
#: Raised by asyncpg, as the builtin, for a URL its parser (urllib's) cannot read (``[::1``):
#: caught only around the calls that open connections, never as a blanket.
URL_PARSE_ERRORS: tuple[type[BaseException], ...] = (ValueError,)


class PoolExhausted(NoConnection):
    """Every pooled connection stayed in use for the whole wait."""

    def __init__(self, message: str) -> None:
        super().__init__(message, busy=True)


class SlowConnect(NoConnection):
    """The pool had room, but opening a new connection took the whole wait."""

    def __init__(self, message: str) -> None:
        super().__init__(message, busy=False)


def _rolled_back(message: str, outcome_unknown: bool) -> StorageError:
    return BusyError(f"{message} (rolled back each time it was tried)")


def _unusable_url(message: str, outcome_unknown: bool) -> StorageError:
    # The parser's own words may quote a piece of the password: keep the kit's
    # "PostgreSQL <URL, redacted>: <class>" and say what to check instead of the words.
    where, _, rest = message.partition(": ")
    kind = rest.partition(": ")[0]
    return ConfigurationError(
        f"{where} could not be used ({kind}); expected postgresql://user:password@host:5432/database "
        "with a numeric port"
    )


def _not_postgres(message: str, outcome_unknown: bool) -> StorageError:
    # Without sslmode=require asyncpg still asks for TLS first: a PostgreSQL server answers
    # yes or no, anything else is another kind of server.
    return BackendError(f"{message} (the server does not speak the PostgreSQL protocol: another service's port?)")


def _tls_refused(message: str, outcome_unknown: bool) -> StorageError:
    return TLSError(f"{message} (the URL requires TLS)")


ROWS = (
    Row(PoolExhausted, BusyError, unchained=True),  # our pool wait gave up
    Row(SlowConnect, StorageTimeoutError, unchained=True),
    Row(pg.InvalidAuthorizationSpecificationError, AuthenticationError, unchained=True),  # InvalidPasswordError too
    Row(ssl.SSLError, TLSError),  # an OSError: before the lost connections
    Row(pg.TooManyConnectionsError, BusyError),
    Row((pg.DiskFullError, pg.OutOfMemoryError), StorageFullError),
    Row(pg.ReadOnlySQLTransactionError, ReadOnlyError),
    Row((pg.QueryCanceledError, TimeoutError), timed_out),  # TimeoutError is an OSError too
    Row((*CONNECTION_LOST, pg.CannotConnectNowError), lost),
    Row(ROLLED_BACK, _rolled_back),
    Row(pg.InvalidCatalogNameError, ConfigurationError, unchained=True),  # no such database
    Row((pg.ClientConfigurationError, *URL_PARSE_ERRORS), _unusable_url, unchained=True),
    Row((pg.PostgresError, pg.InterfaceError), BackendError),  # any other server or driver error
)
_TLS_FILES = (
    # A certificate or key file asyncpg cannot use: its words name the file, not a secret.
    TextRule("TLS file (certificate)", pg.ClientConfigurationError, ("certificate",), ConfigurationError, True),
    TextRule("TLS setting (ssl...)", pg.ClientConfigurationError, ("ssl",), ConfigurationError, True),
)
_UPGRADE_REFUSED = ("rejected SSL upgrade",)
_UPGRADE_ERROR = ("error response during SSL exchange",)

#: The table for URLs that do not insist on TLS (asyncpg still tries it first).
TABLE = ErrorTable(
    "PostgreSQL",
    rows=ROWS,
    text_rules=(
        TextRule("TLS upgrade refused", ConnectionError, _UPGRADE_REFUSED, _not_postgres),
        TextRule("TLS upgrade answered with an error", ConnectionError, _UPGRADE_ERROR, _not_postgres),
        *_TLS_FILES,
    ),
)
#: The table for URLs that insist on TLS (``sslmode=require``, ``verify-ca``, ``verify-full``).
TLS_TABLE = ErrorTable(
    "PostgreSQL",
    rows=ROWS,
    text_rules=(
        TextRule("TLS upgrade refused", ConnectionError, _UPGRADE_REFUSED, _tls_refused),
        TextRule("TLS upgrade answered with an error", ConnectionError, _UPGRADE_ERROR, _tls_refused),
        *_TLS_FILES,
    ),
)
#: What the backend's maps catch: every class the table names but the builtin ValueError.
DRIVER_ERRORS = tuple(cls for cls in TABLE.driver_errors if cls not in URL_PARSE_ERRORS)


def bind(url: str) -> Translator:
    """The translator for the server at *url*: :data:`TLS_TABLE` if it insists on TLS (read at
    each error, as asyncpg reads ``PGSSLMODE`` at each connect), else :data:`TABLE`."""

    def translate(exc: BaseException, /, *, outcome_unknown: bool) -> StorageError:
        table = TLS_TABLE if tls_required(url) else TABLE
        return table.translate(exc, url, outcome_unknown=outcome_unknown)

    return translate


def error_map(url: str, secrets: tuple[str | None, ...]) -> ErrorMap:
    """The map of errors of the server at *url*, hiding every one of *secrets* (all the URLs)."""
    return ErrorMap(bind(url), DRIVER_ERRORS, secrets=secrets)
