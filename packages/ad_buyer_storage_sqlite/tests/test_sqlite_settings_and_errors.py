"""The SQLite backend built from its settings model, and its errors mapped by one table."""

from __future__ import annotations

import sqlite3

import pytest

from ad_buyer_storage import (
    BackendError,
    BusyError,
    ConfigurationError,
    NotConnectedError,
    ReadOnlyError,
    Storage,
    StorageFullError,
    UnavailableError,
)
from ad_buyer_storage_sqlite import SQLiteBackend
from ad_buyer_storage_sqlite.errors import ERRORS, translate
from ad_buyer_storage_sqlite.factory import create_backend
from ad_buyer_storage_sqlite.settings import SQLiteSettings


def test_a_direct_constructor_reads_no_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SQLITE_TABLE", "from_env")
    monkeypatch.setenv("SQLITE_BUSY_TIMEOUT", "1")
    (tmp_path / ".env").write_text("SQLITE_SWEEP_BATCH=3\n")
    monkeypatch.chdir(tmp_path)
    backend = SQLiteBackend(":memory:")
    assert (backend.table, backend.settings.busy_timeout, backend.settings.sweep_batch) == ("kv_store", 5.0, 500)
    assert SQLiteBackend(":memory:", table="given").table == "given"
    assert SQLiteSettings().table == "from_env"  # type: ignore[call-arg]  # the model itself still reads it, as the factory wants


def test_the_factory_passes_the_model_it_loaded(monkeypatch, tmp_path) -> None:
    from ad_buyer_storage.plugins.settings import load_settings  # noqa: PLC0415

    monkeypatch.setenv("SQLITE_TABLE", "from_env")
    backend = create_backend(load_settings(database_url=f"sqlite:///{tmp_path}/f.db"), sweep_batch=9)
    assert isinstance(backend.settings, SQLiteSettings)
    assert (backend.table, backend.settings.sweep_batch) == ("from_env", 9)


def test_a_settings_model_is_used_as_given() -> None:
    settings = SQLiteSettings.given(table="t1", synchronous="full", sweep_interval=0)
    backend = SQLiteBackend(":memory:", settings)
    assert backend.settings is settings
    assert (backend.table, backend._synchronous) == ("t1", "FULL")
    with pytest.raises(ConfigurationError, match="not both"):
        SQLiteBackend(":memory:", settings, table="t2")


@pytest.mark.parametrize(("name", "closest"), [("tabel", "table"), ("busy_timout", "busy_timeout")])
def test_an_unknown_keyword_is_refused_naming_the_closest(name: str, closest: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"unknown SQLite setting {name!r} \(did you mean {closest!r}\?\)"):
        SQLiteBackend(":memory:", **{name: 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"busy_timeout": 0}, "SQLITE_BUSY_TIMEOUT"),
        ({"busy_timeout": 2_147_484}, "SQLITE_BUSY_TIMEOUT"),
        ({"busy_timeout": float("nan")}, "SQLITE_BUSY_TIMEOUT"),
        ({"synchronous": "OFF"}, "NORMAL or FULL"),
        ({"indexed_fields": "status,bad-name"}, "SQLITE_INDEXED_FIELDS"),
        ({"table": "a b"}, "SQLITE_TABLE"),
        ({"sweep_batch": 0}, "SQLITE_SWEEP_BATCH"),
    ],
)
def test_bad_values_name_their_setting(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        SQLiteBackend(":memory:", **fields)  # type: ignore[arg-type]


def test_sweep_interval_none_still_means_no_sweeper() -> None:
    assert SQLiteBackend(":memory:", sweep_interval=None).settings.sweep_interval == 0


def _operational(code: int, words: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(words)
    exc.sqlite_errorcode = code  # as sqlite3 sets it (3.11+)
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_operational(sqlite3.SQLITE_BUSY, "database is locked"), BusyError),
        (_operational(sqlite3.SQLITE_LOCKED | (1 << 8), "database table is locked"), BusyError),  # extended code
        (_operational(sqlite3.SQLITE_FULL, "database or disk is full"), StorageFullError),
        (_operational(sqlite3.SQLITE_READONLY, "attempt to write a readonly database"), ReadOnlyError),
        (_operational(sqlite3.SQLITE_CANTOPEN, "unable to open database file"), UnavailableError),
        (_operational(sqlite3.SQLITE_IOERR, "disk I/O error"), UnavailableError),
        (sqlite3.IntegrityError("constraint failed"), BackendError),
        (sqlite3.OperationalError("no code at all"), BackendError),
        (FileNotFoundError(2, "No such file or directory"), UnavailableError),
    ],
)
def test_the_table_maps_result_codes_then_classes(tmp_path, exc: BaseException, expected: type) -> None:
    error = translate(exc, str(tmp_path / "x.db"))
    assert type(error) is expected
    assert str(tmp_path / "x.db") in str(error)


def test_only_the_driver_s_classes_are_caught() -> None:
    assert set(ERRORS.driver_errors) == {sqlite3.Error, OSError}
    assert not any(issubclass(ValueError, cls) or issubclass(cls, ValueError) for cls in ERRORS.driver_errors)


async def test_a_closed_connection_is_not_connected(tmp_path) -> None:
    backend = SQLiteBackend(str(tmp_path / "c.db"), sweep_interval=None)
    async with Storage(backend):
        conn = backend._conn
        assert conn is not None
        await conn.close()  # closed under the backend: aiosqlite answers with a plain ValueError
        with pytest.raises(NotConnectedError, match="closed"):
            await backend.read(["k"])
        with pytest.raises(NotConnectedError, match="closed"):
            await backend.commit([], [], ["k"])


async def test_any_other_value_error_stays_a_bug(monkeypatch, tmp_path) -> None:
    """Before the table, every ValueError from a statement was a BackendError."""
    backend = SQLiteBackend(str(tmp_path / "v.db"), sweep_interval=None)
    async with Storage(backend):
        conn = backend._conn
        assert conn is not None

        async def broken(*args: object) -> None:
            raise ValueError("a bug of ours")

        monkeypatch.setattr(conn, "execute_fetchall", broken)
        with pytest.raises(ValueError, match="a bug of ours") as caught:
            await backend.read(["k"])
        assert not isinstance(caught.value, BackendError)


@pytest.mark.parametrize(("field", "value"), [("synchronous", "hunter2"), ("table", "hunter2 x")])
def test_a_bad_value_is_named_never_quoted(field: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"SQLITE_{field.upper()}") as info:
        SQLiteBackend(":memory:", **{field: value})  # type: ignore[arg-type]
    assert "hunter2" not in str(info.value)
