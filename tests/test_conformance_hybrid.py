"""The conformance kit through the hybrid router: memory+SQLite, and PostgreSQL+Redis (real servers)."""

from __future__ import annotations

import uuid

import pytest

from ad_buyer_storage import HybridBackend, Route
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.contract.clock import Clock, system_clock
from ad_buyer_storage.plugins.composition import default_routes
from ad_buyer_storage.testing import Harness, StorageContract
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.refusals import postgres_refuses, sqlite_refuses
from tests.conftest import POSTGRES_URL
from tests.test_conformance_redis import REDIS_URL


def seed_routes(fast, durable) -> list[Route]:
    """The seed's production routing: ephemeral keyspaces on *fast*, the rest on *durable*."""
    return [
        Route(prefix, fast if target == "fast" else durable, target)
        for prefix, target in default_routes("fast", "durable").items()
    ]


def memory_and_sqlite(path: str, clock: Clock = system_clock) -> HybridBackend:
    return HybridBackend(seed_routes(MemoryBackend(clock=clock), SQLiteBackend(path, clock=clock)))


def postgres_and_redis(schema: str, table: str, prefix: str) -> HybridBackend:
    return HybridBackend(
        seed_routes(
            RedisBackend(REDIS_URL, key_prefix=prefix),
            PostgresBackend(POSTGRES_URL, schema=schema, table=table, pool_min=1, pool_max=10, sweep_interval=None),
        )
    )


class TestHybridMemorySQLiteContract(StorageContract):
    @pytest.fixture
    def harness(self, tmp_path) -> Harness:
        path = str(tmp_path / "durable.db")
        return Harness(
            lambda clock: memory_and_sqlite(path, clock),
            storage_options={"max_value_bytes": 64 * 1024},
            fail_writes_to=lambda key: sqlite_refuses(path, key),  # deal: keys route to SQLite
        )


class TestHybridPostgresRedisContract(StorageContract):
    @pytest.fixture
    def harness(self, pg_module_schema: str) -> Harness:
        pg_schema = pg_module_schema
        table, prefix = f"t_{uuid.uuid4().hex[:12]}", f"abs-test:{uuid.uuid4().hex}:"
        return Harness(
            lambda clock: postgres_and_redis(pg_schema, table, prefix),
            uses_clock=False,
            child_backend=("tests.test_conformance_hybrid:postgres_and_redis", (pg_schema, table, prefix)),
            storage_options={"max_value_bytes": 64 * 1024},
            fail_writes_to=lambda key: postgres_refuses(POSTGRES_URL, pg_schema, table, key),  # deal: -> PostgreSQL
        )
