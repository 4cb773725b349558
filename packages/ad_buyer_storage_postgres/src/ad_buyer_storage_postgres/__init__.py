"""PostgreSQL backend for ad-buyer-storage (registered as ``postgres``).

Importing this package (as the registry does to list plugins) does not import asyncpg;
``PostgresBackend`` is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import PostgresBackend
    from .dsn import normalise_dsn
    from .settings import PostgresSettings

__all__ = ["PostgresBackend", "PostgresSettings", "normalise_dsn"]
# Where each lazily imported name lives: only backend.py imports the driver.
_HOMES = {"PostgresBackend": "backend", "PostgresSettings": "settings", "normalise_dsn": "dsn"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        # PEP 562: the entry point (plugin.py) lives in this package, and must not import the driver.
        module = importlib.import_module(f".{_HOMES[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
