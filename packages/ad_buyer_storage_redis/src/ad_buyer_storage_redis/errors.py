"""redis-py's errors, told apart: which are ours to map (one table), which may be sent again.

* :data:`ERRORS`: redis-py's exception classes -> storage errors, most specific first, and the
  few server replies that reach us without a class of their own (a script's reply for one key
  is the server's words, ``"OOM command not allowed..."``; redis-py gives ``BUSY`` no class).
  Bound to a backend's URL it is the backend's one translator (``ErrorMap``).
* :data:`RETRY`: what may be sent again (the kit's rules, told how redis-py says "the
  connection was lost", "timed out" and "never sent").
* :func:`redis_py_faults`: an ``AttributeError`` raised inside redis-py's own code (its cluster
  client sending on a connection another task just closed) is that connection lost.
* :func:`url_refused`: the ``ValueError``/``TypeError`` redis-py raises for a URL it cannot use,
  caught at the connect call alone.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

from redis import exceptions as redis_errors
from redis.asyncio.sentinel import MasterNotFoundError

from ad_buyer_storage.errors import (
    AuthenticationError,
    BackendError,
    BusyError,
    ConfigurationError,
    InvalidValueError,
    ReadOnlyError,
    StorageError,
    StorageFullError,
    TLSError,
    UnavailableError,
)
from ad_buyer_storage.kit.errormap import NoConnection
from ad_buyer_storage.kit.errortable import ErrorTable, Row, TextRule, lost, timed_out
from ad_buyer_storage.kit.redaction import redact_url
from ad_buyer_storage.kit.retry import RetryPolicy

__all__ = ["ERRORS", "RETRY", "raised_in_redis_py", "redis_py_faults", "url_refused"]

#: Every error redis-py raises on purpose: its cluster client's own (no node reachable, a slot
#: no node serves...) do not derive from RedisError.
_DRIVER = (redis_errors.RedisError, redis_errors.RedisClusterException)
#: redis-py 5.x has no MaxConnectionsError (a full pool is told by its words there).
_POOL_FULL: tuple[type[BaseException], ...] = tuple(
    c for c in (getattr(redis_errors, "MaxConnectionsError", None),) if isinstance(c, type)
)
#: How redis-py words a pool without a free connection (the blocking pool's wait ran out, or
#: the plain pool is at its size), on versions without MaxConnectionsError.
_POOL_FULL_WORDS = ("No connection available", "Too many connections")


def _waited_for_a_connection(message: str, outcome_unknown: bool) -> StorageError:
    # Our own limiter's NoConnection (the cluster's): its words say how long and how many.
    return BusyError(message.replace(": NoConnection: ", ": ", 1))


def _not_a_cluster(message: str, outcome_unknown: bool) -> StorageError:
    return ConfigurationError(
        f"{message} (REDIS_URL names a Redis Cluster, redis+cluster:// or REDIS_CLUSTER=true, but the "
        "server is a single Redis: use redis:// and REDIS_CLUSTER=false)"
    )


def _not_redis(message: str, outcome_unknown: bool) -> StorageError:
    return BackendError(f"{message} (the server does not speak the Redis protocol: another service's port?)")


def _not_an_integer(message: str, outcome_unknown: bool) -> StorageError:
    return InvalidValueError("cannot increment: the value is not a 64-bit integer or the result would overflow")


def _no_such_database(message: str, outcome_unknown: bool) -> StorageError:
    return ConfigurationError(f"{message} (REDIS_URL names a database the server does not have)")


ERRORS = ErrorTable(
    "Redis",
    rows=(
        Row(NoConnection, _waited_for_a_connection, unchained=True),
        Row(redis_errors.AuthenticationError, AuthenticationError, unchained=True),
        Row(ssl.SSLError, TLSError, in_chain=True),  # raw, or inside redis-py's ConnectionError
        # The cluster refused the command (down, resharding, failing over): nothing was applied.
        Row(
            (redis_errors.ClusterDownError, redis_errors.TryAgainError, redis_errors.MasterDownError), UnavailableError
        ),
        Row(redis_errors.InvalidResponse, _not_redis),
        Row(redis_errors.OutOfMemoryError, StorageFullError),
        Row(redis_errors.ReadOnlyError, ReadOnlyError),
        Row(redis_errors.ResponseError, BackendError),  # the server's answer (WRONGTYPE, NOPERM...)
        Row(_POOL_FULL, BusyError),
        Row(redis_errors.TimeoutError, timed_out),
        Row(redis_errors.ConnectionError, lost),  # MasterNotFoundError and BusyLoadingError too
        Row(redis_errors.RedisClusterException, UnavailableError),  # no node reachable, slot not covered
        Row(redis_errors.RedisError, BackendError),
    ),
    text_rules=(
        TextRule("NOAUTH: the server wants credentials", _DRIVER, ("NOAUTH",), AuthenticationError, unchained=True),
        TextRule("WRONGPASS: wrong user or password", _DRIVER, ("WRONGPASS",), AuthenticationError, unchained=True),
        TextRule(
            "a cluster URL pointed at a single Redis",
            redis_errors.RedisClusterException,
            ("Cluster mode is not enabled",),
            _not_a_cluster,
            unchained=True,
        ),
        TextRule(
            "HINCRBY of a value that is not an integer",
            redis_errors.ResponseError,
            ("not an integer",),
            _not_an_integer,
            unchained=True,
        ),
        TextRule("HINCRBY beyond 64 bits", redis_errors.ResponseError, ("overflow",), _not_an_integer, unchained=True),
        TextRule(
            "SELECT of a database the server does not have",
            redis_errors.ResponseError,
            ("DB index is out of range",),
            _no_such_database,
            unchained=True,
        ),
        # A script's reply for one key holds the server's words, code first (see backend.py's _item_error).
        TextRule(
            "OOM, in a script's reply", redis_errors.ResponseError, ("OOM command not allowed",), StorageFullError
        ),
        TextRule("READONLY, in a script's reply", redis_errors.ResponseError, ("READONLY", "read only"), ReadOnlyError),
        TextRule(
            "BUSY: a script runs too long (no class in redis-py)",
            redis_errors.ResponseError,
            ("BUSY Redis is busy",),
            BusyError,
        ),
        TextRule("LOADING, in a script's reply", redis_errors.ResponseError, ("LOADING Redis is loading",), BusyError),
        *(
            TextRule(
                "no free connection in the pool (redis-py 5)",
                (redis_errors.ConnectionError, redis_errors.TimeoutError),
                (words,),
                BusyError,
            )
            for words in _POOL_FULL_WORDS
        ),
    ),
)


# -- what may be sent again ----------------------------------------------------------------------
def _pool_exhausted(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, _POOL_FULL) or any(words in text for words in _POOL_FULL_WORDS)


def _never_sent(exc: BaseException) -> bool:
    """True if the error happened while connecting: the command never left the client."""
    if isinstance(exc, MasterNotFoundError):  # no sentinel named a master: nothing was sent
        return True
    text = str(exc).lower()
    return "connecting to" in text or "connection refused" in text or _pool_exhausted(exc)


def _connection_lost(exc: BaseException) -> bool:
    """Dropped, refused or reset; not wrong credentials, nor a full pool (nothing to retry there)."""
    return (
        isinstance(exc, redis_errors.ConnectionError)
        and not isinstance(exc, redis_errors.AuthenticationError)
        and not _pool_exhausted(exc)
    )


# redis-py says by its words alone whether a command left the client.
RETRY = RetryPolicy(connection_lost=_connection_lost, timed_out=(redis_errors.TimeoutError,), never_sent=_never_sent)


# -- redis-py's own faults -----------------------------------------------------------------------
@contextlib.contextmanager
def redis_py_faults() -> Iterator[None]:
    """redis-py's asyncio cluster client may use a connection another task's failure has just
    disconnected (``'NoneType' object has no attribute 'writelines'``, seen when a cluster
    master was killed under load): an AttributeError raised in redis-py's own code is that
    connection lost under the command, and is raised as redis-py's ConnectionError, so that
    it is retried or reported like one (a pipeline's other nodes may have run their part)."""
    try:
        yield
    except AttributeError as exc:
        if not raised_in_redis_py(exc):
            raise  # ours: a bug stays a bug
        raise redis_errors.ConnectionError(f"connection closed under the command ({exc})") from exc


def raised_in_redis_py(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "redis" in Path(tb.tb_frame.f_code.co_filename).parts


# -- a URL redis-py cannot use -------------------------------------------------------------------
_UNEXPECTED_OPTION = re.compile(r"unexpected keyword argument '(\w+)'")


def url_refused(exc: ValueError | TypeError, url: str) -> ConfigurationError | None:
    """The error for the builtin redis-py raised at connect: a ``ValueError`` for a malformed
    URL, a ``TypeError`` for a URL option the kind of connection does not take (it passes
    options on as keywords). None for a ``TypeError`` that names no option: a bug stays a bug.
    redis-py's words may quote the password: the message says what to check instead."""
    if isinstance(exc, TypeError):
        option = _UNEXPECTED_OPTION.search(str(exc))
        if option is None:
            return None
        return ConfigurationError(
            f"REDIS_URL {redact_url(url)} could not be used: option {option.group(1)!r} is not one this kind of "
            "connection takes (ssl_* options need rediss://)"
        )
    return ConfigurationError(
        f"REDIS_URL {redact_url(url)} could not be used ({type(exc).__name__}); expected "
        "redis://host:6379/0 (credentials before an @), rediss://..., unix:///path.sock or "
        "redis+sentinel://host:26379,host:26380/service/0"
    )
