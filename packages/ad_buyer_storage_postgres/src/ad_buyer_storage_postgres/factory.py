"""Build a :class:`PostgresBackend` from the core settings plus ``POSTGRES_*`` settings."""

from __future__ import annotations

from typing import Any

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.plugins.settings import StorageSettings, load_backend_settings

from .backend import PostgresBackend
from .settings import PostgresSettings

__all__ = ["create_backend"]


def create_backend(settings: StorageSettings, /, **overrides: Any) -> PostgresBackend:
    """``overrides`` may name any ``POSTGRES_*`` setting (``table=``, ``schema=``, ``pool_max=``...)
    or ``url=``."""
    if "schema" in overrides:  # the variable is POSTGRES_SCHEMA; the field cannot shadow BaseModel.schema
        overrides["schema_name"] = overrides.pop("schema")
    if "postgres_schema" in overrides:
        overrides["schema_name"] = overrides.pop("postgres_schema")
    pg = load_backend_settings(PostgresSettings, overrides, extra=("url",))
    url = overrides.get("url") or settings.url("database_url")
    if not url:
        raise ConfigurationError("the 'postgres' backend needs DATABASE_URL (postgresql://user@host:5432/db)")
    return PostgresBackend(
        url,
        schema=pg.schema_name,
        table=pg.table,
        pool_min=pg.pool_min,
        pool_max=pg.pool_max,
        connect_timeout=settings.storage_connect_timeout,
        command_timeout=settings.storage_command_timeout,
        acquire_timeout=pg.acquire_timeout,
        statement_cache_size=pg.statement_cache_size,
        sweep_interval=pg.sweep_interval or None,
        sweep_batch=pg.sweep_batch,
        indexed_fields=pg.indexed_fields,
        pooling=pg.pooling,
        listen_url=pg.listen_url,
        read_urls=pg.read_url,
    )
