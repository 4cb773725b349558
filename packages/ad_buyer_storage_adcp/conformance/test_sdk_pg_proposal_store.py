"""The SDK's tests/test_decisioning_pg_proposal_store.py with StorageProposalStore where it builds
``PgProposalStore`` (the class patched in ``adcp.decisioning`` and ``adcp.decisioning.pg``)."""

from __future__ import annotations

import adcp.decisioning
import adcp.decisioning.pg
import pytest
from test_decisioning_pg_proposal_store import *  # noqa: F403 - the SDK's tests, collected here

from ad_buyer_storage_adcp import StorageProposalStore
from conftest import cannot_apply

_SQL = "PostgreSQL DDL and SQL helpers of PgProposalStore (table names, migration file, column codecs)"
_NOT_DURABLE = "asserts is_durable is True: this backend's store does not declare durability (correctly False)"
cannot_apply(
    "test_sdk_pg_proposal_store",
    {
        "test_pg_proposal_store_stub_raises_import_error_without_pg": "tests the SDK's stub without psycopg",
        **dict.fromkeys(
            (
                "test_pg_proposal_store_migration_sql_default_table",
                "test_pg_proposal_store_migration_sql_honors_custom_table_name",
                "test_pg_proposal_store_migration_sql_rejects_unsafe_table_name",
                "test_pg_proposal_store_rejects_unsafe_table_name",
                "test_pg_proposal_store_accepts_custom_table_name",
                "test_encode_decode_recipes_round_trip",
                "test_encode_recipes_accepts_dict_shaped_passthrough",
                "test_decode_payload_accepts_dict_and_string",
                "test_ensure_utc_rejects_naive_datetime",
                "test_ensure_utc_none_passthrough",
                "test_migration_sql_matches_proposal_store_sql_file",
                "test_default_decoder_fails_loud_on_typed_payload",
            ),
            _SQL,
        ),
        **{
            f"{name}@{backend}": _NOT_DURABLE
            for name in ("test_pg_proposal_store_is_durable_stub", "test_pg_proposal_store_is_durable_class_var")
            for backend in ("memory", "redis")
        },
    },
)


@pytest.fixture(autouse=True)
def _our_proposal_store(durable_class, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = durable_class(StorageProposalStore)
    monkeypatch.setattr(adcp.decisioning, "PgProposalStore", ours)
    monkeypatch.setattr(adcp.decisioning.pg, "PgProposalStore", ours)
