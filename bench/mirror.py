"""What the mirror costs over its primary alone, and how fast ``migrate`` copies a store.

The move the README describes: SQLite (primary) mirrored to PostgreSQL + Redis (the seed's
hybrid routes). Three subjects write the same keys the same way:

* ``primary alone``: SQLite, no mirror (what the app paid before the move);
* ``both, one after the other``: the same write on SQLite, then on the hybrid store, by hand
  (the floor of any dual write: two stores, two round trips);
* ``mirror``: ``STORAGE_TYPE=mirror`` (the write, its copy, and the check that the copy is
  current).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ad_buyer_storage import Storage
from ad_buyer_storage.composed import HybridBackend, Route
from ad_buyer_storage.composed.mirror import MirrorBackend
from ad_buyer_storage.domain.entities import default_routes
from ad_buyer_storage.ops.migrate import migrate
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from bench.subjects import REDIS_URL, _postgres, rate

DOC = {"status": "active", "deal_type": "PMP", "cpm": "12.50", "spend": "1042.10", "seller": "seller-17"}


def _hybrid(tag: str) -> HybridBackend:
    fast, durable = RedisBackend(REDIS_URL, key_prefix=f"bench-{tag}:", max_connections=64), _postgres(tag)
    return HybridBackend(
        [Route(p, fast if t == "fast" else durable, t) for p, t in default_routes("fast", "durable").items()]
    )


def _sqlite(tag: str) -> SQLiteBackend:
    return SQLiteBackend(os.path.join(tempfile.gettempdir(), f"bench-mirror-{tag}.db"), sweep_interval=None)


class _Both:
    """The same call on two storages, one after the other."""

    def __init__(self, first: Storage, second: Storage) -> None:
        self.first, self.second = first, second

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def both(*args: Any, **kwargs: Any) -> Any:
            result = await getattr(self.first, name)(*args, **kwargs)
            await getattr(self.second, name)(*args, **kwargs)
            return result

        return both


def _ops(s: Any) -> list[tuple[str, Callable[[int], Awaitable[Any]], int, int]]:
    """(name, call, calls, concurrency)."""
    bulk = {f"deal:b{i}": DOC for i in range(1000)}
    return [
        ("set", lambda i: s.set(f"deal:{i % 500}", DOC), 1000, 1),
        ("set+ttl (session)", lambda i: s.set(f"session:{i % 500}", DOC, ttl=1800), 1000, 1),
        ("delete", lambda i: s.delete(f"deal:{i % 500}"), 1000, 1),
        ("incr", lambda i: s.incr(f"rate_limit:{i % 50}"), 1000, 1),
        ("set x64", lambda i: s.set(f"deal:{i % 2000}", DOC), 2000, 64),
        ("set_many 1000", lambda i: s.set_many(bulk), 20, 1),
    ]


async def mirror_overhead(reps: int = 5) -> list[dict[str, Any]]:
    """Per operation: calls/s of each subject (median of *reps*) and the mirror's time ratio."""
    tags = [uuid.uuid4().hex[:10] for _ in range(3)]
    alone = Storage(_sqlite(tags[0]))
    by_hand_first, by_hand_second = Storage(_sqlite(tags[1])), Storage(_hybrid(tags[1]))
    mirrored = Storage(MirrorBackend(_sqlite(tags[2]), _hybrid(tags[2])))
    subjects: dict[str, Any] = {"primary alone": alone, "both by hand": _Both(by_hand_first, by_hand_second),
                                "mirror": mirrored}  # fmt: skip
    for storage in (alone, by_hand_first, by_hand_second, mirrored):
        await storage.connect()
    rows: list[dict[str, Any]] = []
    try:
        for index, (op, _, n, concurrency) in enumerate(_ops(alone)):
            rates: dict[str, float] = {}
            for label, subject in subjects.items():
                call = _ops(subject)[index][1]
                await rate(call, min(n, 100), concurrency)  # warm up (and create the keys deleted later)
                samples = []
                for _ in range(reps):
                    if op == "delete":
                        await rate(_ops(subject)[0][1], 500, 1)  # something to delete
                    samples.append(await rate(call, n, concurrency))
                rates[label] = statistics.median(samples)
            rows.append({"op": op, **rates, "ratio": rates["primary alone"] / rates["mirror"],
                         "ratio_by_hand": rates["both by hand"] / rates["mirror"]})  # fmt: skip
            print(f"  mirror {op:<18} alone {rates['primary alone']:9,.0f}/s  by hand {rates['both by hand']:9,.0f}/s  "
                  f"mirror {rates['mirror']:9,.0f}/s  ({rows[-1]['ratio']:.2f}x alone)", flush=True)  # fmt: skip
    finally:
        for storage in (alone, by_hand_first, by_hand_second, mirrored):
            await storage.clear()
            await storage.aclose()
        for tag in tags:
            for suffix in ("", "-wal", "-shm"):
                path = os.path.join(tempfile.gettempdir(), f"bench-mirror-{tag}.db{suffix}")
                if os.path.exists(path):
                    os.remove(path)
    return rows


async def migration(keys: int = 100_000) -> dict[str, Any]:
    """``migrate`` of *keys* (80% deals, 20% sessions with a TTL) from SQLite to PostgreSQL+Redis."""
    tag = uuid.uuid4().hex[:10]
    source, target = Storage(_sqlite(tag)), Storage(_hybrid(tag))
    async with source, target:
        try:
            deals = keys * 4 // 5
            for start in range(0, deals, 5000):
                await source.set_many({f"deal:{i}": {**DOC, "n": i} for i in range(start, min(deals, start + 5000))})
            for start in range(deals, keys, 5000):
                await source.set_many({f"session:{i}": {"buyer": i} for i in range(start, min(keys, start + 5000))},
                                      ttl=3600)  # fmt: skip
            started = time.perf_counter()
            report = await migrate(source, target)
            seconds = time.perf_counter() - started
            assert report.copied == keys, report
        finally:
            await source.clear()
            await target.clear()
    for suffix in ("", "-wal", "-shm"):
        path = os.path.join(tempfile.gettempdir(), f"bench-mirror-{tag}.db{suffix}")
        if os.path.exists(path):
            os.remove(path)
    print(f"  migrate {keys:,} keys SQLite -> PostgreSQL+Redis: {seconds:.1f} s ({keys / seconds:,.0f} keys/s)")
    return {"keys": keys, "seconds": seconds, "keys_per_s": keys / seconds}
