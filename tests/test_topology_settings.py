"""Settings and URLs of the production topologies (issue 18), without any server: pooling and
the LISTEN URL, multi-host URLs, and that none of them shows a password anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ad_buyer_storage import ConfigurationError, get_storage_backend
from ad_buyer_storage.errors import BackendError, OutcomeUnknownError, UnavailableError
from ad_buyer_storage.kit.redaction import redact_routes, redact_text, redact_url, reveals_secret
from ad_buyer_storage.kit.urls import split_routes
from ad_buyer_storage.plugins.settings import load_backend_settings, load_settings
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_postgres.backend import split_urls
from ad_buyer_storage_postgres.factory import create_backend
from ad_buyer_storage_postgres.settings import PostgresSettings
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_redis.backend import parse_sentinel_url
from ad_buyer_storage_redis.factory import create_backend as redis_create_backend

SECRET = "s3cr3t-Topo:pw@x"
ENCODED = "s3cr3t-Topo%3Apw%40x"


def test_pooling_defaults_to_auto_and_the_listen_url_to_none() -> None:
    settings = load_backend_settings(PostgresSettings, {})
    assert (settings.pooling, settings.listen_url) == ("auto", None)


def test_pooling_and_listen_url_reach_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{ENCODED}@bouncer:6432/db")
    monkeypatch.setenv("POSTGRES_POOLING", "transaction")
    monkeypatch.setenv("POSTGRES_LISTEN_URL", f"postgresql://app:{ENCODED}@db:5432/db")
    backend = create_backend(load_settings())
    assert backend._between == "transaction"
    assert backend._cache_size == 0
    assert backend._listen_dsn == f"postgresql://app:{ENCODED}@db:5432/db"
    assert "s3cr3t" not in repr(backend)


def test_an_unknown_pooling_mode_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{ENCODED}@bouncer:6432/db")
    monkeypatch.setenv("POSTGRES_POOLING", "statement")
    with pytest.raises(ConfigurationError, match="POSTGRES_POOLING") as info:
        get_storage_backend()
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(ConfigurationError, match="POSTGRES_POOLING"):
        PostgresBackend("postgresql://h/db", pooling="bogus")


def test_a_listen_url_that_is_not_postgresql_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        PostgresBackend("postgresql://h/db", listen_url=f"redis://:{ENCODED}@cache:6379/0")
    assert "s3cr3t" not in str(info.value)


def test_settings_repr_hides_the_listen_url_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_LISTEN_URL", f"postgresql://app:{ENCODED}@db:5432/db")
    settings = load_backend_settings(PostgresSettings, {})
    assert "s3cr3t" not in repr(settings) + str(settings)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:pw@h1:5432,h2:5433/db?target_session_attrs=read-write",
         "postgresql://app:***@h1:5432,h2:5433/db?target_session_attrs=read-write"),
        ("postgresql://app:p@ss,w@h1,h2/db", "postgresql://app:***@h1,h2/db"),
        ("postgresql://app@h1:5432,h2:5433/db", "postgresql://app@h1:5432,h2:5433/db"),
        ("redis+sentinel://:pw@h1:26379,h2:26380,h3:26381/mymaster/0",
         "redis+sentinel://:***@h1:26379,h2:26380,h3:26381/mymaster/0"),
        ("redis+sentinel://user:p,w@h1:26379,h2:26380/mymaster/0",
         "redis+sentinel://user:***@h1:26379,h2:26380/mymaster/0"),
        ("redis+sentinel://tok3n@h1:26379/mymaster", "redis+sentinel://***@h1:26379/mymaster"),
        ("redis+sentinel://h1/m/0?sentinel_password=pw&db=1", "redis+sentinel://h1/m/0?sentinel_password=***&db=1"),
        ("rediss+sentinel://h1:26379,h2:26380/mymaster/0?password=pw",
         "rediss+sentinel://h1:26379,h2:26380/mymaster/0?password=***"),
    ],
)  # fmt: skip
def test_multi_host_and_sentinel_urls_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_text(f"connecting to {url} failed", url) == f"connecting to {shown} failed"


def test_a_multi_host_url_is_accepted_and_its_password_never_shown() -> None:
    url = f"postgresql://app:{SECRET}@h1:5432,h2:5433/db?target_session_attrs=read-write"
    backend = PostgresBackend(url)
    assert backend._dsn == f"postgresql://app:{ENCODED}@h1:5432,h2:5433/db?target_session_attrs=read-write"
    assert "s3cr3t" not in repr(backend)
    assert repr(backend).startswith("PostgresBackend('postgresql://app:***@h1:5432,h2:5433/db")


@pytest.mark.parametrize(
    ("text", "urls"),
    [
        (None, []),
        ("", []),
        ("postgresql://r1/db", ["postgresql://r1/db"]),
        ("postgresql://r1/db, postgres://r2:5433/db", ["postgresql://r1/db", "postgres://r2:5433/db"]),
        # A multi-host URL and a password holding a comma stay whole.
        ("postgresql://u:p,w@r1:5432,r2:5433/db?target_session_attrs=prefer-standby,postgresql://r3/db",
         ["postgresql://u:p,w@r1:5432,r2:5433/db?target_session_attrs=prefer-standby", "postgresql://r3/db"]),
        (["postgresql://r1/db", ""], ["postgresql://r1/db"]),
    ],
)  # fmt: skip
def test_read_urls_are_split_at_schemes_only(text: str | list[str] | None, urls: list[str]) -> None:
    assert split_urls(text) == urls


def test_read_urls_reach_the_backend_and_never_show_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{ENCODED}@primary:5432/db")
    monkeypatch.setenv("POSTGRES_READ_URL", f"postgresql://app:{ENCODED}@r1/db,postgresql://app:{SECRET}@r2/db")
    backend = create_backend(load_settings())
    assert [r.url.rsplit("@", 1)[1] for r in backend._replicas] == ["r1/db", "r2/db"]
    assert "s3cr3t" not in repr(backend) + repr(load_backend_settings(PostgresSettings, {}))
    with pytest.raises(ConfigurationError) as info:
        PostgresBackend("postgresql://h/db", read_urls=f"mysql://app:{ENCODED}@r1/db")
    assert "s3cr3t" not in str(info.value)


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_masters_options() -> None:
    target = parse_sentinel_url(
        f"redis+sentinel://app:{SECRET}@h1:26379,h2:26380,[::1]/mymaster/2?sentinel_password=sp&socket_keepalive=true"
    )
    assert target.sentinels == [("h1", 26379), ("h2", 26380), ("::1", 26379)]
    assert target.service == "mymaster"
    assert (target.master["username"], target.master["password"], target.master["db"]) == ("app", SECRET, 2)
    assert target.master["socket_keepalive"] is True
    assert "ssl" not in target.master
    assert target.sentinel == {"password": "sp"}
    tls = parse_sentinel_url("rediss+sentinel://h1/mymaster?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem")
    assert (tls.master["db"], tls.master["ssl"], tls.master["ssl_ca_certs"]) == (0, True, "/ca.pem")
    assert tls.sentinel["ssl_ca_certs"] == "/ca.pem"


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://h1:26379", "redis+sentinel://h1:26379/", "redis+sentinel://h1:x/m/0", "redis+sentinel:///m/0",
     "redis+sentinel://h1/m/0/extra"],
)  # fmt: skip
def test_a_malformed_sentinel_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="sentinel"):
        parse_sentinel_url(url)


async def test_a_sentinel_url_picks_the_redis_backend_and_never_shows_its_passwords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"redis+sentinel://:{ENCODED}@127.0.0.1:1,127.0.0.1:2/mymaster/0?sentinel_password=sentinel-s3cr3t"
    monkeypatch.setenv("REDIS_URL", url)
    assert repr(get_storage_backend()).startswith("<Storage redis redis+sentinel://:***@127.0.0.1:1,127.0.0.1:2/")
    backend: Any = redis_create_backend(load_settings())
    assert type(backend).__name__ == "RedisBackend"
    assert "s3cr3t" not in repr(backend)
    with pytest.raises(BackendError) as info:  # nothing listens: typed, and no secret in it
        await backend.connect()
    assert isinstance(info.value, UnavailableError), type(info.value)
    assert not reveals_secret(info.value, url)
    assert "s3cr3t" not in str(info.value) + repr(info.value)
    with pytest.raises(ConfigurationError) as bad:
        await RedisBackend(f"redis+sentinel://:{ENCODED}@h1:x/m").connect()
    assert "s3cr3t" not in str(bad.value)


def raised_in_a_driver_module(tmp_path: Path) -> Any:
    """A function whose AttributeError is raised by code living in a `redis/` package folder, as
    redis-py's own is when it sends on a connection another task's failure just closed (seen
    when a cluster master was killed under load). No driver internals: the mapping is ours, the
    driver's part is only where its code lives; tests/test_faults.py drops real connections."""
    module = tmp_path / "site-packages" / "redis" / "asyncio" / "connection.py"
    namespace: dict[str, Any] = {}
    code = "async def send(_client):\n    writer = None\n    writer.writelines([b'PING'])\n"
    exec(compile(code, str(module), "exec"), namespace)  # noqa: S102 - our own two lines
    return namespace["send"]


