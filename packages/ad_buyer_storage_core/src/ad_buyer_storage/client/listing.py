"""Listing: ``scan``, ``select`` (filtered pages, in the store where it can), ``keys``, ``count``,
``delete_pattern`` and ``clear`` of :class:`~ad_buyer_storage.client.store.Store`."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ad_buyer_storage.client import telemetry
from ad_buyer_storage.client.base import (
    _DELETE_BATCH,
    _LIST_BATCH,
    _SCAN_BATCH,
    _SELECT_PAGE,
    Selection,
    StoreBase,
    log,
)
from ad_buyer_storage.client.filters import matches, pushable, wanted
from ad_buyer_storage.client.validation import check_key
from ad_buyer_storage.contract.glob import compile_glob, escape_glob
from ad_buyer_storage.contract.protocol import StorageBackend, SupportsReleaseNamespace
from ad_buyer_storage.errors import InvalidInputError, InvalidPatternError, StorageError

__all__ = ["Listing"]


class Listing(StoreBase):
    """Listing and deleting by pattern or prefix (part of ``Store``)."""

    # -- listing -----------------------------------------------------------------------------
    async def scan(self, pattern: str = "*", *, batch_size: int = _SCAN_BATCH) -> AsyncIterator[str]:
        """Stream live keys matching the glob *pattern*, each once, in no particular order."""
        backend = self.require_open()
        compiled = compile_glob(pattern)
        if batch_size < 1:
            raise InvalidInputError("batch_size must be >= 1")
        async for key in backend.scan(compiled, batch_size):
            yield key

    async def select(
        self, prefix: str, filters: Mapping[str, Any] | None = None, *, after: str | None = None,
        limit: int | None = None,
    ) -> Selection:  # fmt: skip
        """Records whose key starts with *prefix* and sorts after *after*, in key order, whose
        top-level fields equal *filters* (JSON equality, see :mod:`ad_buyer_storage.client.filters`),
        at most *limit*. Evaluated in the store where it can (``SupportsQuery``: an index range
        scan on SQLite and PostgreSQL); every record is checked again here, so the answer is
        the same on every backend. Pass ``after=selection.last_key`` for the next page."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(
                self, "select", prefix, Listing.select(self, prefix, filters, after=after, limit=limit)
            )
        backend = self.require_open()
        if not isinstance(prefix, str):
            raise InvalidInputError(f"prefix must be a str, not {type(prefix).__name__}")
        if after is not None:
            after = check_key(after)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidInputError(f"limit must be a non-negative int or None, not {limit!r}")
        expected = wanted(filters)
        if limit == 0:  # nothing, and the same place to go on from
            return Selection([], after)
        if self._querier is None:
            return await self._select_by_scan(backend, prefix, expected, after, limit)
        where = pushable(expected)
        rows: list[tuple[str, Any]] = []
        cursor = after
        # One match past the page is looked for: a page that ends the listing says so
        # (last_key None), instead of sending its caller for an empty page.
        wanted_rows = None if limit is None else limit + 1
        while wanted_rows is None or len(rows) < wanted_rows:
            page = _SELECT_PAGE if wanted_rows is None else max(1, min(_SELECT_PAGE, wanted_rows - len(rows)))
            if len(where) < len(expected):
                page = _SELECT_PAGE  # the store cannot filter it all: fewer, larger round trips
            found = await self._querier.query(prefix, where, cursor, page)
            for key, record in found:
                value = self._codec.decode(record.value)
                cursor = key
                if not expected or matches(value, expected):
                    rows.append((key, value))
                    if wanted_rows is not None and len(rows) >= wanted_rows:
                        return _page(rows, limit)
            if len(found) < page:
                return _page(rows, limit)
        return _page(rows, limit)

    async def _select_by_scan(
        self, backend: StorageBackend, prefix: str, expected: dict[str, Any], after: str | None, limit: int | None
    ) -> Selection:
        """``select`` on a backend without ``SupportsQuery``: every key under *prefix* listed
        and sorted (memory and time grow with the keyspace, per page), then read in bulk."""
        keys = sorted([key async for key in backend.scan(compile_glob(escape_glob(prefix) + "*"), _SCAN_BATCH)])
        start = 0 if after is None else bisect.bisect_right(keys, after)
        rows: list[tuple[str, Any]] = []
        while start < len(keys):
            chunk = keys[start : start + _SELECT_PAGE]
            start += len(chunk)
            for key, record in zip(chunk, await backend.read(chunk), strict=True):
                if record is None:
                    continue  # expired or deleted since the listing
                value = self._codec.decode(record.value)
                if not expected or matches(value, expected):
                    rows.append((key, value))
                    if limit is not None and len(rows) > limit:
                        return _page(rows, limit)
        return _page(rows, limit)

    async def keys(self, pattern: str = "*") -> list[str]:
        """Every live key matching *pattern*, sorted."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "keys", pattern, Listing.keys(self, pattern))
        # The whole list is wanted: big pages mean few round trips.
        return sorted([key async for key in self.scan(pattern, batch_size=_LIST_BATCH)])

    async def count(self, pattern: str = "*") -> int:
        """How many live keys match *pattern*."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "count", pattern, Listing.count(self, pattern))
        n = 0
        async for _ in self.scan(pattern):
            n += 1
        return n

    async def delete_pattern(self, pattern: str) -> int:
        """Delete every live key matching *pattern*; ``"*"`` (explicit) deletes the namespace."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "delete_pattern", pattern, Listing.delete_pattern(self, pattern))
        if pattern == "":
            raise InvalidPatternError("refusing an empty pattern; pass '*' to delete everything")
        backend = self.require_open()
        compiled = compile_glob(pattern)
        if compiled.is_prefix_only and self._prefix_remover is not None:
            return await self._prefix_remover.remove_prefix(compiled.prefix)  # one range DELETE on SQL stores
        deleted = 0
        batch: list[str] = []
        async for key in backend.scan(compiled, _SCAN_BATCH):
            batch.append(key)
            if len(batch) >= _DELETE_BATCH:
                deleted += await backend.remove(batch)
                batch = []
        if batch:
            deleted += await backend.remove(batch)
        return deleted

    async def clear(self) -> int:
        """Delete every key of this namespace (and nothing outside it), then release it."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "clear", None, Listing.clear(self))
        deleted = await self.delete_pattern("*")
        if isinstance(self._backend, SupportsReleaseNamespace):
            try:
                await self._backend.release_namespace()
            except StorageError as exc:  # the keys are gone: the claim left behind only reserves the name
                log.warning("cleared, but the namespace was not released: %s", exc)
        return deleted


def _page(rows: list[tuple[str, Any]], limit: int | None) -> Selection:
    """*rows* found looking one past *limit*: the page, and where the next one starts (None
    when nothing matched past it)."""
    if limit is None or len(rows) <= limit:
        return Selection(rows, None)
    return Selection(rows[:limit], rows[limit - 1][0])
