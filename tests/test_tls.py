"""S4: TLS to Redis (rediss://) and PostgreSQL (sslmode), against private servers with a private CA.

Certificates are verified by default, and a TLS URL never falls back to plaintext.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ad_buyer_storage import Storage
from ad_buyer_storage.errors import BackendError, ConfigurationError, StorageTimeoutError, TLSError
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend
from tests._support.servers import Certificates, make_certificates, postgres_server, redis_server

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Certificates, Certificates]:
    """The server's CA, and another CA that never signed anything the servers hold."""
    directory = tmp_path_factory.mktemp("certs")
    return make_certificates(directory, "trusted"), make_certificates(directory, "stranger")


async def _roundtrip(backend: RedisBackend | PostgresBackend) -> None:
    async with Storage(backend) as storage:
        await storage.set("deal:tls", {"ok": True})
        assert await storage.get("deal:tls") == {"ok": True}
        await storage.clear()


async def test_redis_tls_verifies_the_server_and_never_speaks_plaintext(tmp_path: Path, certificates) -> None:
    trusted, stranger = certificates
    with redis_server(tmp_path / "tls", tls=trusted) as tls_server, redis_server(tmp_path / "plain") as plain:
        port = tls_server.port
        await _roundtrip(RedisBackend(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={trusted.ca}", connect_timeout=2))
        await _roundtrip(RedisBackend(f"rediss://localhost:{port}/0?ssl_ca_certs={trusted.ca}", connect_timeout=2))
        # Verification is on by default: the system store does not know our private CA.
        with pytest.raises(TLSError, match="certificate verify failed"):
            await Storage(RedisBackend(f"rediss://127.0.0.1:{port}/0", connect_timeout=2)).connect()
        with pytest.raises(TLSError, match="certificate verify failed"):
            await Storage(RedisBackend(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={stranger.ca}")).connect()
        # A plaintext client on the TLS port, and a TLS client on a plaintext server: both refused.
        with pytest.raises(BackendError):
            await Storage(RedisBackend(f"redis://127.0.0.1:{port}/0", connect_timeout=2, command_timeout=2)).connect()
        url = f"rediss://127.0.0.1:{plain.port}/0?ssl_ca_certs={trusted.ca}"
        with pytest.raises((TLSError, StorageTimeoutError)):  # redis-server waits for a line that never comes
            await Storage(RedisBackend(url, connect_timeout=2, command_timeout=2)).connect()
        assert plain.cli("dbsize") == "0"  # nothing reached the plaintext server


async def test_postgres_sslmode_require_is_encrypted_and_never_plaintext(certificates) -> None:
    trusted, stranger = certificates
    with postgres_server(tls=trusted) as server:
        base = server.url()
        pg = PostgresBackend(f"{base}?sslmode=require", pool_min=2, pool_max=2, sweep_interval=None)
        async with Storage(pg) as storage:
            await storage.set("deal:tls", 1)
            ssl_flags = server.sql("SELECT string_agg(ssl::text, ',') FROM pg_stat_ssl JOIN pg_stat_activity "
                                   "USING (pid) WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
                                   "AND application_name <> 'psql'")  # fmt: skip
            assert set(ssl_flags.split(",")) == {"true"}, ssl_flags
            await storage.clear()
        verify = f"{base}?sslmode=verify-full&sslrootcert={trusted.ca}"
        await _roundtrip(PostgresBackend(verify, sweep_interval=None))
        url = f"{base}?sslmode=verify-full&sslrootcert={stranger.ca}"
        with pytest.raises(TLSError, match="certificate verify failed"):
            await Storage(PostgresBackend(url, connect_timeout=3, sweep_interval=None)).connect()
        with pytest.raises(ConfigurationError, match="root certificate file"):  # verify-full, no CA file anywhere
            await Storage(PostgresBackend(f"{base}?sslmode=verify-full", sweep_interval=None)).connect()
    with postgres_server() as plain:  # a server with TLS off
        url = f"{plain.url()}?sslmode=require"
        with pytest.raises(TLSError, match="rejected SSL upgrade"):
            await Storage(PostgresBackend(url, connect_timeout=3, sweep_interval=None)).connect()
