"""The conformance kit through the hybrid router: memory+SQLite, and PostgreSQL+Redis (real servers)."""

from __future__ import annotations

import uuid

import pytest

from ad_buyer_storage.testing import Harness, StorageContract
from tests._support.recipes import memory_and_sqlite, postgres_and_redis
from tests._support.refusals import postgres_refuses, sqlite_refuses
from tests._support.shared import POSTGRES_URL


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
            child_backend=("tests._support.recipes:postgres_and_redis", (pg_schema, table, prefix)),
            storage_options={"max_value_bytes": 64 * 1024},
            fail_writes_to=lambda key: postgres_refuses(POSTGRES_URL, pg_schema, table, key),  # deal: -> PostgreSQL
        )
