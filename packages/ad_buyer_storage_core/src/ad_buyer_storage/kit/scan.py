"""For backend authors whose keys sit in an ordered index (a SQL primary key): list them by pages.

A keyset scan: the first page is the keys from the pattern's literal prefix up to the first
string after every key with that prefix, in key order, at most ``batch_size``; each next page
starts after the last key of the one before. Unlike ``OFFSET``, every page is one index range
read however deep the listing goes, and a key written or deleted meanwhile shifts nothing.
Never ``LIKE``: it folds case and reads ``_`` and ``%`` as wildcards. The index must compare
keys as strings of code points (SQLite's default, ``COLLATE "C"`` in PostgreSQL).

The backend supplies ``fetch(page)``, one statement::

    SELECT key FROM t WHERE key >= :start  -- key > :start when not page.inclusive
        AND key < :stop                    -- only when page.stop is not None
        AND <live> ORDER BY key LIMIT :limit

and :func:`scan_pages` does the paging and the matching of the full pattern.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import NamedTuple

from ad_buyer_storage.contract.glob import GlobPattern, prefix_upper_bound

__all__ = ["Page", "scan_pages"]


class Page(NamedTuple):
    """One page of a keyset scan: keys from *start* (included on the first page only) to *stop*
    (excluded; None: no upper bound), in key order, at most *limit*."""

    start: str
    inclusive: bool
    stop: str | None
    limit: int

    @property
    def bounds(self) -> tuple[str, ...]:
        """The bound parameters in statement order: ``(start,)`` or ``(start, stop)``."""
        return (self.start,) if self.stop is None else (self.start, self.stop)


async def scan_pages(
    pattern: GlobPattern, batch_size: int, fetch: Callable[[Page], Awaitable[Sequence[str]]]
) -> AsyncIterator[str]:
    """The keys matching *pattern*, a ``fetch`` per page of *batch_size* keys."""
    stop = prefix_upper_bound(pattern.prefix) if pattern.prefix else None
    page = Page(pattern.prefix, True, stop, batch_size)
    while True:
        keys = await fetch(page)
        for key in keys:
            if pattern.is_prefix_only or pattern.matches(key):
                yield key
        if len(keys) < batch_size:
            return
        page = Page(keys[-1], False, stop, batch_size)
