"""``POSTGRES_*`` settings (the server from ``DATABASE_URL``; timeouts from core's settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ad_buyer_storage.kit.identifiers import DEFAULT_INDEXED_FIELDS, indexed_fields
from ad_buyer_storage.plugins.settings import SettingsBase

__all__ = ["PostgresSettings"]


class PostgresSettings(SettingsBase):
    model_config = SettingsConfigDict(
        env_prefix="POSTGRES_", env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    #: Schema and table of this namespace (created on first connect if missing).
    schema_name: str = Field("public", alias="POSTGRES_SCHEMA")
    table: str = "kv_store"
    #: Connections kept open, and the most opened, per process (the backend checks min <= max).
    pool_min: int = Field(2, ge=0)
    pool_max: int = Field(10, ge=1)
    #: Seconds to wait for a free pooled connection, then BusyError.
    acquire_timeout: float = Field(5.0, gt=0)
    #: Prepared statements cached per connection; 0 behind pgbouncer in transaction mode.
    statement_cache_size: int = Field(100, ge=0)
    #: ``auto`` (probe at connect: direct, a transaction pooler, or unknown: then as under one),
    #: ``transaction`` (PgBouncer ``pool_mode=transaction`` in front: no statement cache, no
    #: session state) or ``session`` (a direct connection, session pooling or a plain TCP proxy:
    #: skips the probe connections, keeps the statement cache).
    pooling: Literal["auto", "transaction", "session"] = "auto"
    #: A direct connection to the server for LISTEN (pub/sub) when DATABASE_URL goes through a
    #: pooler in transaction mode; empty: LISTEN uses DATABASE_URL.
    listen_url: str | None = None
    #: Read replicas (hot standbys) for listing and filtered reads: one URL or several,
    #: comma-separated. Read-your-writes per backend object (see the README); empty: none.
    read_url: str | None = None
    #: Seconds between purges of expired rows (0: never); one instance sweeps at a time.
    sweep_interval: float = Field(60.0, ge=0)
    #: Rows deleted per purge statement.
    sweep_batch: int = Field(500, gt=0)
    #: Top-level JSON fields given an index, comma-separated: filtered lists on them read only
    #: the matching rows (each index costs every write a little; empty: none).
    indexed_fields: str = DEFAULT_INDEXED_FIELDS

    @field_validator("indexed_fields")
    @classmethod
    def _plain_field_names(cls, value: str) -> str:
        indexed_fields("POSTGRES_INDEXED_FIELDS", value)
        return value
