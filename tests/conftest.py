"""Shared fixtures: isolated settings (no .env, no stray STORAGE_* variables) per test."""

from __future__ import annotations

import os

import pytest

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
