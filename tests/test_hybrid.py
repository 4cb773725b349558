"""The hybrid router beyond the kit: routing properties, a Redis restart, validation, lifecycle,
configuration, locks and rate limits."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ad_buyer_storage import (
    ConfigurationError,
    LeaseLock,
    LockNotOwnedError,
    ManualClock,
    RateLimiter,
    Storage,
    UnavailableError,
    UnsupportedOperationError,
    get_storage_backend,
)
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.composed import HybridBackend, Route
from ad_buyer_storage.contract import compile_glob
from ad_buyer_storage.domain.entities import agent_profile
from ad_buyer_storage.plugins.composition import parse_routes
from ad_buyer_storage.testing import Elapsed
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.recipes import memory_and_sqlite, seed_routes
from tests._support.servers import redis_server
from tests._support.shared import POSTGRES_URL, drop_pg_schema

KEYS = st.text(alphabet="abcdeilnopst:_*?[]\\é", min_size=1, max_size=16)


def three_way() -> tuple[HybridBackend, MemoryBackend, MemoryBackend, MemoryBackend]:
    default, sessions, deep = MemoryBackend(), MemoryBackend(), MemoryBackend()
    router = HybridBackend(
        [Route("", default, "default"), Route("session", sessions, "sessions"), Route("session:vip:", deep, "deep")]
    )
    return router, default, sessions, deep


def test_longest_prefix_wins_and_every_key_has_exactly_one_home() -> None:
    router, default, sessions, deep = three_way()
    assert router.backend_for("session:vip:1") is deep
    assert router.backend_for("session:1") is sessions
    assert router.backend_for("session") is sessions
    assert router.backend_for("sessio") is default
    assert router.backend_for("deal:1") is default


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(KEYS, max_size=25, unique=True), pattern=st.sampled_from(
    ["*", "session*", "session:*", "session:vip:*", "s*", "*:*", "sess?on:*", "[sd]*", "deal:*", "x"]
))  # fmt: skip
def test_listing_through_the_router_is_the_union_of_per_route_listings(keys, pattern) -> None:
    async def scenario() -> None:
        router, *backends = three_way()
        async with Storage(router) as storage:
            await storage.set_many({k: k for k in keys})
            homes = [sum(1 for b in backends if k in b._data) for k in keys]
            assert homes == [1] * len(keys)  # exactly one backend holds each key
            expected = sorted(k for k in keys if compile_glob(pattern).matches(k))
            per_route: list[str] = []
            for backend in backends:
                per_route += [k async for k in backend.scan(compile_glob(pattern), 100)]
            assert sorted(per_route) == expected
            assert await storage.keys(pattern) == expected

    asyncio.run(scenario())


async def test_stale_copies_on_another_route_stay_invisible() -> None:
    router, default, _, _ = three_way()
    async with Storage(router) as storage:
        async with Storage(default) as old_home:  # written before sessions moved to their own store
            await old_home.set("session:old", "stale")
        await storage.set("session:new", "fresh")
        assert await storage.keys("*") == ["session:new"]
        assert await storage.get("session:old") is None


async def test_rows_left_by_an_older_route_table_never_end_a_page_early(tmp_path) -> None:
    """Every key on SQLite, then ``deal:vip:`` routed to memory before its rows were moved:
    the stale rows sort first, and a page the router filtered them out of used to read as the
    end (``list_deals(limit=5)`` gave ``[]`` and no cursor while ``deal:z1`` was live)."""
    path = str(tmp_path / "all.db")
    async with Storage(SQLiteBackend(path, sweep_interval=None)) as before:  # the old table: one store
        await before.set_many({f"deal:vip:{i:02}": {"n": i} for i in range(12)})
        await before.set_many({"deal:a1": {"n": 100}, "deal:z1": {"n": 101}, "deal:z2": {"n": 102}})
    moved = MemoryBackend()
    router = HybridBackend(
        [Route("", SQLiteBackend(path, sweep_interval=None), "sqlite"), Route("deal:vip:", moved, "memory")]
    )
    async with Storage(router) as storage:
        await storage.set("deal:vip:new", {"n": 7})  # lives on its new route
        live = ["deal:a1", "deal:vip:new", "deal:z1", "deal:z2"]
        assert await storage.keys("deal:*") == live
        for limit in (1, 2, 3, 5, 50):
            seen: list[int] = []
            cursor: str | None = None
            for _ in range(20):
                page = await storage.list_deals(limit=limit, cursor=cursor)
                seen += [deal["n"] for deal in page]
                assert len(page) == limit or page.next_cursor is None, (limit, list(page), page.next_cursor)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert seen == [100, 7, 101, 102], (limit, seen)
        selection = await storage.select("deal:", limit=2)
        assert [k for k, _ in selection.rows] == ["deal:a1", "deal:vip:new"], selection
        rest = await storage.select("deal:", after=selection.last_key, limit=2)
        assert [k for k, _ in rest.rows] == ["deal:z1", "deal:z2"], rest


async def test_durable_data_survives_a_redis_restart(tmp_path) -> None:
    schema = f"abs_test_{uuid.uuid4().hex[:12]}"
    with redis_server(tmp_path / "redis") as server:
        redis = RedisBackend(server.url, connect_timeout=1, command_timeout=1)
        postgres = PostgresBackend(POSTGRES_URL, schema=schema, sweep_interval=None)
        try:
            async with Storage(HybridBackend(seed_routes(redis, postgres))) as storage:
                for i in range(20):
                    await storage.set_deal(f"d{i}", {"n": i})
                    await storage.set_campaign(f"c{i}", {"n": i})
                    await storage.set_session(f"s{i}", {"n": i})
                assert await storage.ttl("session:s0") is not None  # native TTL on Redis
                server.kill()
                with pytest.raises(UnavailableError):
                    await storage.get_session("s0")
                assert await storage.get_deal("d3") == {"n": 3}  # durable routes keep working
                server.start()  # empty: no persistence
                await asyncio.sleep(0.1)
                for _ in range(50):
                    try:
                        sessions = await storage.list_sessions()
                        break
                    except UnavailableError:
                        await asyncio.sleep(0.1)
                assert sessions == []
                assert len(await storage.list_deals()) == 20
                assert len(await storage.list_campaigns()) == 20
                assert await storage.get_campaign("c7") == {"n": 7}
                await storage.clear()
        finally:
            drop_pg_schema(schema)


def test_route_tables_are_validated_with_a_readable_report() -> None:
    with pytest.raises(ConfigurationError, match="no default route"):
        HybridBackend([Route("session:", MemoryBackend(), "memory")])

    class NoAtomics(MemoryBackend):
        capabilities = frozenset()

    routes = [Route("", MemoryBackend(), "memory"), Route("lock:", NoAtomics(), "plain")]
    with pytest.raises(ConfigurationError) as info:  # what the entities need reaches the router as data
        HybridBackend(routes, agent_profile().requirements())
    message = str(info.value)
    assert "'lock:' (lock) is routed to plain, which lacks atomic, expiry" in message
    assert "'rate_limit:'" not in message  # rate limits still go to the default, which can serve them
    HybridBackend(routes)  # a router knows no entity: with no requirement given, any table that routes is valid


async def test_capabilities_are_per_route() -> None:
    class NoPubSub(MemoryBackend):
        capabilities = frozenset({c for c in MemoryBackend.capabilities if c.value != "pubsub"})

    router = HybridBackend([Route("", NoPubSub(), "durable"), Route("pubsub:", MemoryBackend(), "fast")])
    assert "pubsub" not in {c.value for c in router.capabilities}
    async with Storage(router) as storage:
        async with storage.subscribe("pubsub:deals") as messages:
            await storage.publish("pubsub:deals", {"n": 1})
            assert await asyncio.wait_for(anext(aiter(messages)), 5) == {"n": 1}
        with pytest.raises(UnsupportedOperationError, match="for 'other'"):
            await storage.publish("other", 1)


async def test_connect_failure_closes_what_was_opened_and_close_continues_past_failures() -> None:
    events: list[str] = []

    class Tracked(MemoryBackend):
        def __init__(self, name: str, *, fail_connect: bool = False, fail_close: bool = False) -> None:
            super().__init__()
            self.label, self.fail_connect, self.fail_close = name, fail_connect, fail_close

        async def connect(self) -> None:
            events.append(f"connect {self.label}")
            if self.fail_connect:
                raise UnavailableError(f"{self.label} down")

        async def aclose(self) -> None:
            events.append(f"close {self.label}")
            if self.fail_close:
                raise UnavailableError(f"{self.label} close failed")

    # Routes open longest prefix first: "session:" (fast) opens, then the default fails.
    router = HybridBackend(
        [Route("", Tracked("pg", fail_connect=True), "pg"), Route("session:", Tracked("redis"), "r")]
    )
    with pytest.raises(UnavailableError, match="pg down"):
        await Storage(router).connect()
    assert events.index("connect redis") < events.index("connect pg")
    assert "close redis" in events  # what was already open did not leak
    events.clear()
    router = HybridBackend([Route("", Tracked("pg"), "pg"), Route("session:", Tracked("redis", fail_close=True), "r")])
    storage = Storage(router)
    await storage.connect()
    with pytest.raises(UnavailableError, match="close failed"):
        await storage.aclose()
    assert {"close pg", "close redis"} <= set(events)


def test_route_configuration(monkeypatch, tmp_path) -> None:
    assert parse_routes("session:=redis, cache:=redis,*=postgres") == {
        "session:": "redis", "cache:": "redis", "": "postgres"
    }  # fmt: skip
    assert parse_routes('{"session:": "memory", "": "sqlite"}') == {"session:": "memory", "": "sqlite"}
    with pytest.raises(ConfigurationError, match="PREFIX=BACKEND"):
        parse_routes("session:redis")
    monkeypatch.setenv("STORAGE_TYPE", "hybrid")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/h.db")
    monkeypatch.setenv("STORAGE_ROUTES", "session:=memory,cache:=memory,lock:=memory,*=sqlite")
    storage = get_storage_backend()
    router = storage.backend
    assert isinstance(router, HybridBackend)
    assert router.route_for("session:1").label == "memory"
    assert router.route_for("deal:1").label == "sqlite"
    assert router.route_for("rate_limit:x").label == "sqlite"


def test_default_hybrid_is_the_seed_routing(monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    storage = get_storage_backend()  # STORAGE_TYPE unset: both URLs -> hybrid
    router = storage.backend
    assert isinstance(router, HybridBackend)
    fast = {"session:", "session_index:", "cache:", "lock:", "pubsub:", "rate_limit:"}
    assert {r.prefix for r in router.routes if r.label == "redis"} == fast
    for key in ("deal:1", "campaign:1", "order:1", "conversion:1", "opt_decision:1", "experiment:1",
                "supply_path:1", "quote:1", "negotiation:1", "model:1", "pacing:1"):  # fmt: skip
        assert router.route_for(key).label == "postgres", key
    monkeypatch.setenv("STORAGE_ROUTES", "session:=redis://127.0.0.1:6379/2,*=postgres")
    labels = {r.prefix: r.label for r in get_storage_backend().backend.routes}  # type: ignore[attr-defined]
    assert labels["session:"].startswith("redis redis://127.0.0.1:6379/2")


async def test_lease_lock_is_exclusive_and_only_the_owner_releases() -> None:
    clock = ManualClock()
    async with Storage(memory_and_sqlite(":memory:", clock)) as storage:
        first, second = LeaseLock(storage, "rebalance", ttl=10), LeaseLock(storage, "rebalance", ttl=10)
        assert await first.acquire(blocking=False)
        assert not await second.acquire(blocking=False)
        with pytest.raises(LockNotOwnedError):
            await second.release()
        await first.extend(20)
        clock.advance(15)
        assert await first.locked()  # extended beyond the first 10 s
        clock.advance(6)  # the lease ran out: someone else may take it
        assert await second.acquire(blocking=False)
        with pytest.raises(LockNotOwnedError):
            await first.release()  # too late: not ours any more
        await second.release()
        clock.advance(0.01)
        assert await first.acquire(blocking=False)
        await first.release()


async def test_lease_lock_serialises_concurrent_workers(tmp_path) -> None:
    async with Storage(memory_and_sqlite(str(tmp_path / "l.db"))) as storage:
        inside, overlaps = 0, 0

        async def worker() -> None:
            nonlocal inside, overlaps
            async with LeaseLock(storage, "job", ttl=5, retry_interval=0.005):
                inside += 1
                overlaps += inside > 1
                await asyncio.sleep(0.005)
                inside -= 1

        await asyncio.gather(*(worker() for _ in range(10)))
        assert overlaps == 0


async def test_rate_limiter_counts_per_window() -> None:
    async with Storage(MemoryBackend()) as storage:
        limiter = RateLimiter(storage, "seller-api", limit=3, window=60)
        elapsed = Elapsed()
        results = [await limiter.hit() for _ in range(5)]
        assert [r.allowed for r in results] == [True, True, True, False, False]
        assert results[2].remaining == 0
        assert 0 < results[0].reset_after <= 60
        keys = await storage.keys("rate_limit:seller-api:*")
        assert len(keys) == 1
        elapsed.check_ttl(await storage.ttl(keys[0]), 60, "a window's counter must expire with its window (60 s)")


def test_demo_and_doctor_on_hybrid(tmp_path) -> None:
    schema, prefix = f"abs_test_{uuid.uuid4().hex[:12]}", f"abs-test:{uuid.uuid4().hex}:"
    env = {
        **os.environ,
        "STORAGE_TYPE": "hybrid",
        "DATABASE_URL": POSTGRES_URL.replace("postgresql", "postgresql+asyncpg"),
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "REDIS_KEY_PREFIX": prefix,
        "POSTGRES_SCHEMA": schema,
    }
    cli = [sys.executable, "-m", "ad_buyer_storage.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
                              check=False)  # fmt: skip

    try:
        demo = run("demo")
        assert demo.returncode == 0, demo.stderr
        assert "deal:demo-d1 [postgres]" in demo.stdout
        assert "session:demo-s1 (ttl 1800 s) [redis]" in demo.stdout
        assert "ok: 250.00 expected" in demo.stdout
        assert "ok: stopped exactly at the budget" in demo.stdout
        doctor = run("doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "session:           -> redis" in doctor.stdout
        assert "* (default)        -> postgres" in doctor.stdout
    finally:
        run("clear", "--yes")
        subprocess.run(["psql", POSTGRES_URL, "-qc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
                       capture_output=True, check=False)  # fmt: skip


class _Remote(MemoryBackend):
    """Memory behind a round trip, so that concurrent calls queue up and get batched."""

    async def read(self, keys):
        await asyncio.sleep(0.001)
        return await super().read(keys)

    async def write(self, writes):
        await asyncio.sleep(0.001)
        return await super().write(writes)


class _Unreachable(MemoryBackend):
    """A route whose server is down: every read and write fails after a round trip."""

    async def read(self, keys):
        await asyncio.sleep(0.001)
        raise UnavailableError("down")

    async def write(self, writes):
        await asyncio.sleep(0.001)
        raise UnavailableError("down")


async def test_one_route_down_never_fails_concurrent_callers_of_another() -> None:
    """Concurrent calls are batched per route (found by F1: a Redis kill failed Postgres writes)."""
    async with Storage(HybridBackend(seed_routes(_Unreachable(), _Remote()))) as storage:
        calls = [storage.set(f"deal:{i}", i) for i in range(20)] + [storage.set(f"session:{i}", i) for i in range(20)]
        calls += [storage.get(f"deal:{i}") for i in range(20)] + [storage.get(f"session:{i}") for i in range(20)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        deal_outcomes = outcomes[:20] + outcomes[40:60]
        session_outcomes = outcomes[20:40] + outcomes[60:]
        assert not [o for o in deal_outcomes if isinstance(o, BaseException)]
        assert all(isinstance(o, UnavailableError) for o in session_outcomes)
        assert await storage.get_many([f"deal:{i}" for i in range(20)]) == {f"deal:{i}": i for i in range(20)}
