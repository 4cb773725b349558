"""Build a :class:`PostgresBackend` from the core settings plus ``POSTGRES_*`` settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ad_buyer_storage.settings import StorageSettings

from .backend import PostgresBackend

__all__ = ["create_backend"]


def create_backend(settings: StorageSettings, /, **overrides: Any) -> PostgresBackend:
    """``overrides`` may name any ``POSTGRES_*`` setting (``table=``, ``schema=``...) or ``url=``."""
    # Imported here: resolving a backend by name must not pay for pydantic-settings.
    from ad_buyer_storage.settings import load_backend_settings

    from .settings import PostgresSettings

    if "schema" in overrides:  # the variable is POSTGRES_SCHEMA; the field cannot shadow BaseModel.schema
        overrides["schema_name"] = overrides.pop("schema")
    if "postgres_schema" in overrides:
        overrides["schema_name"] = overrides.pop("postgres_schema")
    pg = load_backend_settings(PostgresSettings, overrides, extra=("url",))
    return PostgresBackend(
        overrides.get("url") or settings.database_url,
        schema=pg.schema_name,
        table=pg.table,
        pool_min=settings.postgres_pool_min,
        pool_max=settings.postgres_pool_max,
        connect_timeout=settings.storage_connect_timeout,
        command_timeout=settings.storage_command_timeout,
        acquire_timeout=pg.acquire_timeout,
        statement_cache_size=pg.statement_cache_size,
        sweep_interval=pg.sweep_interval or None,
        sweep_batch=pg.sweep_batch,
    )
