"""Sliding TTLs for a backend without the REFRESH flag (``SupportsRefresh``)."""

from __future__ import annotations

from typing import cast

from ad_buyer_storage.contract.protocol import Record, StorageBackend, SupportsExpiry, SupportsRefresh
from ad_buyer_storage.errors import UnsupportedOperationError

__all__ = ["read_refresh"]


async def read_refresh(
    backend: StorageBackend, refresher: SupportsRefresh | None, key: str, ttl_ms: int | None
) -> Record | None:
    """*key*'s live record, its expiry renewed: in one step by *refresher* (the backend, when it
    claims REFRESH for *key*); else, for an explicit *ttl_ms*, a read then a ``set_ttl`` (two steps: a write
    landing between them keeps the renewed expiry, not its own); "the TTL it was last given"
    (None) needs the backend's own record of it."""
    if refresher is not None:
        return await refresher.read_refresh(key, ttl_ms)
    if ttl_ms is None:
        raise UnsupportedOperationError(
            f"the {backend.name!r} backend does not record the TTL a key was written with: pass the TTL to renew to"
        )
    (record,) = await backend.read((key,))
    if record is not None:
        await cast(SupportsExpiry, backend).set_ttl(key, ttl_ms)  # the caller checked EXPIRY
    return record
