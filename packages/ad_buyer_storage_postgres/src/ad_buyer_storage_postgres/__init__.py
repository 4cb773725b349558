"""PostgreSQL backend for ad-buyer-storage (registered as ``postgres``).

Importing this package (as the registry does to list plugins) does not import asyncpg;
``PostgresBackend`` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import PostgresBackend, normalise_dsn

__all__ = ["PostgresBackend", "normalise_dsn"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        # PEP 562: the entry point (plugin.py) lives in this package, and must not import the driver.
        from . import backend  # noqa: PLC0415

        return getattr(backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
