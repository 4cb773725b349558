"""Blackholed servers (F2 Redis, F5 PostgreSQL): each server runs in a network namespace of the
test's own, and an iptables DROP rule inside it makes every packet vanish (no reset, no answer).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ad_buyer_storage import Storage
from ad_buyer_storage.composed import HybridBackend
from ad_buyer_storage.errors import OutcomeUnknownError, StorageTimeoutError, UnavailableError
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend
from tests._support.figures import record
from tests._support.netns import network_namespace
from tests._support.recipes import seed_routes
from tests._support.servers import RedisServer, postgres_server
from tests._support.shared import REDIS_URL
from tests.test_faults_servers import until_ok

pytestmark = pytest.mark.faults

TIMEOUT = 2.0
# A timed-out call is never retried (the timeout is the caller's budget): one period, plus slack.
BOUND = TIMEOUT + 0.5
TIMED_OUT = (StorageTimeoutError, OutcomeUnknownError, UnavailableError)


async def _each_fails_in_time(calls: dict[str, object]) -> dict[str, float]:
    took = {}
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(TIMED_OUT):
            await call()  # type: ignore[operator]
        took[name] = time.monotonic() - started
        assert took[name] < BOUND, f"{name} took {took[name]:.1f} s"
    return took


async def test_f2_blackholed_redis_fails_within_the_timeout_then_recovers(tmp_path: Path) -> None:
    with network_namespace() as ns:
        server = RedisServer(
            tmp_path / "redis", host=ns.inner_ip, launcher=tuple(ns.exec_argv()), extra=("--protected-mode", "no")
        )  # it is reached from outside its namespace
        server.start()
        try:
            backend = RedisBackend(server.url, command_timeout=TIMEOUT, connect_timeout=TIMEOUT, key_prefix="f2:")
            async with Storage(backend) as storage:
                await storage.set("deal:1", {"ok": True})
                ns.blackhole(server.port)
                took = await _each_fails_in_time({
                    "get": lambda: storage.get("deal:1"),
                    "set": lambda: storage.set("deal:2", 1),
                    "incr": lambda: storage.incr("n"),
                })  # fmt: skip
                ns.restore(server.port)
                recovery = await until_ok(lambda: storage.get("deal:1"))
                assert await storage.get("deal:1") == {"ok": True}
                await storage.clear()
        finally:
            server.kill()
    record("F2", f"Redis blackholed by iptables DROP in a netns, {TIMEOUT:.0f} s timeouts: get/set/incr failed typed "
                 f"in {took['get']:.1f}/{took['set']:.1f}/{took['incr']:.1f} s (bound {BOUND:.1f} s); "
                 f"same object answered {recovery:.2f} s after the rule went")  # fmt: skip


async def test_f5_blackholed_postgres_fails_by_command_timeout_while_redis_routes_keep_working() -> None:
    prefix = f"abs-test:f5-{time.monotonic_ns()}:"
    with network_namespace() as ns, postgres_server(host=ns.inner_ip, launcher=tuple(ns.exec_argv())) as pg:
        postgres = PostgresBackend(pg.url(), command_timeout=TIMEOUT, connect_timeout=TIMEOUT,
                                   acquire_timeout=TIMEOUT, pool_max=4, sweep_interval=None)  # fmt: skip
        redis = RedisBackend(REDIS_URL, key_prefix=prefix)
        async with Storage(HybridBackend(seed_routes(redis, postgres))) as storage:
            await storage.set("deal:1", {"ok": True})
            ns.blackhole(pg.port)
            sessions_ok, stop = 0, asyncio.Event()

            async def sessions() -> None:
                nonlocal sessions_ok
                while not stop.is_set():
                    await storage.set(f"session:{sessions_ok}", sessions_ok, ttl=60)
                    assert await storage.get(f"session:{sessions_ok}") == sessions_ok
                    sessions_ok += 1
                    await asyncio.sleep(0.005)

            alongside = asyncio.create_task(sessions())
            took = await _each_fails_in_time({
                "get": lambda: storage.get("deal:1"),
                "set": lambda: storage.set("deal:2", 1),
                "incr": lambda: storage.incr("deal:n"),
            })  # fmt: skip
            stop.set()
            await alongside  # raises if a Redis route failed while Postgres was unreachable
            assert sessions_ok > 50
            ns.restore(pg.port)
            recovery = await until_ok(lambda: storage.get("deal:1"), deadline=30)
            assert await storage.get("deal:1") == {"ok": True}
            await storage.clear()
    record("F5", f"PostgreSQL blackholed by iptables DROP in a netns, command_timeout {TIMEOUT:.0f} s: get/set/incr "
                 f"failed typed in {took['get']:.1f}/{took['set']:.1f}/{took['incr']:.1f} s; {sessions_ok} Redis-route "
                 f"session writes+reads succeeded meanwhile, 0 failed; Postgres answered {recovery:.2f} s after "
                 f"the rule went")  # fmt: skip
