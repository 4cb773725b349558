"""Build a :class:`SQLiteBackend` from the core settings plus ``SQLITE_*`` settings."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.settings import StorageSettings

from .backend import SQLiteBackend, parse_sqlite_url
from .settings import SQLiteSettings

__all__ = ["create_backend"]


def create_backend(settings: StorageSettings, /, **overrides: Any) -> SQLiteBackend:
    """``overrides`` may name any ``SQLITE_*`` setting (``table=``, ``busy_timeout=``...), ``path=``
    (instead of ``DATABASE_URL``) and ``clock=`` (tests)."""
    path = overrides.pop("path", None)
    clock = overrides.pop("clock", None)
    try:
        sqlite_settings = SQLiteSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"SQLITE_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid SQLite settings: {problems}") from None
    extra = {} if clock is None else {"clock": clock}
    return SQLiteBackend(
        parse_sqlite_url(settings.database_url) if path is None else str(path),
        table=sqlite_settings.table,
        busy_timeout=sqlite_settings.busy_timeout,
        sweep_interval=sqlite_settings.sweep_interval or None,
        sweep_batch=sqlite_settings.sweep_batch,
        **extra,
    )
