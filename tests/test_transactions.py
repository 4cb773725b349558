"""Transactions where the kit cannot reach: across the hybrid router's routes (refused before
anything is written), through the mirror (committed on the primary, copied to the secondary),
through the blocking facade, and ``transact``'s retries."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import pytest

from ad_buyer_storage import (
    BudgetExceededError,
    InvalidInputError,
    Storage,
    Transaction,
    TransactionConflictError,
    UnsupportedOperationError,
)
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.composed import MirrorBackend
from ad_buyer_storage.sync import SyncStorage
from ad_buyer_storage.testing import Elapsed
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.recipes import postgres_and_redis
from tests._support.shared import drop_pg_schema, drop_redis_prefix, new_prefix, new_schema


@pytest.fixture
def pg_and_redis() -> Iterator[tuple[str, str]]:
    schema, prefix = new_schema(), new_prefix()
    yield schema, prefix
    drop_pg_schema(schema)
    drop_redis_prefix(prefix)


async def test_a_transaction_across_two_routes_is_refused_before_anything_is_written(pg_and_redis) -> None:
    schema, prefix = pg_and_redis
    async with Storage(postgres_and_redis(schema, "kv", prefix)) as storage:

        async def two_routes() -> None:
            async with storage.transaction() as tx:
                tx.set("campaign:c1", {"spent": "1"})  # PostgreSQL
                tx.set("session:s1", {"cart": 1})  # Redis: refused here, at the call

        with pytest.raises(UnsupportedOperationError, match="must live on one backend") as info:
            await two_routes()
        assert "session:s1" in str(info.value)
        assert "campaign:c1" in str(info.value)
        assert await storage.get_many(["campaign:c1", "session:s1"]) == {}
        # Each route on its own commits: PostgreSQL's transaction, Redis's script.
        async with storage.transaction() as tx:
            tx.set("campaign:c1", {"spent": "1"})
            tx.set("order:o1", {"n": 1})
        async with storage.transaction() as tx:
            tx.set("session:s1", {"cart": 1})
            tx.set("session:s2", {"cart": 2}, ttl=60)
        assert await storage.get_many(["campaign:c1", "order:o1", "session:s1", "session:s2"]) == {
            "campaign:c1": {"spent": "1"},
            "order:o1": {"n": 1},
            "session:s1": {"cart": 1},
            "session:s2": {"cart": 2},
        }
        await storage.clear()


async def test_the_mirror_commits_on_the_primary_and_copies_the_result(tmp_path) -> None:
    secondary = MemoryBackend()
    mirror = MirrorBackend(SQLiteBackend(str(tmp_path / "p.db")), secondary)
    async with Storage(mirror) as storage, Storage(secondary) as copy:
        await storage.set_campaign("c1", {"budget": "30.00", "spent": "0"})
        await storage.set("quote:q1", {"price": 1}, ttl=60)
        for i in range(3):
            await storage.book_order(f"o{i}", {"n": i}, campaign_id="c1", amount="10.00")
        with pytest.raises(BudgetExceededError):
            await storage.book_order("o3", {"n": 3}, campaign_id="c1", amount="10.00")
        elapsed = Elapsed()
        async with storage.transaction() as tx:
            tx.delete("quote:q1")
            tx.set("deal:d1", {"status": "active"}, ttl=120)
        keys = ["campaign:c1", "order:o0", "order:o1", "order:o2", "order:o3", "quote:q1", "deal:d1"]
        assert await copy.get_many(keys) == await storage.get_many(keys)
        assert (await copy.get_campaign("c1") or {})["spent"] == "30.00"
        elapsed.check_ttl(await copy.ttl("deal:d1"), 120, "the copy must keep the TTL the transaction wrote")

        async def conflicting(tx: Transaction) -> None:
            campaign = await tx.get("campaign:c1")
            await storage.set_campaign("c1", {**campaign, "note": "changed"})  # someone else
            tx.set("campaign:c1", {**campaign, "spent": "0"})

        with pytest.raises(TransactionConflictError):
            await storage.transact(conflicting, attempts=1)
        assert (await copy.get_campaign("c1") or {}).get("spent") == "30.00", "a conflict copies nothing"


def test_the_blocking_facade_has_transactions(tmp_path) -> None:
    with SyncStorage(Storage(SQLiteBackend(str(tmp_path / "s.db")))) as storage:
        storage.set_campaign("c1", {"budget": "20.00", "spent": "0"})
        with storage.transaction() as tx:
            campaign = tx.get("campaign:c1")
            tx.set("campaign:c1", {**campaign, "spent": "5.00"})
            tx.set("order:o1", {"amount": "5.00"})
        assert storage.get("order:o1") == {"amount": "5.00"}

        def book(tx: object) -> str:
            campaign = tx.get("campaign:c1")  # type: ignore[attr-defined]
            spent = Decimal(campaign["spent"]) + 5
            tx.set("campaign:c1", {**campaign, "spent": str(spent)})  # type: ignore[attr-defined]
            return str(spent)

        assert storage.transact(book) == "10.00"

        def fails_inside() -> None:
            with storage.transaction() as tx:
                tx.set("order:o2", 1)
                _ = 1 / 0

        with pytest.raises(ZeroDivisionError):
            fails_inside()
        assert storage.get("order:o2") is None


async def test_transact_retries_conflicts_returns_the_bodys_value_and_gives_up_after_its_attempts() -> None:
    async with Storage(MemoryBackend()) as storage:
        await storage.set("counter:c", 0)
        runs = 0

        async def bump(tx: Transaction) -> int:
            nonlocal runs
            runs += 1
            value = await tx.get("counter:c")
            if runs < 3:
                await storage.set("counter:c", value + 100)  # a concurrent writer wins twice
            tx.set("counter:c", value + 1)
            return int(value + 1)

        assert await storage.transact(bump, attempts=5) == 201
        assert runs == 3

        async def always_loses(tx: Transaction) -> None:
            value = await tx.get("counter:c")
            await storage.set("counter:c", value + 1)
            tx.set("counter:c", 0)

        with pytest.raises(TransactionConflictError):
            await storage.transact(always_loses, attempts=3)
        assert await storage.get("counter:c") == 204


async def test_concurrent_bookings_through_the_hybrid_router_stop_exactly_at_the_budget(pg_and_redis) -> None:
    schema, prefix = pg_and_redis
    async with Storage(postgres_and_redis(schema, "kv", prefix)) as storage:
        await storage.set_campaign("c1", {"budget": "1000.00", "spent": "0"})

        async def book(i: int) -> bool:
            try:
                await storage.book_order(f"o{i}", {"n": i}, campaign_id="c1", amount="10.00", attempts=1000)
            except BudgetExceededError:
                return False
            return True

        booked = await asyncio.gather(*(book(i) for i in range(130)))
        assert sum(booked) == 100
        assert (await storage.get_campaign("c1") or {})["spent"] == "1000.00"
        assert len(await storage.list_orders()) == 100
        await storage.clear()


@pytest.mark.parametrize("bad", [1.5, "3", None, True, 0])
async def test_update_refuses_a_bad_max_attempts_before_calling_fn(bad: object) -> None:
    calls: list[object] = []
    async with Storage(MemoryBackend()) as storage:
        with pytest.raises(InvalidInputError, match="max_attempts"):
            await storage.update("k", calls.append, default=0, max_attempts=bad)  # type: ignore[arg-type]
        assert calls == []
        assert not await storage.exists("k")
