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
    or ``url=``; the rest is read from the environment. The URL is core's ``DATABASE_URL`` and
    the timeouts core's ``STORAGE_*_TIMEOUT`` unless ``POSTGRES_*_TIMEOUT`` say otherwise."""
    fields = {PostgresSettings.field_of(name): value for name, value in overrides.items()}
    url = fields.pop("url", None) or settings.url("database_url")
    if not url:
        raise ConfigurationError("the 'postgres' backend needs DATABASE_URL (postgresql://user@host:5432/db)")
    pg = load_backend_settings(PostgresSettings, {**fields, "url": url})
    core: dict[str, Any] = {}
    if pg.connect_timeout is None:
        core["connect_timeout"] = settings.storage_connect_timeout
    if pg.command_timeout is None:
        core["command_timeout"] = settings.storage_command_timeout
    return PostgresBackend(pg.model_copy(update=core) if core else pg)
