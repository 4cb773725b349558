"""Filtered lists at scale: what ``list_deals(filters)`` costs, in single ``get``s of the same run.

Per backend and size (10^4, 10^5 and, in a full run, 10^6 deals, 0.1% of them ``paused``):

* ``selective``: ``list_deals({"status": "paused"})``, every match (10, 100 or 1,000 deals);
* ``first 100``: ``list_deals({"status": "active"}, limit=100)``, an unselective filter;
* ``page walk``: ``list_deals({"status": "paused"}, limit=20, cursor=...)`` to the end.

Each is the median of 5 calls (one call at 10^6 deals, where the page walk is also left out for
stores that cannot filter: each page there scans every deal), also given as a number of single
``get`` calls (the median of 200 in the same run). Target: at most 60 for the selective list of
100 over 100,000 deals on SQLite and PostgreSQL.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ad_buyer_storage import Storage
from ad_buyer_storage.contract import SupportsQuery
from bench.subjects import ours


async def _median_s(call: Callable[[], Awaitable[Any]], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def filtered_lists(backends: list[str], sizes: list[int], reps: int = 5) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backend in [b for b in backends if b in ("memory", "sqlite", "redis", "postgres", "hybrid")]:
        subject = ours(backend)
        await subject.open()
        try:
            rows += await _measure(backend, subject.storage, sizes, reps)
        finally:
            await subject.close()
    return rows


async def _measure(backend: str, storage: Storage, sizes: list[int], reps: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    async def walk() -> int:
        cursor, count = None, 0
        while True:
            page = await storage.list_deals({"status": "paused"}, limit=20, cursor=cursor)
            count += len(page)
            cursor = page.next_cursor
            if cursor is None:
                return count

    checks: dict[str, Callable[[], Awaitable[Any]]] = {
        "selective": lambda: storage.list_deals({"status": "paused"}),
        "first 100": lambda: storage.list_deals({"status": "active"}, limit=100),
        "page walk": walk,
    }
    pushed_down = isinstance(storage.backend, SupportsQuery)
    loaded = 0
    for size in sizes:
        await _load_more(storage, loaded, size)
        loaded = size
        get_s = await _median_s(lambda: storage.get("deal:0000001"), 200)
        paused = size // 1000
        assert len(await storage.list_deals({"status": "paused"})) == paused
        for label, call in checks.items():
            if label == "page walk" and size >= 1_000_000 and not pushed_down:
                continue  # every page is a scan of every deal there: minutes, and nothing new to learn
            seconds = await _median_s(call, reps if size < 1_000_000 else 1)
            rows.append({"backend": backend, "deals": size, "list": label, "matches": paused,
                         "ms": round(seconds * 1000, 2), "gets": round(seconds / get_s, 1)})  # fmt: skip
            print(f"  {backend:<9} {size:>9,} {label:<10} {seconds * 1000:9.2f} ms = {seconds / get_s:8.1f} gets")
    return rows


async def _load_more(storage: Storage, loaded: int, size: int) -> None:
    """Grow the store from *loaded* to *size* deals (the same 0.1% paused)."""
    for start in range(loaded, size, 2000):
        await storage.set_many(
            {
                f"deal:{i:07d}": {"deal_id": f"d{i}", "status": "paused" if i % 1000 == 0 else "active", "cpm": "9.5"}
                for i in range(start, min(size, start + 2000))
            }
        )
