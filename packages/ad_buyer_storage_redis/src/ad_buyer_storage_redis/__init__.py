"""Redis backend for ad-buyer-storage (registered as ``redis``).

Importing this package (as the registry does to list plugins) does not import redis-py;
``RedisBackend`` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import RedisBackend, RedisClusterBackend

__all__ = ["RedisBackend", "RedisClusterBackend"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        # PEP 562: the entry point (plugin.py) lives in this package, and must not import the driver.
        from . import backend  # noqa: PLC0415

        return getattr(backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
