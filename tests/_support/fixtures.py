"""Fixtures for every test of the repository (root and packages), loaded by ``conftest.py``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support.mirror_workload import Stores
from tests._support.shared import drop_pg_schema, drop_redis_prefix, new_schema

# Every variable a test could inherit that would change what the settings select.
_OUR_VARIABLES = (
    "STORAGE_TYPE",
    "DATABASE_URL",
    "REDIS_URL",
    "SESSION_DEFAULT_TTL",
    "SESSION_SLIDING_TTL",
    "STORAGE_MAX_VALUE_BYTES",
    "STORAGE_CONNECT_TIMEOUT",
    "STORAGE_COMMAND_TIMEOUT",
    "STORAGE_ROUTES",
)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test starts without our variables and in an empty directory (no .env, no ad_buyer.db)."""
    for name in list(os.environ):
        if name in _OUR_VARIABLES or name.startswith(("STORAGE_", "SQLITE_", "REDIS_", "POSTGRES_", "MIRROR_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema name for one test, dropped afterwards (never a shared database)."""
    schema = new_schema()
    yield schema
    drop_pg_schema(schema)


@pytest.fixture(scope="module")
def pg_module_schema() -> Iterator[str]:
    """The same, shared by the tests of one module."""
    schema = new_schema()
    yield schema
    drop_pg_schema(schema)


@pytest.fixture
def move_stores(tmp_path: Path) -> Iterator[Stores]:
    """An SQLite file and a PostgreSQL+Redis namespace, emptied afterwards: the two sides of a move."""
    tag = uuid.uuid4().hex[:12]
    stores = Stores(str(tmp_path / "old.db"), f"abs_test_{tag}", f"abs-test:{tag}:")
    yield stores
    drop_pg_schema(stores.schema)
    drop_redis_prefix(stores.prefix)
