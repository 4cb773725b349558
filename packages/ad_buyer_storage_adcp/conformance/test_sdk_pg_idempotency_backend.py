"""The SDK's tests/test_pg_idempotency_backend.py with StorageIdempotencyBackend where it builds
``PgBackend``. The module tests PgBackend's SQL on a mocked psycopg pool: only its protocol test
applies to another backend; its behaviour (first writer wins, hold, replace, expiry, sweeps) is
covered by our own tests through the SDK's IdempotencyStore and WebhookDedupStore."""

from __future__ import annotations

import pytest
import test_pg_idempotency_backend as sdk
from test_pg_idempotency_backend import *  # noqa: F403 - the SDK's tests, collected here

from ad_buyer_storage_adcp import StorageIdempotencyBackend
from conftest import cannot_apply

_SQL = "asserts PgBackend's SQL, DDL or psycopg calls on a mocked connection pool (PostgreSQL-specific)"
cannot_apply(
    "test_sdk_pg_idempotency_backend",
    dict.fromkeys(
        [
            *(
                f"TestConstruction::{name}"
                for name in (
                    "test_default_table_name",
                    "test_custom_table_name_accepted",
                    "test_invalid_identifier_rejected",
                    "test_uppercase_identifier_rejected",
                    "test_rejects_shared_lock_pool",
                )
            ),
            "test_create_schema_executes_create_table_and_index",
            "test_create_schema_uses_custom_table_name",
            "test_get_returns_none_on_miss",
            "test_get_parses_dict_response",
            "test_get_parses_json_string_response",
            "test_get_raises_on_naive_timestamp",
            "test_put_upserts_with_on_conflict",
            "test_put_if_absent_reports_atomic_insert_result",
            "test_hold_reuses_locked_connection_for_get_and_put",
            "test_replace_updates_live_row_only_while_hold_is_active",
            "test_current_time_uses_database_clock",
            "test_delete_expired_uses_supplied_cutoff",
            "test_delete_expired_defaults_to_database_clock",
            "test_delete_expired_returns_zero_on_no_rowcount",
        ],
        _SQL,
    ),
)


@pytest.fixture(autouse=True)
def _our_backend(durable_class, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sdk, "PgBackend", durable_class(StorageIdempotencyBackend))
