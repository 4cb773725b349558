"""The conformance kit against the machine's real PostgreSQL, in a schema of its own (dropped after)."""

from __future__ import annotations

import uuid

import pytest

from ad_buyer_storage.testing import Harness, StorageContract
from ad_buyer_storage_postgres import PostgresBackend
from tests._support.refusals import postgres_refuses
from tests._support.shared import POSTGRES_URL


class TestPostgresContract(StorageContract):
    @pytest.fixture
    def harness(self, pg_module_schema: str) -> Harness:
        table = f"t_{uuid.uuid4().hex[:12]}"
        return Harness(
            lambda clock: PostgresBackend(POSTGRES_URL, schema=pg_module_schema, table=table, pool_min=1, pool_max=10),
            uses_clock=False,
            child_backend=("tests._support.recipes:postgres", (POSTGRES_URL, pg_module_schema, table)),
            storage_options={"max_value_bytes": 64 * 1024},
            fail_writes_to=lambda key: postgres_refuses(POSTGRES_URL, pg_module_schema, table, key),
        )
