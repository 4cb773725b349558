"""The conformance kit against the machine's real PostgreSQL, in a schema of its own (dropped after)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from ad_buyer_storage.testing import Harness, StorageContract
from ad_buyer_storage_postgres import PostgresBackend

POSTGRES_URL = os.environ.get("AD_BUYER_STORAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def open_backend(url: str, schema: str, table: str) -> PostgresBackend:
    """Child-process recipe for the kit's multi-process test."""
    return PostgresBackend(url, schema=schema, table=table, sweep_interval=None)


@pytest.fixture(scope="module")
def pg_schema() -> Iterator[str]:
    """A schema of this module's own; dropped at the end (never a shared database)."""
    schema = f"abs_test_{uuid.uuid4().hex[:12]}"
    yield schema

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


class TestPostgresContract(StorageContract):
    @pytest.fixture
    def harness(self, pg_schema: str) -> Harness:
        table = f"t_{uuid.uuid4().hex[:12]}"
        return Harness(
            lambda clock: PostgresBackend(POSTGRES_URL, schema=pg_schema, table=table, pool_min=1, pool_max=10),
            uses_clock=False,
            child_backend=("tests.test_conformance_postgres:open_backend", (POSTGRES_URL, pg_schema, table)),
            storage_options={"max_value_bytes": 64 * 1024},
        )
