"""Settings, backend choice, the factory, the process-wide instance, secret redaction."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import typing

import pytest
from pydantic_settings import BaseSettings

from ad_buyer_storage import (
    ConfigurationError,
    NotConnectedError,
    Storage,
    UnavailableError,
    close_storage,
    get_storage,
    get_storage_backend,
    load_settings,
    open_storage,
    redact_url,
)
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.composed.breaker import BreakerPolicy, guarded, unwrap
from ad_buyer_storage.composed.mirror import MirrorBackend, mirror_of
from ad_buyer_storage.kit.urls import encode_credentials
from ad_buyer_storage.plugins.settings import SettingsBase, StorageSettings, choose_backend, load_backend_settings
from ad_buyer_storage.testing import Elapsed
from ad_buyer_storage_postgres.settings import PostgresSettings

SECRET = "s3cr3t-P@ss:w/rd#%"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "sqlite"),
        ({"DATABASE_URL": "postgresql+asyncpg://u:p@h/db", "REDIS_URL": "redis://h:6379/0"}, "hybrid"),
        ({"DATABASE_URL": "postgres://u@h/db"}, "postgres"),
        ({"REDIS_URL": "redis://h:6379/0"}, "redis"),
        ({"DATABASE_URL": "sqlite:///x.db", "REDIS_URL": "redis://h"}, "redis"),
        ({"STORAGE_TYPE": " SQLite ", "REDIS_URL": "redis://h"}, "sqlite"),
        ({"STORAGE_TYPE": "", "REDIS_URL": "redis://h"}, "redis"),
    ],
)
def test_backend_choice_follows_the_documented_rule(monkeypatch, env, expected) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    choice = choose_backend(load_settings())
    assert choice.name == expected
    assert choice.reason


def test_defaults() -> None:
    settings = load_settings()
    # The URL settings are learned from the installed backends, with the default SQLite declares.
    assert settings.url("database_url") == "sqlite:///./ad_buyer.db"
    assert settings.url("redis_url") is None
    assert getattr(settings, "database_url") == "sqlite:///./ad_buyer.db"  # noqa: B009 - the seed's attribute, on a model built at run time
    postgres = load_backend_settings(PostgresSettings, {})
    assert (postgres.pool_min, postgres.pool_max) == (2, 10)


def test_dotenv_is_read(tmp_path, monkeypatch) -> None:
    (tmp_path / ".env").write_text("STORAGE_TYPE=memory\nPOSTGRES_POOL_MAX=20\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings().storage_type == "memory"
    assert load_backend_settings(PostgresSettings, {}).pool_max == 20  # a backend's own settings read .env too


def test_pool_bounds_are_validated_without_echoing_secrets(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://user:{SECRET}@db/prod")
    with pytest.raises(ConfigurationError, match="POSTGRES_POOL_MIN") as info:
        get_storage_backend(postgres_pool_min=11, postgres_pool_max=10)
    assert SECRET not in str(info.value)
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(ConfigurationError, match="POSTGRES_POOL_MAX"):
        get_storage_backend(postgres_pool_max=0)


def test_settings_repr_redacts_urls(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://user:{SECRET}@db/prod")
    monkeypatch.setenv("REDIS_URL", "redis://:tok3n-value@cache:6379/0")
    text = repr(load_settings()) + str(load_settings())
    assert "s3cr3t" not in text
    assert "tok3n" not in text
    assert "user:***@db/prod" in text
    assert ":***@cache" in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://user:pw@h:5432/db", "postgresql://user:***@h:5432/db"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://token@h", "redis://***@h"),
        ("postgresql://u:p@ss:w/rd@h/db", "postgresql://u:***@h/db"),
        ("postgresql://h/db?password=pw&sslmode=require", "postgresql://h/db?password=***&sslmode=require"),
        ("sqlite:///./x.db", "sqlite:///./x.db"),
        ("postgresql://user@h/db", "postgresql://user@h/db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_type_that_contradicts_its_url_is_a_config_error(monkeypatch) -> None:
    monkeypatch.setenv("STORAGE_TYPE", "sqlite")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://user:{SECRET}@db/prod")
    with pytest.raises(ConfigurationError) as info:
        get_storage_backend()
    message = str(info.value)
    assert "sqlite" in message
    assert "postgresql://user:***@db/prod" in message
    assert "sqlite://" in message
    assert "s3cr3t" not in message


def test_unknown_type_lists_valid_choices(monkeypatch) -> None:
    monkeypatch.setenv("STORAGE_TYPE", "mongodb")
    with pytest.raises(ConfigurationError, match=r"unknown storage backend 'mongodb'; installed: .*sqlite"):
        get_storage_backend()


async def test_get_storage_backend_returns_an_unconnected_storage(tmp_path) -> None:
    storage = get_storage_backend("sqlite", database_url=f"sqlite:///{tmp_path}/f.db")
    assert isinstance(storage, Storage)
    assert not storage.is_open
    with pytest.raises(NotConnectedError):
        await storage.get("k")
    async with storage:
        await storage.set_deal("d", {"x": 1})
        assert await storage.get_deal("d") == {"x": 1}


async def test_settings_overrides_reach_the_storage(tmp_path) -> None:
    storage = get_storage_backend("memory", storage_max_value_bytes=100, session_default_ttl=5)
    async with storage:
        with pytest.raises(ValueError, match="cap"):
            await storage.set("k", "x" * 200)
        elapsed = Elapsed()
        await storage.set_session("s", {})
        elapsed.check_ttl(await storage.ttl("session:s"), 5, "set_session() must use session_default_ttl=5")


async def test_open_storage_by_url_and_by_name(tmp_path) -> None:
    async with open_storage(f"sqlite:///{tmp_path}/o.db") as storage:
        assert storage.name == "sqlite"
        await storage.set("k", 1)
    async with open_storage(f"sqlite:///{tmp_path}/o.db") as storage:
        assert await storage.get("k") == 1
    async with open_storage("memory") as storage:
        assert storage.name == "memory"
    with pytest.raises(ConfigurationError, match="installed schemes"):
        async with open_storage("mongodb://h/db"):
            pass


async def test_get_storage_is_one_connected_instance_even_for_concurrent_first_callers(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/g.db")
    try:
        results = await asyncio.gather(*(get_storage() for _ in range(20)))
        assert len({id(s) for s in results}) == 1
        assert await results[0].ping() >= 0  # connected
        assert results[0].name == "sqlite"
        assert await get_storage() is results[0]
    finally:
        await close_storage()
    assert not results[0].is_open
    again = await get_storage()
    try:
        assert again is not results[0]
        assert again.is_open
    finally:
        await close_storage()


async def test_a_failed_connect_is_not_cached(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/missing-dir/g.db")
    with pytest.raises(UnavailableError):
        await get_storage()
    (tmp_path / "missing-dir").mkdir()
    storage = await get_storage()
    try:
        assert storage.is_open
    finally:
        await close_storage()


def test_get_storage_is_per_event_loop(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("STORAGE_TYPE", "memory")

    async def grab() -> tuple[int, bool]:
        storage = await get_storage()
        ident = id(storage)
        await close_storage()
        return ident, storage.is_open

    first, second = asyncio.run(grab()), asyncio.run(grab())
    assert first[1] is False
    assert second[1] is False


async def test_the_choice_and_reason_are_logged(monkeypatch, caplog) -> None:
    monkeypatch.setenv("STORAGE_TYPE", "memory")
    with caplog.at_level(logging.INFO, logger="ad_buyer_storage"):
        await get_storage()
        await close_storage()
    assert any("using memory (STORAGE_TYPE=memory)" in r.getMessage() for r in caplog.records)


async def test_a_misspelt_override_is_refused_not_ignored(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown setting 'tabel'.*table"):
        get_storage_backend("sqlite", database_url=f"sqlite:///{tmp_path}/x.db", tabel="other")
    with pytest.raises(ConfigurationError, match="unknown setting"):
        get_storage_backend("memory", colck=None)
    storage = get_storage_backend("sqlite", database_url=f"sqlite:///{tmp_path}/x.db", sqlite_table="other")
    assert unwrap(storage.backend).table == "other"  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="SQLITE_BUSY_TIMEOUT"):
        get_storage_backend("sqlite", busy_timeout=-1)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@ss:w/rd#%@h:5432/db", "postgresql://u:p%40ss%3Aw%2Frd%23%25@h:5432/db"),
        ("postgresql://u:p%40ss@h/db", "postgresql://u:p%40ss@h/db"),  # already encoded: untouched
        ("redis://:tok#en@h:6379/0", "redis://:tok%23en@h:6379/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("postgresql://user@h/db", "postgresql://user@h/db"),
    ],
)
def test_unencoded_credentials_are_encoded(url: str, expected: str) -> None:
    assert encode_credentials(url) == expected
    assert encode_credentials(expected) == expected


def _settings_models() -> list[type[BaseSettings]]:
    """Every settings model of core and of our backends, found by importing their modules."""
    for package in (
        "ad_buyer_storage",
        "ad_buyer_storage_sqlite",
        "ad_buyer_storage_redis",
        "ad_buyer_storage_postgres",
    ):
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, f"{package}."):
            if ".testing" not in module.name:
                importlib.import_module(module.name)
    found, todo = [], [BaseSettings]
    while todo:
        for model in todo.pop().__subclasses__():
            todo.append(model)
            if model.__module__.startswith("ad_buyer_storage"):
                found.append(model)
    return sorted(found, key=lambda m: m.__name__)


def _numeric_fields() -> list[tuple[type[BaseSettings], str, type]]:
    fields = []
    for model in _settings_models():
        for name, info in model.model_fields.items():
            kinds = [t for t in (info.annotation, *typing.get_args(info.annotation)) if t in (int, float)]
            if kinds:
                fields.append((model, name, kinds[0]))
    return fields


# The numeric settings for which 0 means something (off, none): every other refuses it.
ZERO_MEANS = {
    "pool_min": "no idle connection kept",
    "sweep_interval": "no background purge",
    "health_check_interval": "no idle PING",
    "storage_breaker_threshold": "no circuit breakers",
    "statement_cache_size": "no prepared statements (pgbouncer)",
    "shadow_reads": "no shadow read",
}
NUMERIC_FIELDS = _numeric_fields()


def test_every_settings_model_is_found_and_derives_from_the_base() -> None:
    assert {m.__name__ for m, _, _ in NUMERIC_FIELDS} >= {
        "StorageSettings", "SQLiteSettings", "RedisSettings", "PostgresSettings", "MirrorSettings"
    }  # fmt: skip
    assert all(issubclass(m, SettingsBase) for m in _settings_models())  # redacted repr, finite numbers


# Infinities and NaN parse as floats; an int beyond 64 bits parses too, and no server takes it.
BAD_NUMBERS = {float: ("inf", "-inf", "nan", "1e400", "-1", "0"), int: ("inf", "nan", "-1", "0", str(2**63))}
REFUSALS = [
    pytest.param(model, name, bad, id=f"{model.__name__}.{name}={bad}")
    for model, name, kind in NUMERIC_FIELDS
    for bad in BAD_NUMBERS[kind]
    if not (bad == "0" and name in ZERO_MEANS)
]


def _load(model: type[BaseSettings]) -> BaseSettings:
    return load_settings() if model is StorageSettings else load_backend_settings(model, {})


def _variable(model: type[BaseSettings], name: str) -> str:
    return (str(model.model_config.get("env_prefix", "")) + name).upper()


@pytest.mark.parametrize(("model", "name", "bad"), REFUSALS)
def test_a_numeric_setting_that_cannot_work_is_refused_at_load_time(monkeypatch, model, name, bad) -> None:
    variable = _variable(model, name)
    monkeypatch.setenv(variable, bad)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{SECRET}@db/prod")
    with pytest.raises(ConfigurationError, match=variable) as info:
        _load(model)
    assert "s3cr3t" not in str(info.value)
    assert info.value.__context__ is None  # pydantic's error quotes every input


@pytest.mark.parametrize(
    ("model", "name"),
    [(m, n) for m, n, _ in NUMERIC_FIELDS if n in ZERO_MEANS],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_zero_is_taken_where_it_means_something(monkeypatch, model, name) -> None:
    monkeypatch.setenv(_variable(model, name), "0")
    assert getattr(_load(model), name) == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SESSION_DEFAULT_TTL", "1e300"), ("SQLITE_BUSY_TIMEOUT", "2147484"), ("MIRROR_SHADOW_READS", "1.5")],
)
def test_numbers_beyond_what_the_store_takes_are_refused(monkeypatch, variable, value) -> None:
    """SESSION_DEFAULT_TTL must be a TTL set_session takes; SQLite stores its busy timeout as a
    C int of milliseconds (beyond, it silently waits 0 s)."""
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("STORAGE_TYPE", "mirror")
    monkeypatch.setenv("MIRROR_PRIMARY", "sqlite")
    monkeypatch.setenv("MIRROR_SECONDARY", "memory")
    with pytest.raises(ConfigurationError, match=variable):
        get_storage_backend()


async def test_the_default_session_ttl_reaches_set_session_at_its_largest(monkeypatch) -> None:
    monkeypatch.setenv("SESSION_DEFAULT_TTL", str(10**9))
    async with open_storage("memory") as storage:
        await storage.set_session("s", {})
        assert await storage.ttl("session:s") == pytest.approx(10**9, abs=5)


# -- issue 22: URLs and compositions that cannot work are ConfigurationErrors, before any I/O ---


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{SECRET}@127.0.0.1:99999/db",
        f"postgresql://app:{SECRET}@127.0.0.1:0/db",
        f"postgresql://app:{SECRET}@127.0.0.1:5432,127.0.0.1:99999/db",
        f"postgresql://app:{SECRET}@[::1]:70000/db",
        f"postgresql://app:{SECRET}@127.0.0.1:54x2/db",
    ],
)
def test_a_postgresql_port_out_of_range_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="port must be a number from 1 to 65535") as info:
        get_storage_backend("postgres", database_url=url)  # built, never connected: no I/O
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@127.0.0.1:6379/notadb",
        "redis://127.0.0.1:6379/1x",
        "redis://127.0.0.1:6379/0/1",
        "rediss://127.0.0.1:6379/db0",
        "redis+cluster://127.0.0.1:6379/x",
    ],
)
def test_a_redis_path_that_is_not_a_database_number_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="must be a database number") as info:
        get_storage_backend("redis", redis_url=url)
    assert "s3cr3t" not in str(info.value)


async def test_a_sentinel_database_that_is_not_a_number_is_refused_before_any_io() -> None:
    storage = get_storage_backend("redis", redis_url="redis+sentinel://127.0.0.1:1/mymaster/notadb")
    with pytest.raises(ConfigurationError, match="could not be used"):
        await storage.connect()


async def test_a_redis_database_the_server_does_not_have_is_a_configuration_error() -> None:
    storage = get_storage_backend("redis", redis_url="redis://127.0.0.1:6379/9999")
    with pytest.raises(ConfigurationError, match="names a database the server does not have"):
        await storage.connect()


@pytest.mark.parametrize(
    ("primary", "secondary"),
    [
        ("sqlite", "sqlite"),
        ("sqlite", "sqlite:///./ad_buyer.db"),  # DATABASE_URL's default: the same file
        ("sqlite:///./m.db", "sqlite:///m.db"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0/"),
        ("postgres://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
        ("hybrid", "hybrid"),
    ],
)
def test_a_mirror_of_one_store_onto_itself_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path, primary: str, secondary: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STORAGE_ROUTES", "session:=memory,*=sqlite")
    with pytest.raises(ConfigurationError, match="name the same store"):
        get_storage_backend("mirror", mirror_primary=primary, mirror_secondary=secondary)


def test_a_mirror_of_two_stores_is_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    for primary, secondary in (("memory", "memory"), ("sqlite", "sqlite:///./other.db"), ("sqlite", "memory")):
        get_storage_backend("mirror", mirror_primary=primary, mirror_secondary=secondary)


def test_a_mirror_of_one_backend_instance_is_refused() -> None:
    backend = MemoryBackend()
    with pytest.raises(ConfigurationError, match="the same backend"):
        mirror_of(backend, backend)
    with pytest.raises(ConfigurationError, match="the same backend"):
        MirrorBackend(backend, guarded(backend, BreakerPolicy(5, 5.0), "memory"))


# -- misspelt environment variables (STORAGE_ALLOW_ENV) ------------------------------------


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        ("POSTGRE_SCHEMA", "POSTGRES_SCHEMA"),  # not under our prefix, a letter away from a setting
        ("POSTGRES_SCHEMAS", "POSTGRES_SCHEMA"),  # under our prefix
        ("DATABASE_URI", "DATABASE_URL"),
        ("SESSION_DEFAULT_TL", "SESSION_DEFAULT_TTL"),
        ("STORAGE_TYP", "STORAGE_TYPE"),
    ],
)
def test_a_misspelt_setting_in_the_environment_is_refused_naming_the_closest(
    monkeypatch: pytest.MonkeyPatch, variable: str, closest: str
) -> None:
    monkeypatch.setenv(variable, "agent1")
    with pytest.raises(ConfigurationError, match=rf"{variable} \(did you mean {closest}\?\).*STORAGE_ALLOW_ENV"):
        load_settings()


def test_another_programs_variables_under_our_prefixes_are_allowed_by_name_or_glob(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_HOST", "cache")
    monkeypatch.setenv("REDIS_PORT_NUMBER", "6379")
    with pytest.raises(ConfigurationError, match=r"REDIS_HOST.*REDIS_PORT_NUMBER"):
        load_settings()
    monkeypatch.setenv("STORAGE_ALLOW_ENV", "REDIS_HOST, redis_port_*")
    load_settings()  # both allowed: nothing raised


def test_variables_of_other_programs_and_every_real_setting_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "HOME": "/root",
        "PGHOST": "db",
        "POSTGRES_SCHEMA": "agent1",  # an alias (the field is schema_name)
        "SQLITE_BUSY_TIMEOUT": "5",
        "REDIS_KEY_PREFIX": "app:",
        "MIRROR_SHADOW_READS": "0.5",
        "SESSION_SLIDING_TTL": "true",
        "STORAGE_BREAKER_COOLDOWN": "3",
    }.items():
        monkeypatch.setenv(name, value)
    load_settings()


def test_a_domains_indexed_fields_reach_the_backend_as_data_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from ad_buyer_storage import StoreProfile, build_store  # noqa: PLC0415
    from ad_buyer_storage.composed import unwrap  # noqa: PLC0415

    profile = StoreProfile(indexed_fields=("region", "tier"))
    store = build_store(f"sqlite:///{tmp_path}/a.db", profile=profile)
    assert unwrap(store.backend).indexed_fields == ("region", "tier")  # type: ignore[attr-defined]
    monkeypatch.setenv("SQLITE_INDEXED_FIELDS", "status")
    store = build_store(f"sqlite:///{tmp_path}/b.db", profile=profile)
    assert unwrap(store.backend).indexed_fields == ("status",)  # type: ignore[attr-defined]
