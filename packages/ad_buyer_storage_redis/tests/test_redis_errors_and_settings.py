"""The Redis error table (redis-py's errors -> ours) and the backend built from its settings model."""

from __future__ import annotations

import ssl

import pytest
from redis import exceptions as redis_errors
from redis.asyncio.sentinel import MasterNotFoundError

from ad_buyer_storage import Storage
from ad_buyer_storage.errors import (
    AuthenticationError,
    BackendError,
    BusyError,
    ConfigurationError,
    InvalidValueError,
    OutcomeUnknownError,
    ReadOnlyError,
    StorageError,
    StorageFullError,
    StorageTimeoutError,
    TLSError,
    UnavailableError,
)
from ad_buyer_storage.kit.errormap import NoConnection
from ad_buyer_storage_redis import RedisBackend, RedisClusterBackend
from ad_buyer_storage_redis.errors import ERRORS
from ad_buyer_storage_redis.factory import create_backend
from ad_buyer_storage_redis.settings import RedisSettings
from tests._support.servers import redis_server

URL = "redis://:S3cret-pw@127.0.0.1:6379/0"


def _wrapped_ssl() -> redis_errors.ConnectionError:
    error = redis_errors.ConnectionError("Error 1 connecting to 127.0.0.1:6380")
    error.__cause__ = ssl.SSLError("certificate verify failed")
    return error


# What the translator gave before the table (its 61-line if-ladder), case by case; the rows
# marked "class" are redis-py's own classes, which the ladder missed (a BackendError then).
CASES = [
    (NoConnection("all 50 connections busy for 5.0 s", busy=True), False, BusyError),
    (redis_errors.AuthenticationError("invalid username-password pair"), False, AuthenticationError),
    (redis_errors.RedisClusterException("cannot connect: WRONGPASS invalid username-password"), False,
     AuthenticationError),
    (redis_errors.ResponseError("NOAUTH Authentication required."), False, AuthenticationError),
    (_wrapped_ssl(), False, TLSError),
    (redis_errors.RedisClusterException("Cluster mode is not enabled on this node"), False, ConfigurationError),
    (redis_errors.ClusterDownError("The cluster is down"), False, UnavailableError),
    (redis_errors.TryAgainError("Multiple keys request during rehashing of slot"), False, UnavailableError),
    (redis_errors.MasterDownError("Link with MASTER is down"), False, UnavailableError),
    (redis_errors.InvalidResponse("Protocol Error: b'H'"), False, BackendError),
    (redis_errors.ResponseError("ERR hash value is not an integer"), False, InvalidValueError),
    (redis_errors.ResponseError("ERR increment or decrement would overflow"), False, InvalidValueError),
    (redis_errors.ResponseError("ERR DB index is out of range"), False, ConfigurationError),
    (redis_errors.ResponseError("OOM command not allowed when used memory > 'maxmemory'."), False, StorageFullError),
    (redis_errors.ResponseError("READONLY You can't write against a read only replica."), False, ReadOnlyError),
    (redis_errors.ResponseError("BUSY Redis is busy running a script."), False, BusyError),
    (redis_errors.ResponseError("LOADING Redis is loading the dataset in memory"), False, BusyError),
    (redis_errors.ResponseError("WRONGTYPE Operation against a key"), False, BackendError),
    (redis_errors.ResponseError("ERR something else, a room full of words"), False, BackendError),
    (redis_errors.NoPermissionError("this user has no permissions"), False, BackendError),
    (redis_errors.ConnectionError("No connection available."), True, BusyError),
    (redis_errors.ConnectionError("Too many connections"), True, BusyError),
    (redis_errors.TimeoutError("Timeout reading from socket"), False, StorageTimeoutError),
    (redis_errors.TimeoutError("Timeout reading from socket"), True, OutcomeUnknownError),
    (redis_errors.ConnectionError("Connection closed by server."), False, UnavailableError),
    (redis_errors.ConnectionError("Connection closed by server."), True, OutcomeUnknownError),
    (MasterNotFoundError("No master found for 'mymaster'"), False, UnavailableError),
    (redis_errors.BusyLoadingError("Redis is loading the dataset in memory"), False, UnavailableError),
    (redis_errors.RedisClusterException("Redis Cluster cannot be connected"), False, UnavailableError),
    (redis_errors.DataError("Invalid input of type: 'dict'"), False, BackendError),
    # class: redis-py strips the code from a reply it gives a class ("OOM ..." -> OutOfMemoryError(...))
    (redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), False, StorageFullError),
    (redis_errors.ReadOnlyError("You can't write against a read only replica."), False, ReadOnlyError),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "outcome_unknown", "expected"), CASES, ids=lambda v: repr(v)[:60])
def test_each_redis_error_becomes_the_storage_error_it_means(exc, outcome_unknown, expected) -> None:
    error = ERRORS.translate(exc, URL, outcome_unknown=outcome_unknown)
    assert type(error) is expected
    assert "S3cret-pw" not in str(error)


def test_custom_messages_say_what_to_do() -> None:
    def said(exc: BaseException) -> str:
        return str(ERRORS.translate(exc, URL, outcome_unknown=False))

    assert said(NoConnection("all 50 connections busy for 5.0 s", busy=True)) == (
        "Redis redis://:***@127.0.0.1:6379/0: all 50 connections busy for 5.0 s"
    )
    assert "REDIS_CLUSTER=false" in said(redis_errors.RedisClusterException("Cluster mode is not enabled"))
    assert "another service's port" in said(redis_errors.InvalidResponse("Protocol Error"))
    assert said(redis_errors.ResponseError("ERR hash value is not an integer")).startswith("cannot increment")
    assert "a database the server does not have" in said(redis_errors.ResponseError("ERR DB index is out of range"))


