"""The backends every adapter test runs on: memory, SQLite, Redis, PostgreSQL and hybrid
(PostgreSQL + Redis), each isolated (a fresh file, key prefix or schema) and cleaned up."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ad_buyer_storage import Store, build_store
from tests._support.shared import POSTGRES_URL, REDIS_URL, drop_pg_schema, drop_redis_prefix

BACKENDS = ["memory", "sqlite", "redis", "postgres", "hybrid"]

# `nox -s deps-oldest` runs without the AdCP SDK (it needs a newer pydantic than core's floor):
# there, these tests are not collected. Every other session installs the package and the SDK.
if importlib.util.find_spec("adcp") is None or importlib.util.find_spec("ad_buyer_storage_adcp") is None:
    collect_ignore_glob = ["test_*.py"]


@dataclass
class Backend:
    """How to reach one isolated store: a target for the adapters, and the environment that
    goes with it (also what a child process needs to reach the same store)."""

    name: str
    url: str  # a URL or a backend name
    env: dict[str, str] = field(default_factory=dict)
    shared: Store | None = None  # memory: one store object, the only way to share it

    def target(self) -> str | Store:
        """What an adapter is built from: the shared Store (memory), else the URL or name."""
        return self.shared if self.shared is not None else self.url

    @property
    def multi_process(self) -> bool:
        return self.name != "memory"


def make_backend(name: str, tmp_path: Path) -> Backend:
    tag = uuid.uuid4().hex[:12]
    env = {"POSTGRES_SCHEMA": f"abs_test_{tag}", "POSTGRES_SWEEP_INTERVAL": "0", "REDIS_KEY_PREFIX": f"abs-test:{tag}:"}
    if name == "memory":
        return Backend(name, "memory", shared=build_store("memory"))
    if name == "sqlite":
        return Backend(name, f"sqlite:///{tmp_path / f'adcp-{tag}.db'}")
    if name == "redis":
        return Backend(name, REDIS_URL, env)
    if name == "postgres":
        return Backend(name, POSTGRES_URL, env)
    return Backend(name, "hybrid", {**env, "DATABASE_URL": POSTGRES_URL, "REDIS_URL": REDIS_URL})


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    found = make_backend(request.param, tmp_path)
    for name, value in found.env.items():
        monkeypatch.setenv(name, value)
    try:
        yield found
    finally:
        if "POSTGRES_SCHEMA" in found.env and found.name in ("postgres", "hybrid"):
            drop_pg_schema(found.env["POSTGRES_SCHEMA"])
        if "REDIS_KEY_PREFIX" in found.env and found.name in ("redis", "hybrid"):
            drop_redis_prefix(found.env["REDIS_KEY_PREFIX"])


@pytest.fixture(scope="session")
def backend_factory():
    """make_backend, for module-scoped fixtures (the package's tests are not an importable package)."""
    return make_backend


@pytest.fixture
def child_env(backend: Backend) -> dict[str, str]:
    """The environment of a child process reaching the same store."""
    return {**os.environ, **backend.env}
