"""Shared fixtures: isolated settings (no .env, no stray STORAGE_* variables) per test."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from ad_buyer_storage_redis.namespaces import NAMESPACES_KEY

# Fixtures that need the backends' packages live beside the helpers they use.
pytest_plugins = ["tests._support.fixtures"]

_OUR_VARIABLES = (
    "STORAGE_TYPE",
    "DATABASE_URL",
    "REDIS_URL",
    "POSTGRES_POOL_MIN",
    "POSTGRES_POOL_MAX",
    "SESSION_DEFAULT_TTL",
    "STORAGE_MAX_VALUE_BYTES",
    "STORAGE_CONNECT_TIMEOUT",
    "STORAGE_COMMAND_TIMEOUT",
)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test starts without our variables and in an empty directory (no .env, no ad_buyer.db)."""
    for name in list(os.environ):
        if name in _OUR_VARIABLES or name.startswith(("SQLITE_", "REDIS_", "POSTGRES_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


POSTGRES_URL = os.environ.get("AD_BUYER_STORAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def drop_pg_schema(schema: str) -> None:
    """Drop a schema a test made on the shared server (psql: works with or without a loop)."""
    subprocess.run(
        ["psql", POSTGRES_URL, "-qc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
        capture_output=True,
        timeout=60,
        check=False,
    )


def drop_redis_prefix(prefix: str) -> None:
    """Delete the keys a test left under *prefix* on the shared Redis (never FLUSHDB), and
    unregister the namespace (see ad_buyer_storage_redis.namespaces)."""
    cli = ["redis-cli", "-h", "127.0.0.1", "-p", "6379"]
    found = subprocess.run([*cli, "--scan", "--pattern", prefix + "*"], capture_output=True, text=True, timeout=30,
                           check=False).stdout.split()  # fmt: skip
    if found:
        subprocess.run([*cli, "DEL", *found], capture_output=True, timeout=30, check=False)
    subprocess.run([*cli, "SREM", NAMESPACES_KEY, prefix], capture_output=True, timeout=30, check=False)


def _new_schema() -> str:
    return f"abs_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema name for one test, dropped afterwards (never a shared database)."""
    schema = _new_schema()
    yield schema
    drop_pg_schema(schema)


@pytest.fixture(scope="module")
def pg_module_schema() -> Iterator[str]:
    """The same, shared by the tests of one module."""
    schema = _new_schema()
    yield schema
    drop_pg_schema(schema)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a passing run with ABS_RELIABILITY_REPORT set, write this run's figures into that file."""
    from pathlib import Path

    from tests import figures

    report = os.environ.get("ABS_RELIABILITY_REPORT")
    if report and exitstatus == 0 and figures.FIGURES:
        figures.write_into(Path(report))