async def test_an_attribute_error_inside_the_driver_is_a_lost_connection_not_a_raw_error(tmp_path: Path) -> None:
    from ad_buyer_storage_redis import errors as redis_errors_module  # noqa: PLC0415

    send = raised_in_a_driver_module(tmp_path)
    b: Any = RedisBackend("redis://127.0.0.1:1/0")
    b._client = object()  # "connected": _call hands it to the function, which never uses it
    with pytest.raises(OutcomeUnknownError, match="connection closed under the command"):
        await b._call(send, idempotent=False)
    calls = 0

    async def fails_once(client: object) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await send(client)
        return "ok"

    assert await b._call(fails_once, idempotent=True) == "ok"  # an idempotent call is retried once
    assert calls == 2

    async def our_own_bug(_client: object) -> None:
        raise AttributeError("ours")

    with pytest.raises(AttributeError, match="ours"):  # a bug of ours is never dressed as the network's
        await b._call(our_own_bug, idempotent=True)
    assert redis_errors_module.raised_in_redis_py(AttributeError()) is False


def test_a_route_table_keeps_multi_host_urls_whole_and_hides_their_passwords() -> None:
    table = (
        f"deal:=postgresql://app:{ENCODED}@h1:5432,h2:5433/db?target_session_attrs=read-write,"
        f"session:=redis+sentinel://:{ENCODED}@s1:26379,s2:26380/mymaster/0,cache:=memory"
    )
    assert split_routes(table) == [
        f"deal:=postgresql://app:{ENCODED}@h1:5432,h2:5433/db?target_session_attrs=read-write",
        f"session:=redis+sentinel://:{ENCODED}@s1:26379,s2:26380/mymaster/0",
        "cache:=memory",
    ]
    assert redact_routes(table) == (
        "deal:=postgresql://app:***@h1:5432,h2:5433/db?target_session_attrs=read-write,"
        "session:=redis+sentinel://:***@s1:26379,s2:26380/mymaster/0,cache:=memory"
    )
    # A single-host URL without a path still ends at the comma.
    assert split_routes("session:=redis://localhost:6379,cache:=memory") == [
        "session:=redis://localhost:6379",
        "cache:=memory",
    ]
