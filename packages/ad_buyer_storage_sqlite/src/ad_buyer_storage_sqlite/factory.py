"""Build a :class:`SQLiteBackend` from the core settings plus ``SQLITE_*`` settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ad_buyer_storage.settings import StorageSettings

from .backend import SQLiteBackend, parse_sqlite_url

__all__ = ["create_backend"]


def create_backend(settings: StorageSettings, /, **overrides: Any) -> SQLiteBackend:
    """``overrides`` may name any ``SQLITE_*`` setting (``table=``, ``busy_timeout=``...), ``path=``
    (instead of ``DATABASE_URL``) and ``clock=`` (tests)."""
    # Imported here: resolving a backend by name must not pay for pydantic-settings.
    from ad_buyer_storage.settings import load_backend_settings

    from .settings import SQLiteSettings

    sqlite_settings = load_backend_settings(SQLiteSettings, overrides, extra=("path", "clock", "read_only"))
    path = overrides.get("path")
    extra = {k: overrides[k] for k in ("clock", "read_only") if k in overrides}
    return SQLiteBackend(
        parse_sqlite_url(settings.database_url) if path is None else str(path),
        table=sqlite_settings.table,
        busy_timeout=sqlite_settings.busy_timeout,
        sweep_interval=sqlite_settings.sweep_interval or None,
        sweep_batch=sqlite_settings.sweep_batch,
        synchronous=sqlite_settings.synchronous,
        **extra,
    )