def test_only_the_drivers_errors_are_caught() -> None:
    """No builtin beyond the ssl errors redis-py lets through: a ValueError or TypeError of
    ours (a bug) is never translated; the URL's are caught at connect alone."""
    caught = ERRORS.driver_errors
    assert ValueError not in caught
    assert TypeError not in caught
    assert Exception not in caught
    assert set(caught) <= {NoConnection, ssl.SSLError, redis_errors.RedisClusterException} | {
        c for c in caught if issubclass(c, redis_errors.RedisError)
    }


async def test_a_server_out_of_memory_is_storage_full_and_a_replica_read_only(tmp_path) -> None:
    """redis-py gives OOM and READONLY replies classes of their own (with the code cut off the
    message): they were a plain BackendError before the table had rows for them."""

    async def fill(url: str) -> None:
        async with Storage(RedisBackend(url, key_prefix="full:")) as storage:
            for i in range(100_000):
                await storage.incr(f"n{i}")

    with (
        redis_server(tmp_path / "full", "--maxmemory", "1mb", "--maxmemory-policy", "noeviction") as server,
        pytest.raises(StorageFullError, match="maxmemory"),
    ):
        await fill(server.url)
    with (
        redis_server(tmp_path / "replica", "--replicaof", "127.0.0.1", "1") as replica,
        pytest.raises(ReadOnlyError, match="read only replica"),
    ):
        await Storage(RedisBackend(replica.url, key_prefix="ro:")).connect()  # registering writes


# -- settings ---------------------------------------------------------------------------------
def test_a_direct_constructor_reads_no_environment(monkeypatch) -> None:
    monkeypatch.setenv("REDIS_KEY_PREFIX", "from-env:")
    monkeypatch.setenv("REDIS_SCAN_COUNT", "7")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    backend = RedisBackend("redis://127.0.0.1:6379/0", max_connections=3)
    assert backend.settings == RedisSettings.model_validate(
        {"url": "redis://127.0.0.1:6379/0", "key_prefix": "ad_buyer:", "max_connections": 3, "scan_count": 1000}
    )
    assert backend.key_prefix == "ad_buyer:"
    assert RedisSettings().key_prefix == "from-env:"  # type: ignore[call-arg]  # the model itself still reads it


def test_the_model_is_used_as_given_and_the_factory_passes_it(monkeypatch) -> None:
    model = RedisSettings(url="redis://127.0.0.1:6379/0", key_prefix="given:", scan_count=5)  # type: ignore[call-arg]
    assert RedisBackend(model).settings is model
    assert RedisBackend(model, scan_count=6).settings.scan_count == 6
    monkeypatch.setenv("REDIS_KEY_PREFIX", "env-prefix:")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    from ad_buyer_storage.plugins.settings import load_settings  # noqa: PLC0415

    built = create_backend(load_settings(), scan_count=9)
    assert isinstance(built, RedisBackend)
    assert (built.key_prefix, built.settings.scan_count) == ("env-prefix:", 9)
    assert isinstance(create_backend(load_settings(), cluster=True), RedisClusterBackend)


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"key_prefx": "a:"}, "did you mean 'key_prefix'"),
        ({"max_connection": 3}, "did you mean 'max_connections'"),
        ({"nonsense": 1}, "valid: cluster, health_check_interval"),
        ({"url": "redis://h/0"}, "given twice"),
        ({"key_prefix": ""}, "must not be empty"),
        ({"max_connections": 0}, "REDIS_MAX_CONNECTIONS"),
        ({"cluster": True}, "RedisClusterBackend"),
    ],
)
def test_a_wrong_field_is_a_configuration_error(fields, said) -> None:
    with pytest.raises(ConfigurationError, match=said) as info:
        RedisBackend("redis://:S3cret-pw@127.0.0.1:6379/0", **fields)
    assert "S3cret-pw" not in str(info.value)
    assert info.value.__context__ is None or not isinstance(info.value.__context__, StorageError)


def test_a_url_is_needed() -> None:
    with pytest.raises(ConfigurationError, match="needs REDIS_URL"):
        RedisBackend(RedisSettings(url=None))  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis://:S3cret-pw@127.0.0.1:6379/0?ssl_ca_certs=/ca.pem", "option 'ssl_ca_certs' is not one this kind"),
        ("redis://:S3cret-pw@127.0.0.1:notaport/0", r"could not be used \(ValueError\)"),
        ("redis+sentinel://:S3cret-pw@127.0.0.1:1/mymaster/notadb", r"could not be used \(ValueError\)"),
    ],
)
async def test_a_url_redis_py_cannot_use_is_a_configuration_error_at_connect(url: str, said: str) -> None:
    """redis-py's ValueError/TypeError, caught at the connect call only, unchained: its words
    may quote the password."""
    backend = RedisBackend(url)
    with pytest.raises(ConfigurationError, match=said) as info:
        await backend.connect()
    assert "S3cret-pw" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


async def test_a_type_error_of_our_own_at_connect_stays_a_type_error(monkeypatch) -> None:
    """Only a TypeError naming an unexpected keyword is the URL's: any other is a bug, raised as is."""
    backend = RedisBackend("redis://127.0.0.1:6379/0")

    async def broken() -> None:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(backend, "_open", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        await backend.connect()
