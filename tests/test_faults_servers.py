"""Servers that die under load: Redis killed behind the hybrid router (F1), PostgreSQL stopped
with ``-m immediate`` and its connections terminated (F4). Every operation goes into a
:class:`~tests.history.History`, and one checker judges what survived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ad_buyer_storage import Storage
from ad_buyer_storage.composed import HybridBackend
from ad_buyer_storage.errors import BackendError, OutcomeUnknownError, StorageTimeoutError, UnavailableError
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend
from tests._support.figures import record
from tests._support.history import History
from tests._support.recipes import seed_routes
from tests._support.servers import PostgresServer, postgres_server, redis_server
from tests._support.shared import POSTGRES_URL

pytestmark = pytest.mark.faults

TYPED = (UnavailableError, OutcomeUnknownError, StorageTimeoutError)


async def until_ok(call: Callable[[], Awaitable[Any]], deadline: float = 20.0) -> float:
    """Retry *call* until it succeeds; return how long that took."""
    started = time.monotonic()
    while True:
        try:
            await call()
            return time.monotonic() - started
        except BackendError:
            if time.monotonic() - started > deadline:
                raise
            await asyncio.sleep(0.05)


class Workload:
    """*workers* tasks, each writing, reading back and counting through a History until stopped."""

    def __init__(self, storage: Storage, history: History, prefix: str, *, counters: bool = True) -> None:
        self.storage, self.history, self.prefix, self.counters = storage, history, prefix, counters
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def _worker(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            who = f"worker{n}"
            try:
                await self.history.set(self.storage, who, f"{self.prefix}{n}:{i}", {"n": n, "i": i})
                await self.history.get(self.storage, who, f"{self.prefix}{n}:{i - 1}")
                if self.counters:
                    await self.history.incr(self.storage, who, f"{self.prefix}spend:{n % 2}")
            except BackendError:
                await asyncio.sleep(0.01)

    def start(self, workers: int = 8) -> None:
        self.tasks = [asyncio.create_task(self._worker(n)) for n in range(workers)]

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)


def slowest_failure(history: History, since: float, prefix: str) -> float:
    """The longest any operation on *prefix* took to fail after the fault at *since*."""
    waits = [op.complete - max(op.invoke, since) for op in history.operations
             if op.key.startswith(prefix) and op.outcome == "unknown" and op.complete >= since]  # fmt: skip
    return max(waits, default=0.0)


async def test_f1_redis_killed_five_times_under_load_behind_the_hybrid_router(tmp_path, pg_schema: str) -> None:
    with redis_server(tmp_path / "redis") as server:
        baseline = server.client_count()
        redis = RedisBackend(server.url, connect_timeout=1, command_timeout=1, max_connections=16)
        postgres = PostgresBackend(POSTGRES_URL, schema=pg_schema, pool_max=10, sweep_interval=None)
        durable, fast = History(), History()
        async with Storage(HybridBackend(seed_routes(redis, postgres))) as storage:
            deals, sessions = Workload(storage, durable, "deal:"), Workload(storage, fast, "session:", counters=False)
            deals.start()
            sessions.start()
            slowest, recoveries = 0.0, []
            for _ in range(5):
                await asyncio.sleep(0.4)
                killed = time.monotonic()
                await asyncio.to_thread(server.kill)  # the workers run on meanwhile
                await asyncio.sleep(1.0)
                await asyncio.to_thread(server.start)  # same port, empty: Redis here keeps nothing
                recoveries.append(await until_ok(lambda: storage.set("session:probe", 1)))
                slowest = max(slowest, slowest_failure(fast, killed, "session:"))
            await asyncio.sleep(0.3)
            await deals.finish()
            await sessions.finish()
            redis_errors = {op.error for op in fast.operations if op.outcome == "unknown"}
            assert redis_errors, "the Redis routes never noticed five kills"
            assert redis_errors <= {t.__name__ for t in TYPED}, redis_errors
            assert durable.check(await durable.final_state(storage)).problems == []
            failed = [op for op in durable.operations if op.outcome != "ok"]
            assert not failed, [(op.kind, op.key, op.error, op.result) for op in failed[:5]]
            assert fast.check({}).foreign_reads == []  # whatever Redis lost, it never served a wrong value
            await storage.clear()
        await asyncio.sleep(0.2)
        assert server.client_count() == baseline
    report = durable.check({})
    record("F1", f"Redis killed 5 times under 8+8-task load through the hybrid router: {report.acknowledged:,} "
                 f"acknowledged Postgres-route ops, 0 lost, 0 failed, counters exact; Redis-route errors typed "
                 f"({', '.join(sorted(redis_errors))}) within {slowest:.2f} s of each kill; the same object "
                 f"served Redis again {max(recoveries):.2f} s after each restart at worst")  # fmt: skip


def _terminate_clients(server: PostgresServer) -> int:
    query = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
             "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")  # fmt: skip
    return int(server.sql(query))


async def test_f4_postgres_immediate_stop_and_terminated_connections_lose_nothing_acknowledged() -> None:
    with postgres_server() as server:
        pg = PostgresBackend(server.url(), pool_max=10, connect_timeout=2, command_timeout=2, acquire_timeout=2,
                             sweep_interval=None)  # fmt: skip
        history = History()
        async with Storage(pg) as storage:
            load = Workload(storage, history, "order:")
            load.start()
            # 1. Connections terminated under the pool's feet, five times.
            terminated = 0
            for _ in range(5):
                await asyncio.sleep(0.3)
                terminated += await asyncio.to_thread(_terminate_clients, server)
            await asyncio.sleep(0.3)
            during_terminate = list(history.operations)
            # 2. A power cut for the server, then a start.
            await asyncio.sleep(0.2)
            await asyncio.to_thread(server.stop, "immediate")
            stopped = time.monotonic()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.start)
            recovery = await until_ok(lambda: storage.set("order:probe", 1))
            await asyncio.sleep(0.3)
            await load.finish()
            report = history.check(await history.final_state(storage))
            assert report.problems == [], report.problems[:5]
            errors = {op.error for op in history.operations if op.error}
            assert errors <= {"UnavailableError", "OutcomeUnknownError", "StorageTimeoutError", "BusyError"}, errors
            # Idempotent operations are retried once on a lost connection; increments never are.
            unknown_idempotent = [
                op for op in during_terminate if op.kind != "incr" and op.error == "OutcomeUnknownError"
            ]
            assert not unknown_idempotent
            assert report.acknowledged > 200
        assert terminated >= 5
    term_errors = sum(op.outcome == "unknown" for op in during_terminate)
    record("F4", f"PostgreSQL: {terminated} pool connections terminated over 5 rounds, then stop -m immediate "
                 f"and start under 8-task load: {report.acknowledged:,} acknowledged ops, 0 lost, counters within "
                 f"acknowledged..acknowledged+unknown; {term_errors} typed errors while terminated "
                 f"({len(during_terminate):,} ops); same object writing again {recovery:.2f} s after the start "
                 f"({time.monotonic() - stopped:.1f} s after the stop)")  # fmt: skip
