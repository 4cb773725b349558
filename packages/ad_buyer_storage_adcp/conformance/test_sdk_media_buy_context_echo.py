"""The SDK's tests/test_media_buy_context_echo.py, its ``context_store`` fixture replaced by
StorageMediaBuyContextStore (the echo tests drive it through the SDK's server)."""

from __future__ import annotations

import pytest
from test_media_buy_context_echo import *  # noqa: F403 - the SDK's tests, collected here

from ad_buyer_storage_adcp import StorageMediaBuyContextStore
from conftest import cannot_apply

_NO_STORE = "uses no context store (echo turned off, a model dump, or a transport detail)"
cannot_apply(
    "test_sdk_media_buy_context_echo",
    {
        "test_pg_sql_file_matches_migration_sql": "compares PgMediaBuyContextStore's PostgreSQL DDL file to its code",
        "test_echo_context_false_leaves_reads_alone": _NO_STORE,
        "test_claiming_overlay_specialism_still_requires_an_adopter_store": _NO_STORE,
        "test_context_object_dump_keeps_null_values": _NO_STORE,
        "test_typed_response_context_keeps_nulls_on_the_wire": _NO_STORE,
    },
)


@pytest.fixture
def context_store(adapter) -> StorageMediaBuyContextStore:  # the SDK module's fixture, redefined
    return adapter(StorageMediaBuyContextStore)
