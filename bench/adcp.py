"""The AdCP SDK's stores on ours, against the SDK's own PostgreSQL classes on the same server,
in the same run (``--sections adcp``):

* *replay/s*: a request repeated with one idempotency key through the SDK's
  ``IdempotencyStore.wrap`` (the first call executes, every later one is a cached replay):
  ``StorageIdempotencyBackend`` on each backend, the SDK's ``PgBackend`` (psycopg pools);
* *claims/s*: fresh signature nonces claimed one after another, spread over 8 key ids:
  ``StorageReplayStore`` on each backend, the SDK's ``PgReplayStore`` (a psycopg pool).

Both are sequential (one caller), the median of the repetitions.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from adcp.server.idempotency import IdempotencyStore, PgBackend
from adcp.signing import PgReplayStore
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ad_buyer_storage_adcp import StorageIdempotencyBackend, StorageReplayStore
from bench.subjects import POSTGRES_URL, RUN, ours, rate


class _Ctx:
    caller_identity = "bench-principal"
    tenant_id = None


async def _handler(self: Any, params: Any, context: Any) -> dict[str, Any]:
    return {"media_buy_id": "mb-1", "status": "active", "packages": [{"package_id": "p1", "budget": 1000}]}


async def _replays(backend: Any, n: int, reps: int) -> float:
    wrapped = IdempotencyStore(backend, ttl_seconds=3600).wrap(_handler)
    params = {"idempotency_key": f"bench-{uuid.uuid4().hex}", "budget": 1000}
    await wrapped(None, dict(params), _Ctx())  # executes once; every later call replays
    return statistics.median([await rate(lambda i: wrapped(None, dict(params), _Ctx()), n, 1) for _ in range(reps)])


def _claims(store: Any, n: int, reps: int) -> float:
    rates = []
    for rep in range(reps):
        started = time.perf_counter()
        for i in range(n):
            assert store.claim(f"kid-{i % 8}", f"{rep}-{i}-{uuid.uuid4().hex[:8]}", 300) == "claimed"
        rates.append(n / (time.perf_counter() - started))
    return statistics.median(rates)


async def adcp_costs(backends: list[str], n: int, reps: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in backends:
        subject = ours(name)
        await subject.open()
        try:
            replay = await _replays(StorageIdempotencyBackend(subject.storage.store), n, reps)
        finally:
            await subject.close()
        claimer = ours(name)  # an unconnected store: the replay store connects it on its own thread
        with StorageReplayStore(claimer.storage.store) as replay_store:
            claims = _claims(replay_store, n, reps)
            replay_store.clear()  # what the run wrote
        rows.append({"subject": f"ours ({name})", "replay_per_s": round(replay), "claims_per_s": round(claims)})
        print(f"  ours ({name:8}) replay {replay:>8,.0f}/s  claims {claims:>8,.0f}/s", flush=True)
    async with (
        AsyncConnectionPool(POSTGRES_URL, min_size=2, max_size=10, open=False) as pool,
        AsyncConnectionPool(POSTGRES_URL, min_size=1, max_size=4, open=False) as lock_pool,
    ):
        sdk_backend = PgBackend(pool=pool, lock_pool=lock_pool, table_name=f"bench_peer_{RUN}_idem")
        await sdk_backend.create_schema()
        replay = await _replays(sdk_backend, n, reps)
    with ConnectionPool(POSTGRES_URL, min_size=2, max_size=10) as sync_pool:
        sdk_replay = PgReplayStore(pool=sync_pool, table_name=f"bench_peer_{RUN}_replay")
        sdk_replay.create_schema()
        claims = _claims(sdk_replay, n, reps)
    rows.append({"subject": "the SDK's PgBackend / PgReplayStore", "replay_per_s": round(replay),
                 "claims_per_s": round(claims)})  # fmt: skip
    print(f"  SDK's PostgreSQL classes replay {replay:>8,.0f}/s  claims {claims:>8,.0f}/s", flush=True)
    return rows
