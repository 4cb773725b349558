"""The backend is built from its settings model (each setting spelled once, in settings.py); a
URL and keyword fields build that model without reading the environment. No server needed."""

from __future__ import annotations

import pytest

from ad_buyer_storage import ConfigurationError
from ad_buyer_storage.plugins.settings import load_backend_settings, load_settings
from ad_buyer_storage_postgres import PostgresBackend, PostgresSettings
from ad_buyer_storage_postgres.factory import create_backend

URL = "postgresql://app:s3cret@db:5432/ads"


def test_a_direct_constructor_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in {
        "POSTGRES_SCHEMA": "from_env",
        "POSTGRES_TABLE": "from_env",
        "POSTGRES_POOL_MAX": "33",
        "POSTGRES_POOLING": "transaction",
        "POSTGRES_READ_URL": "postgresql://replica/db",
        "POSTGRES_CONNECT_TIMEOUT": "7",
        "DATABASE_URL": "postgresql://other/db",
    }.items():
        monkeypatch.setenv(variable, value)
    backend = PostgresBackend(URL, table="given")
    assert (backend.schema, backend.table) == ("public", "given")
    assert (backend.settings.pool_max, backend.settings.pooling, backend.settings.read_url) == (10, "auto", None)
    assert backend.settings.url == URL
    assert backend.settings.timeouts == (5.0, 10.0)  # core's defaults, not the environment's
    # The environment is read where it always was: the settings loaded for the factory.
    assert load_backend_settings(PostgresSettings, {}).schema_name == "from_env"
    assert create_backend(load_settings()).schema == "from_env"


def test_the_model_itself_builds_the_backend() -> None:
    settings = PostgresSettings.given({"url": URL, "schema": "ads", "pool_min": 1, "pool_max": 3})
    backend = PostgresBackend(settings)
    assert backend.settings is settings
    assert (backend.schema, backend._pool_max) == ("ads", 3)
    assert PostgresBackend(settings, table="other").table == "other"  # fields on top of a model
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        PostgresBackend(PostgresSettings.given({}))  # a model without a URL


@pytest.mark.parametrize(
    ("keyword", "suggested"),
    [("pool_mx", "pool_max"), ("schem", "schema"), ("postgres_tabel", "table"), ("read_ulrs", "read_urls")],
)
def test_an_unknown_keyword_is_refused_naming_the_closest(keyword: str, suggested: str) -> None:
    with pytest.raises(ConfigurationError, match=f"unknown setting '{keyword}'; did you mean '{suggested}'"):
        PostgresBackend(URL, **{keyword: 1})


def test_the_keywords_of_before_still_work() -> None:
    backend = PostgresBackend(
        URL, schema="s1", postgres_table="t1", sweep_interval=None,
        read_urls=["postgresql://u:p,w@r1:5432,r2:5433/db", "postgresql://r3/db"],
    )  # fmt: skip
    assert (backend.schema, backend.table, backend.settings.sweep_interval) == ("s1", "t1", 0.0)
    assert [r.url for r in backend._replicas] == ["postgresql://u:p,w@r1:5432,r2:5433/db", "postgresql://r3/db"]
    with pytest.raises(ConfigurationError, match="POSTGRES_READ_URL") as info:
        PostgresBackend(URL, read_urls=["postgresql://r1/db", "mysql://app:s3cret@r2/db"])
    assert "s3cret" not in str(info.value)
    with pytest.raises(ConfigurationError, match="given twice"):
        PostgresBackend(URL, url=URL)


@pytest.mark.parametrize(
    ("fields", "variable"),
    [({"pool_max": 0}, "POSTGRES_POOL_MAX"), ({"pooling": "bogus"}, "POSTGRES_POOLING"),
     ({"schema": 3}, "POSTGRES_SCHEMA"), ({"command_timeout": float("inf")}, "POSTGRES_COMMAND_TIMEOUT")],
)  # fmt: skip
def test_a_bad_value_is_refused_by_its_variable_without_the_input(fields: dict[str, object], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable) as info:
        PostgresBackend(URL, **fields)
    assert "s3cret" not in str(info.value)
    assert info.value.__context__ is None  # pydantic's error quotes every input


def test_the_factory_passes_core_timeouts_unless_postgres_ones_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    monkeypatch.setenv("STORAGE_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("STORAGE_COMMAND_TIMEOUT", "3")
    assert create_backend(load_settings()).settings.timeouts == (2.0, 3.0)
    monkeypatch.setenv("POSTGRES_COMMAND_TIMEOUT", "4")
    assert create_backend(load_settings()).settings.timeouts == (2.0, 4.0)
    assert create_backend(load_settings(), url="postgresql://x/db").settings.url == "postgresql://x/db"
