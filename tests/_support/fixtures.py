"""Fixtures shared by several test modules (loaded by ``conftest.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support.mirror_workload import Stores
from tests.conftest import drop_pg_schema, drop_redis_prefix


@pytest.fixture
def move_stores(tmp_path: Path) -> Iterator[Stores]:
    """An SQLite file and a PostgreSQL+Redis namespace, emptied afterwards: the two sides of a move."""
    tag = uuid.uuid4().hex[:12]
    stores = Stores(str(tmp_path / "old.db"), f"abs_test_{tag}", f"abs-test:{tag}:")
    yield stores
    drop_pg_schema(stores.schema)
    drop_redis_prefix(stores.prefix)
