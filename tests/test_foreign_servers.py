"""A URL pointed at the wrong thing, or holding what its driver cannot take: always a typed,
redacted error, never a raw TypeError/ValueError, and a TLSError only when TLS was asked for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ad_buyer_storage import (
    BackendError,
    ConfigurationError,
    StorageError,
    TLSError,
    UnavailableError,
    get_storage_backend,
    open_storage,
)

SECRET = "F0reign-S3cret"


@pytest.fixture
async def garbage_port() -> AsyncIterator[int]:
    """A server that answers anything with a line of HTTP, as a web server on the wrong port does."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(100)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def _refusal(url: str, **overrides: object) -> StorageError:
    with pytest.raises(StorageError) as info:
        async with open_storage(url, storage_connect_timeout=1, **overrides):
            pass
    assert SECRET not in repr(info.value) + str(info.value.__cause__ or "")
    return info.value


@pytest.mark.parametrize("query", ["", "?sslmode=prefer", "?sslmode=allow"])
async def test_postgres_url_at_a_server_that_is_not_postgres(garbage_port: int, query: str) -> None:
    error = await _refusal(f"postgresql://app:{SECRET}@127.0.0.1:{garbage_port}/db{query}")
    assert type(error) is BackendError, repr(error)  # not a TLSError: no TLS was asked for
    assert "does not speak the PostgreSQL protocol" in str(error)


@pytest.mark.parametrize(("query", "pgsslmode"), [("?sslmode=require", None), ("", "require")])
async def test_postgres_url_requiring_tls_at_a_server_without_it(garbage_port, monkeypatch, query, pgsslmode) -> None:
    if pgsslmode:
        monkeypatch.setenv("PGSSLMODE", pgsslmode)  # asyncpg reads it too
    error = await _refusal(f"postgresql://app:{SECRET}@127.0.0.1:{garbage_port}/db{query}")
    assert type(error) is TLSError, repr(error)


async def test_postgres_url_at_the_redis_port() -> None:
    error = await _refusal(f"postgresql://app:{SECRET}@127.0.0.1:6379/db")
    assert isinstance(error, UnavailableError | BackendError), repr(error)
    assert not isinstance(error, TLSError)


async def test_redis_url_at_a_server_that_is_not_redis(garbage_port: int) -> None:
    error = await _refusal(f"redis://:{SECRET}@127.0.0.1:{garbage_port}/0")
    assert type(error) is BackendError, repr(error)
    assert "does not speak the Redis protocol" in str(error)


async def test_redis_url_at_the_postgres_port() -> None:
    error = await _refusal(f"redis://:{SECRET}@127.0.0.1:5432/0")
    assert isinstance(error, UnavailableError | BackendError), repr(error)


@pytest.mark.parametrize("option", ["ssl_cert_reqs=none", "no_such_option=1"])
async def test_a_redis_url_option_the_connection_does_not_take(option: str) -> None:
    error = await _refusal(f"redis://:{SECRET}@127.0.0.1:6379/0?{option}")
    assert type(error) is ConfigurationError, repr(error)
    assert repr(option.split("=")[0]) in str(error)


@pytest.mark.parametrize("url", ["sqlite:///\x00.db", "sqlite:///./a\x00b.db"])
def test_a_nul_in_an_sqlite_path(url: str) -> None:
    with pytest.raises(ConfigurationError, match="NUL"):
        get_storage_backend(database_url=url)
