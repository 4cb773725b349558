"""Domain helpers: bulk reads (never one round trip per key), entity table, filters."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ad_buyer_storage import (
    ENTITIES,
    AlreadyExistsError,
    Entity,
    InvalidInputError,
    Storage,
    Transaction,
    TransactionConflictError,
    register_entity,
)
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.contract import Record
from ad_buyer_storage.domain.entities import ephemeral_prefixes, unregister_entity


class CountingBackend(MemoryBackend):
    """Counts round trips, to prove lists are read in bulk."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []

    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        self.reads.append(len(keys))
        return await super().read(keys)


async def test_listing_1200_deals_takes_three_bulk_reads_not_1200() -> None:
    backend = CountingBackend()
    async with Storage(backend) as storage:
        await storage.set_many({f"deal:{i:04d}": {"status": "active" if i % 2 else "paused"} for i in range(1200)})
        backend.reads.clear()
        active = await storage.list_deals({"status": "active"})
        assert len(active) == 600
        assert backend.reads == [500, 500, 200]
        backend.reads.clear()
        assert len(await storage.list_deals(limit=10)) == 10
        assert backend.reads == [500]


async def test_bad_filters_and_limits_are_refused() -> None:
    async with Storage(MemoryBackend()) as storage:
        for bad_limit in (-1, 1.5, True, "3"):
            with pytest.raises(InvalidInputError):
                await storage.list_deals(limit=bad_limit)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            await storage.list_deals(filters=["status"])  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            await storage.get_deal("")


def test_the_entity_table_covers_the_seed_prefixes() -> None:
    prefixes = {e.prefix for e in ENTITIES.values()}
    assert {
        "deal:",
        "campaign:",
        "order:",
        "session:",
        "session_index:",
        "conversion:",
        "opt_decision:",
        "experiment:",
        "supply_path:",
        "quote:",
        "negotiation:",
        "model:",
        "pacing:",
    } <= prefixes
    assert {e.prefix for e in ENTITIES.values() if not e.durable} == {
        "session:", "session_index:", "cache:", "lock:", "pubsub:", "rate_limit:"
    }  # fmt: skip
    assert set(ephemeral_prefixes()) == {"session:", "session_index:", "cache:", "lock:", "pubsub:", "rate_limit:"}


async def test_a_new_entity_is_one_line() -> None:
    register_entity(Entity("product", "product:"))
    try:
        async with Storage(MemoryBackend()) as storage:
            products = storage.collection("product")
            await products.set("p1", {"status": "live"})
            assert await products.list({"status": "live"}) == [{"status": "live"}]
        with pytest.raises(InvalidInputError, match="overlaps"):
            register_entity(Entity("dealish", "deal"))
    finally:
        unregister_entity("product")
    assert "product" not in ENTITIES
    with pytest.raises(TypeError):
        ENTITIES["product"] = Entity("product", "product:")  # type: ignore[index]  # read-only
    with pytest.raises(InvalidInputError, match="seed"):
        unregister_entity("deal")


async def test_book_order_tells_already_booked_from_a_float_budget_and_from_bad_amounts() -> None:
    async with Storage(MemoryBackend()) as storage:
        await storage.set_campaign("c1", {"budget": "100", "spent": "0"})
        await storage.book_order("o1", {}, campaign_id="c1", amount=10)
        with pytest.raises(AlreadyExistsError, match="'o1' is already booked"):
            await storage.book_order("o1", {}, campaign_id="c1", amount=10)
        await storage.set_campaign("c2", {"budget": 100.0, "spent": "0"})
        with pytest.raises(InvalidInputError, match=r"campaign 'c2''s budget must be a Decimal.*not float 100\.0"):
            await storage.book_order("o2", {}, campaign_id="c2", amount=10)
        with pytest.raises(InvalidInputError, match="the booking's amount must be"):
            await storage.book_order("o3", {}, campaign_id="c1", amount=1.5)  # type: ignore[arg-type]


async def test_an_operator_shaped_filter_is_refused_not_answered_empty() -> None:
    async with Storage(MemoryBackend()) as storage:
        await storage.set_deal("d1", {"cpm": 12})
        with pytest.raises(InvalidInputError, match=r"filter 'cpm': \['\$gt'\] looks like an operator"):
            await storage.list_deals({"cpm": {"$gt": 10}})
        with pytest.raises(InvalidInputError, match="looks like an operator"):
            await storage.select("deal:", {"cpm": {"$in": [12]}})
        assert await storage.list_deals({"cpm": 12}) == [{"cpm": 12}]
        await storage.set_deal("d2", {"target": {"geo": "US"}})  # an object value is still equality
        assert await storage.list_deals({"target": {"geo": "US"}}) == [{"target": {"geo": "US"}}]


async def test_await_tx_set_works_and_giving_up_says_how_many_attempts_and_what_to_do() -> None:
    async with Storage(MemoryBackend()) as storage:
        async with storage.transaction() as tx:
            await tx.set("k:a", 1)  # awaited, as tx.get is: no bare TypeError
            tx.set("k:b", 2)  # or not
            await tx.delete("k:c")
        assert await storage.get_many(["k:a", "k:b"]) == {"k:a": 1, "k:b": 2}

        async def always_overtaken(tx: Transaction) -> None:
            value = await tx.get("k:a")
            await storage.set("k:a", value + 1)  # another writer, every time
            tx.set("k:a", 0)

        with pytest.raises(TransactionConflictError, match=r"gave up after 3 conflicting attempts.*attempts= above 3"):
            await storage.transact(always_overtaken, attempts=3)


async def test_a_listing_that_ends_on_a_full_page_says_so() -> None:
    """No extra empty page: the last page's next_cursor is None even when it is full."""
    async with Storage(MemoryBackend()) as storage:
        for i in range(10):
            await storage.set_deal(f"d{i}", {"status": "active" if i < 6 else "paused"})
        first = await storage.list_deals({"status": "active"}, limit=3)
        second = await storage.list_deals({"status": "active"}, limit=3, cursor=first.next_cursor)
        assert len(first) == len(second) == 3
        assert first.next_cursor is not None
        assert second.next_cursor is None, "6 matches in pages of 3: two pages, not a third empty one"
        selection = await storage.select("deal:", {"status": "paused"}, limit=4)
        assert (len(selection.rows), selection.last_key) == (4, None)
