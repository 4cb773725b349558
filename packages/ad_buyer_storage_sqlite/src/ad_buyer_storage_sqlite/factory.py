"""Build a :class:`SQLiteBackend` from the core settings plus its ``SQLITE_*`` settings model."""

from __future__ import annotations

from typing import Any

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.plugins.settings import StorageSettings, load_backend_settings

from .backend import SQLiteBackend, parse_sqlite_url
from .settings import SQLiteSettings

__all__ = ["create_backend"]


def create_backend(settings: StorageSettings, /, **overrides: Any) -> SQLiteBackend:
    """``overrides`` may name any ``SQLITE_*`` setting (``table=``, ``busy_timeout=``...), ``path=``
    (instead of ``DATABASE_URL``), ``clock=`` (tests) and ``read_only=``."""
    sqlite_settings = load_backend_settings(SQLiteSettings, overrides, extra=("path", "clock", "read_only"))
    path = overrides.get("path")
    if path is None:
        url = settings.url("database_url")
        if url is None:
            raise ConfigurationError("the 'sqlite' backend needs DATABASE_URL (for example sqlite:///./ad_buyer.db)")
        path = parse_sqlite_url(url)
    extra = {k: overrides[k] for k in ("clock", "read_only") if k in overrides}
    return SQLiteBackend(str(path), sqlite_settings, **extra)
