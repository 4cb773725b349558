"""``SQLITE_*`` settings (the file itself comes from ``DATABASE_URL``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ad_buyer_storage.kit.identifiers import DEFAULT_INDEXED_FIELDS, indexed_fields
from ad_buyer_storage.plugins.settings import SettingsBase

from .backend import MAX_BUSY_TIMEOUT

__all__ = ["SQLiteSettings"]


class SQLiteSettings(SettingsBase):
    model_config = SettingsConfigDict(env_prefix="SQLITE_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    #: Table holding this deployment's keys: one table per namespace.
    table: str = "kv_store"
    #: Seconds a writer waits for another process's write lock before a BusyError.
    busy_timeout: float = Field(5.0, gt=0, le=MAX_BUSY_TIMEOUT)
    #: Seconds between background purges of expired rows (0 disables the sweeper).
    sweep_interval: float = Field(60.0, ge=0)
    #: Rows deleted per purge statement, so a purge never holds the write lock for long.
    sweep_batch: int = Field(500, gt=0)
    #: NORMAL: a commit survives the process dying (WAL); FULL: also a power cut (an fsync per commit).
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    #: Top-level JSON fields given an index, comma-separated: filtered lists on them read only
    #: the matching rows (each index costs every write a little; empty: none).
    indexed_fields: str = DEFAULT_INDEXED_FIELDS

    @field_validator("indexed_fields")
    @classmethod
    def _plain_field_names(cls, value: str) -> str:
        indexed_fields("SQLITE_INDEXED_FIELDS", value)
        return value
