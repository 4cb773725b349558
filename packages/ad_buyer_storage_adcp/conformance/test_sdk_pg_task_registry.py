"""The SDK's tests/test_decisioning_pg_task_registry.py with StorageTaskRegistry where it builds
``PostgresTaskRegistry`` (the class patched in ``adcp.decisioning`` and ``adcp.decisioning.pg``)."""

from __future__ import annotations

import adcp.decisioning
import adcp.decisioning.pg
import pytest
from test_decisioning_pg_task_registry import *  # noqa: F403 - the SDK's tests, collected here

from ad_buyer_storage_adcp import StorageTaskRegistry
from conftest import cannot_apply

_NOT_DURABLE = "asserts is_durable is True: this backend's store does not declare durability (correctly False)"
cannot_apply(
    "test_sdk_pg_task_registry",
    {
        "test_postgres_task_registry_stub_raises_import_error_without_pg": "tests the SDK's stub without psycopg",
        **{
            f"{name}@{backend}": _NOT_DURABLE
            for name in (
                "test_postgres_task_registry_is_durable_stub",
                "test_postgres_task_registry_is_durable_class_var",
            )
            for backend in ("memory", "redis")
        },
    },
)


@pytest.fixture(autouse=True)
def _our_registry(durable_class, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = durable_class(StorageTaskRegistry)
    monkeypatch.setattr(adcp.decisioning, "PostgresTaskRegistry", ours)
    monkeypatch.setattr(adcp.decisioning.pg, "PostgresTaskRegistry", ours)
