"""C7: a bounded soak. 8 tasks x 20,000 mixed operations per backend, checked against an exact model.

Each task owns its keys, so its model of them is exact and every read is checked; counters are
shared by all tasks, so increments contend. Afterwards: zero errors, every key equal to the model,
and file descriptors and server client counts back to where they started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ad_buyer_storage import Storage
from ad_buyer_storage.composed import HybridBackend
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.figures import record
from tests._support.recipes import seed_routes
from tests._support.servers import postgres_server, redis_server

pytestmark = pytest.mark.faults

TASKS = 8
OPS_PER_TASK = int(os.environ.get("ABS_SOAK_OPS", "20000"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.contextmanager
def soak_target(kind: str, directory: Path) -> Iterator[tuple[Callable[[], Any], Callable[[], int]]]:
    """(a backend factory, a count of the server's client connections) on private servers."""
    sqlite_path = str(directory / "soak.db")
    if kind == "sqlite":
        yield (lambda: SQLiteBackend(sqlite_path, sweep_interval=None)), lambda: 0
    elif kind == "postgres":
        with postgres_server() as pg:
            yield (lambda: PostgresBackend(pg.url(), pool_max=10, sweep_interval=None)), pg.client_count
    elif kind == "redis":
        with redis_server(directory / "redis") as server:
            yield (lambda: RedisBackend(server.url, max_connections=16)), server.client_count
    else:  # the production shape: ephemeral keyspaces on Redis, the rest on PostgreSQL
        with redis_server(directory / "redis") as server, postgres_server() as pg:
            yield (
                (
                    lambda: HybridBackend(
                        seed_routes(
                            RedisBackend(server.url), PostgresBackend(pg.url(), pool_max=10, sweep_interval=None)
                        )
                    )
                ),
                lambda: server.client_count() + pg.client_count(),
            )


async def soak_task(storage: Storage, task: int, counters: dict[str, int]) -> int:
    rng = random.Random(task)
    model: dict[str, Any] = {}
    checked = 0
    for i in range(OPS_PER_TASK):
        roll = rng.random()
        key = f"{rng.choice(('deal', 'session'))}:{task}:{rng.randrange(100)}"
        if roll < 0.30:
            value = {"task": task, "i": i, "note": "ü€" * rng.randrange(4)}
            await storage.set(key, value)
            model[key] = value
        elif roll < 0.65:
            assert await storage.get(key) == model.get(key), key
            checked += 1
        elif roll < 0.75:
            counter = f"deal:counter:{rng.randrange(4)}"
            await storage.incr(counter)
            counters[counter] = counters.get(counter, 0) + 1
        elif roll < 0.85:
            assert await storage.delete(key) == (key in model)
            model.pop(key, None)
        elif roll < 0.92:
            batch = {f"{key}:{j}": j for j in range(3)}
            await storage.set_many(batch)
            model.update(batch)
        elif roll < 0.97:
            assert await storage.get_many([key, f"{key}:0"]) == {k: model[k] for k in (key, f"{key}:0") if k in model}
            checked += 1
        else:
            prefix = f"deal:{task}:{rng.randrange(10)}"
            expected = sorted(k for k in model if k.startswith(prefix))
            assert await storage.keys(prefix + "*") == expected
            checked += 1
    final = await storage.get_many(list(model))
    assert final == model, "a task's keys differ from its model"
    return checked


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres", "hybrid"])
async def test_c7_soak_eight_tasks_of_mixed_operations(kind: str, tmp_path: Path) -> None:
    with soak_target(kind, tmp_path) as (make_backend, client_count):
        fds_before, clients_before = open_fds(), client_count()
        counters: dict[str, int] = {}
        storage = Storage(make_backend())
        await storage.connect()
        started = time.monotonic()
        checked = await asyncio.gather(*(soak_task(storage, t, counters) for t in range(TASKS)))
        elapsed = time.monotonic() - started
        assert await storage.get_many(list(counters)) == counters  # every increment, exactly once
        clients_during = client_count()
        await storage.clear()
        await storage.aclose()
        await asyncio.sleep(0.2)  # the server notices closed sockets asynchronously
        fds_after, clients_after = open_fds(), client_count()
        assert fds_after <= fds_before, f"{fds_after - fds_before} file descriptors leaked"
        assert clients_after == clients_before, f"{clients_after} server connections left open"
    ops = TASKS * OPS_PER_TASK
    record(
        "C7",
        f"{kind}: {ops:,} ops in {elapsed:.1f} s ({ops / elapsed:,.0f}/s), 0 errors, {sum(checked):,} reads checked "
        f"against the model, counters exact; fds {fds_before}->{fds_after}, server clients "
        f"{clients_before}->{clients_during} under load->{clients_after}",
    )
