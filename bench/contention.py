"""Concurrent calls with coalescing on and off, and the same calls made one after another.

Per backend, each workload is 200 calls: made at once (``asyncio.gather``) through a store with
coalescing (the default) and through one with ``coalesce=False``, and one after another. The
rule: coalescing never makes a workload slower than ``coalesce=False`` (*on/off* <= 1), and
concurrent calls on one key cost no more than the same calls in sequence (*on/seq* <= 1).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from ad_buyer_storage import Storage
from bench.subjects import Ours, ours

CALLS = 200

Call = Callable[[Storage, str, int], Awaitable[Any]]


def _bump(deal: dict[str, Any]) -> dict[str, Any]:
    return {**deal, "spend": deal["spend"] + 1}


WORKLOADS: dict[str, Call] = {
    "get, distinct keys": lambda s, p, i: s.get(f"{p}deal:{i}"),
    "set, distinct keys": lambda s, p, i: s.set(f"{p}deal:{i}", {"spend": i}),
    "set, one key": lambda s, p, i: s.set(f"{p}deal:hot", {"spend": i}),
    "update, one key": lambda s, p, i: s.update(f"{p}deal:hot", _bump),
    "incr, one key": lambda s, p, i: s.incr(f"{p}counter:hot"),
    "incr Decimal, one key": lambda s, p, i: s.incr(f"{p}money:hot", Decimal("0.01")),
}


async def _once(storage: Storage, call: Call, concurrent: bool) -> float:
    prefix = f"c{uuid.uuid4().hex[:8]}:"
    await storage.set_many({f"{prefix}deal:{i}": {"spend": i} for i in range(CALLS)})
    await storage.set(f"{prefix}deal:hot", {"spend": 0})
    started = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(call(storage, prefix, i) for i in range(CALLS)))
    else:
        for i in range(CALLS):
            await call(storage, prefix, i)
    elapsed = time.perf_counter() - started
    await storage.delete_pattern(f"{prefix}*")
    return elapsed


async def _median_ms(storage: Storage, call: Call, concurrent: bool, reps: int) -> float:
    return statistics.median([await _once(storage, call, concurrent) for _ in range(reps)]) * 1000


def _without_coalescing(subject: Ours) -> Ours:
    subject.storage = Storage(subject.storage.store.backend, coalesce=False)  # not connected yet
    return subject


async def coalescing(backends: list[str], reps: int = 5) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backend in [b for b in backends if b in ("sqlite", "redis", "postgres", "hybrid")]:
        on, off = ours(backend), _without_coalescing(ours(backend))
        await on.open()
        await off.open()
        try:
            for name, call in WORKLOADS.items():
                on_ms = await _median_ms(on.storage, call, True, reps)
                off_ms = await _median_ms(off.storage, call, True, reps)
                seq_ms = await _median_ms(on.storage, call, False, reps)
                rows.append({"backend": backend, "workload": name, "on_ms": on_ms, "off_ms": off_ms,
                             "seq_ms": seq_ms, "on_vs_off": on_ms / off_ms, "on_vs_seq": on_ms / seq_ms})  # fmt: skip
                print(f"  {backend:8} {name:24} on {on_ms:8.1f} ms  off {off_ms:8.1f} ms  seq {seq_ms:8.1f} ms",
                      flush=True)  # fmt: skip
        finally:
            await on.close()
            await off.close()
    return rows
