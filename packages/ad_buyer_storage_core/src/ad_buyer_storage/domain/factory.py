"""Getting the buyer agent's :class:`Storage`: by settings, by name, or by URL; and the
process-wide instance. Each is the generic factory's (:mod:`ad_buyer_storage.plugins.factory`)
given the agent's keyspaces (:func:`~ad_buyer_storage.domain.entities.agent_profile`) and
wrapped in the domain, which *has* the store.

* ``await get_storage()`` - the connected process-wide instance (one per event loop and
  process; concurrent first callers share one connect; a failed connect is not cached).
* ``await close_storage()`` - close it.
* ``get_storage_backend(name=None, **overrides)`` - a new, unconnected :class:`Storage`.
* ``async with open_storage("sqlite:///./x.db") as storage:`` - scoped use, by URL or name.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ad_buyer_storage.domain.entities import agent_profile
from ad_buyer_storage.domain.storage import Storage
from ad_buyer_storage.plugins.factory import Instances, build_store, store_settings
from ad_buyer_storage.plugins.settings import StorageSettings, choose_backend, load_settings

__all__ = ["close_storage", "get_storage", "get_storage_backend", "open_storage"]

log = logging.getLogger("ad_buyer_storage")


def get_storage_backend(
    name: str | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    *,
    settings: StorageSettings | None = None,
    **overrides: Any,
) -> Storage:
    """A new, unconnected :class:`Storage`: *name* (or a URL) or the one the settings choose.

    Keyword *overrides* that are settings (``postgres_pool_max=20``) override the
    environment; the rest go to the backend's factory (``path=``, ``clock=``...).
    """
    if database_url is not None:
        overrides["database_url"] = database_url
    if redis_url is not None:
        overrides["redis_url"] = redis_url
    name, settings, backend_overrides = store_settings(name, settings=settings, **overrides)
    store = build_store(name, settings=settings, profile=agent_profile(), **backend_overrides)
    return Storage(
        store,
        default_ttls={"session": settings.session_default_ttl, "session_index": settings.session_default_ttl},
        sliding_sessions=settings.session_sliding_ttl,
    )


@asynccontextmanager
async def open_storage(target: str | None = None, **overrides: Any) -> AsyncIterator[Storage]:
    """Connect for the ``async with`` block: *target* is a URL, a backend name, or None."""
    async with get_storage_backend(target, **overrides) as storage:
        yield storage


_instances = Instances()


async def get_storage() -> Storage:
    """The connected process-wide storage for the running event loop."""

    async def make() -> Storage:
        settings = load_settings()
        storage = get_storage_backend(settings=settings)
        await storage.connect()  # raises (and caches nothing) if the store is unreachable
        log.info("storage: using %s (%s)", storage.name, choose_backend(settings).reason)
        return storage

    found: Storage = await _instances.get("storage", make)
    return found


async def close_storage() -> None:
    """Close the process-wide storage of the running event loop, if any."""
    storage = _instances.pop("storage")
    if storage is not None:
        await storage.aclose()
