"""The conformance kit against SQLite: a file (durable, multi-process) and :memory:."""

import pytest

from ad_buyer_storage.testing import Harness, StorageContract
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.refusals import sqlite_refuses


class TestSQLiteFileContract(StorageContract):
    @pytest.fixture
    def harness(self, tmp_path) -> Harness:
        path = str(tmp_path / "contract.db")
        return Harness(
            lambda clock: SQLiteBackend(path, clock=clock),
            child_backend=("tests._support.recipes:sqlite_file", (path,)),
            storage_options={"max_value_bytes": 64 * 1024},
            fail_writes_to=lambda key: sqlite_refuses(path, key),
        )


class TestSQLiteMemoryContract(StorageContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return Harness(
            lambda clock: SQLiteBackend(":memory:", clock=clock), storage_options={"max_value_bytes": 64 * 1024}
        )
