"""``SupportsQuery.query`` answered by any backend, for routers and mirrors whose backend lacks it."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from ad_buyer_storage.contract.glob import compile_glob, escape_glob
from ad_buyer_storage.contract.protocol import Filter, Record, StorageBackend, SupportsQuery

__all__ = ["query"]


async def query(
    backend: StorageBackend, querier: SupportsQuery | None, prefix: str, where: Sequence[Filter], after: str | None,
    limit: int,
) -> list[tuple[str, Record]]:  # fmt: skip
    """*backend*'s records under *prefix* after *after*, in key order, at most *limit* (filtered
    by *querier*, the backend itself when it offers ``query``; else every key under *prefix* is
    listed and sorted, then the page read: no filter applied, core checks every record)."""
    if querier is not None:
        return list(await querier.query(prefix, where, after, limit))
    keys = sorted([key async for key in backend.scan(compile_glob(escape_glob(prefix) + "*"), 1000)])
    start = 0 if after is None else bisect.bisect_right(keys, after)
    out: list[tuple[str, Record]] = []
    while start < len(keys) and len(out) < limit:
        chunk = keys[start : start + limit - len(out)]
        start += len(chunk)
        out += [(key, record) for key, record in zip(chunk, await backend.read(chunk), strict=True) if record]
    return out
