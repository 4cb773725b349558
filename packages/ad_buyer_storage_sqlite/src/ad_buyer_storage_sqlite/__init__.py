"""SQLite backend for ad-buyer-storage (registered as ``sqlite``).

Importing this package (as the registry does to list plugins) does not import aiosqlite;
``SQLiteBackend`` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import SQLiteBackend, parse_sqlite_url

__all__ = ["SQLiteBackend", "parse_sqlite_url"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        # PEP 562: the entry point (plugin.py) lives in this package, and must not import the driver.
        from . import backend  # noqa: PLC0415

        return getattr(backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
