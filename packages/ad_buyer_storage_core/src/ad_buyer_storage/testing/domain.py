"""Domain: the buyer agent's helpers on ``Storage`` (deals, campaigns, sessions, every entity).

The helpers are core code on the store's primitives, so a backend passing the other areas
should pass these too; they check that nothing in the backend (listing, bulk reads, JSON
comparison) breaks them. Sessions expire by default (``SESSION_DEFAULT_TTL``), which needs
EXPIRY: on a backend without it, the kit uses the helpers with no session TTL, as a deployment
on such a store would.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, cast

from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.domain.collections import ENTITY_DEFAULT
from ad_buyer_storage.domain.entities import ENTITIES
from ad_buyer_storage.domain.storage import Storage
from ad_buyer_storage.errors import (
    BudgetExceededError,
    InvalidInputError,
    InvalidValueError,
    TransactionConflictError,
    VersionConflictError,
)

from ._base import ContractBase, certifies, fails_with
from ._elapsed import Elapsed
from .contract import BackendContract
from .harness import Subject
from .kv import deepest_tree

__all__ = ["DomainContract", "StorageContract"]


def _helpers(subject: Subject) -> Storage:
    """The storage under test; without EXPIRY, a view of it whose entities have no default TTL."""
    if subject.claims(Capability.EXPIRY):
        return cast(Storage, subject.domain())
    no_ttl = {name: None for name, entity in ENTITIES.items() if entity.default_ttl is not None}
    return cast(Storage, subject.domain(default_ttls=no_ttl))


class DomainContract(ContractBase):
    """Area ``domain``: the entity helpers, filters, sessions and the buyer's session index."""

    @certifies("domain")
    async def test_domain_helpers(self, subject: Subject) -> None:
        storage = _helpers(subject)
        await storage.set_deal("d1", {"status": "active", "deal_type": "PG", "price": Decimal("12.50")})
        await storage.set_deal("d2", {"status": "paused", "deal_type": "PMP"})
        await storage.set_deal("d3", {"status": "active", "deal_type": "PMP"})
        await storage.set_campaign("c1", {"status": "active"})
        d1 = await storage.get_deal("d1")
        assert d1 == {"status": "active", "deal_type": "PG", "price": "12.50"}, f"get_deal() must read set_deal(): {d1}"
        listed = await storage.list_deals()
        assert len(listed) == 3, f"list_deals() must list every deal, and deals only: {listed}"
        listed = await storage.list_deals({"status": "active", "deal_type": "PMP"})
        assert listed == [{"status": "active", "deal_type": "PMP"}], f"filters must match every field given: {listed}"
        listed = await storage.list_deals({"price": Decimal("12.50")})
        assert listed == [d1], f"a Decimal filter must match the stored decimal text: {listed}"
        listed = await storage.list_deals({"no_such_field": "x"})
        assert listed == [], f"a filter on a missing field must match nothing, never everything: {listed}"
        listed = await storage.list_deals({"status": None})
        assert listed == [], f"a None filter must match only a stored null: {listed}"
        listed = await storage.list_deals(limit=2)
        assert len(listed) == 2, f"list_deals(limit=2) must return 2 deals: {listed}"
        listed = await storage.list_deals(limit=0)
        assert listed == [], f"list_deals(limit=0) must return nothing: {listed}"
        listed = await storage.list_campaigns()
        assert listed == [{"status": "active"}], f"list_campaigns() must list campaigns only: {listed}"
        assert await storage.delete_deal("d2"), "delete_deal() of a live deal must return True"
        ids = await storage.collection("deal").ids()
        assert ids == ["d1", "d3"], f"ids() must list the live ids, sorted: {ids}"

    @certifies("domain")
    async def test_filters_compare_json_values(self, subject: Subject) -> None:
        storage = _helpers(subject)
        flags: list[Any] = [True, 1, 1.0, "true", None, False, 0, [1], [True], {"a": 1}, {"a": True}]
        for n, flag in enumerate(flags):
            await storage.set_deal(f"f{n:02d}", {"flag": flag, "n": n})

        async def matching(expected: Any) -> list[int]:
            return [d["n"] for d in await storage.list_deals({"flag": expected})]

        assert await matching(True) == [0], "True must match only true, never 1 or 1.0"
        assert await matching(1) == [1, 2], "numbers match by value: 1 must match 1 and 1.0"
        assert await matching(1.0) == [1, 2], "numbers match by value: 1.0 must match 1 and 1.0"
        assert await matching("true") == [3], "the text 'true' must match only that text"
        assert await matching(None) == [4], "None must match only null"
        assert await matching(False) == [5], "False must match only false, never 0"
        assert await matching(0) == [6], "0 must match only 0, never false"
        assert await matching([1]) == [7], "[1] must match only [1], never [true]"
        assert await matching([True]) == [8], "[true] must match only [true], never [1]"
        assert await matching({"a": 1}) == [9], "{'a': 1} must match only {'a': 1}, never {'a': true}"
        assert await matching({"a": True}) == [10], "{'a': true} must match only {'a': true}"

    @certifies("domain")
    async def test_falsy_deals_are_listed(self, subject: Subject) -> None:
        storage = _helpers(subject)
        falsy = {"a": {}, "b": [], "c": 0, "d": "", "e": False, "f": None}
        for deal_id, value in falsy.items():
            await storage.set_deal(deal_id, value)
        listed = await storage.list_deals()
        assert listed == list(falsy.values()), f"list_deals() must list falsy values, never drop them: {listed!r}"

    @certifies("domain")
    async def test_the_deepest_value_reads_back_through_every_helper(self, subject: Subject) -> None:
        storage = _helpers(subject)
        deepest = {"status": "deep", "tree": deepest_tree()}  # the deepest value the codec accepts
        await storage.set_deal("deep", deepest)
        await storage.set_deal("plain", {"status": "plain"})
        assert await storage.get_deal("deep") == deepest, "get_deal() must read the deepest value"
        assert await storage.get_many(["deal:deep"]) == {"deal:deep": deepest}, "get_many() must read the deepest value"
        listed = await storage.list_deals({"status": "deep"})
        assert listed == [deepest], "list_deals(filters) must read and filter the deepest value"
        listed = await storage.list_deals()
        assert len(listed) == 2, "one deepest deal must not break listing the others"
        await fails_with(
            InvalidValueError,
            storage.set_deal("deeper", {"status": "deep", "tree": [deepest["tree"]]}),
            "set_deal() must refuse a value nested deeper than the codec allows",
        )
        assert await storage.get_deal("deeper") is None, "a refused deal must not be stored"

    @certifies("domain", Capability.ATOMIC)
    async def test_the_deepest_value_survives_update_deal(self, subject: Subject) -> None:
        storage = _helpers(subject)
        deepest = {"status": "deep", "tree": deepest_tree()}
        await storage.set_deal("deep", deepest)
        updated = await storage.update_deal("deep", lambda d: {**d, "seen": True})
        assert updated == {**deepest, "seen": True}, "update_deal() must read and write the deepest value"

    @certifies("domain")
    async def test_session_helpers(self, subject: Subject) -> None:
        storage = _helpers(subject)
        expiry = subject.claims(Capability.EXPIRY)
        await storage.set_session("s1", {"buyer": "b1"})
        elapsed = Elapsed.of(subject)
        await storage.set_session("s2", {"buyer": "b1"}, ttl=600 if expiry else None)
        got = await storage.get_session("s1")
        assert got == {"buyer": "b1"}, f"get_session() must read set_session(): {got!r}"
        if expiry:
            remaining = await storage.ttl("session:s1")
            assert remaining is not None, "a session set without ttl must expire (SESSION_DEFAULT_TTL)"
            assert remaining > 600, f"a session set without ttl must get the default TTL (a day), not {remaining}"
            remaining = await storage.ttl("session:s2")
            assert remaining is not None, "set_session(ttl=600) must give the session that TTL"
            elapsed.check_ttl(remaining, 600, "set_session(ttl=600) must give the session 600 s")
        listed = await storage.list_sessions()
        assert len(listed) == 2, f"list_sessions() must list every session: {listed!r}"
        assert await storage.delete_session("s2"), "delete_session() of a live session must return True"
        listed = await storage.list_sessions()
        assert listed == [{"buyer": "b1"}], f"delete_session() must delete that session only: {listed!r}"

    @certifies("domain", Capability.ATOMIC)
    async def test_session_index(self, subject: Subject) -> None:
        storage = _helpers(subject)
        await storage.set_session("s1", {"buyer": "b1"})
        await storage.set_session("s2", {"buyer": "b1"})
        await asyncio.gather(*(storage.add_session_to_index("b1", f"s{i}") for i in (1, 2, 3)))
        index = await storage.get_session_index("b1")
        assert index == ["s1", "s2", "s3"], f"concurrent add_session_to_index() must lose no id: {index}"
        listed = await storage.list_buyer_sessions("b1")
        assert listed == [{"buyer": "b1"}, {"buyer": "b1"}], f"list_buyer_sessions() must read the live ones: {listed}"
        index = await storage.remove_session_from_index("b1", "s2")
        assert index == ["s1", "s3"], f"remove_session_from_index() must remove that id only: {index}"
        listed = await storage.list_sessions()
        assert len(listed) == 2, f"the session index must not be listed as a session: {listed!r}"

    @certifies("domain")
    async def test_every_entity_has_get_set_delete_list(self, subject: Subject) -> None:
        storage = _helpers(subject)
        expiry = subject.claims(Capability.EXPIRY)
        for name, entity in ENTITIES.items():
            items = storage.collection(name)
            # An entity's default TTL (sessions, quotes...) needs EXPIRY; without it, no TTL.
            ttl = ENTITY_DEFAULT if expiry or entity.default_ttl is None else None
            await items.set("id1", {"entity": name}, ttl)
            got = await items.get("id1")
            assert got == {"entity": name}, f"collection({name!r}).get() must read its set(): {got!r}"
            listed = await items.list({"entity": name})
            assert listed == [{"entity": name}], f"collection({name!r}).list() must list it: {listed!r}"
            assert await items.delete("id1"), f"collection({name!r}).delete() of a live id must return True"
            assert await items.get("id1") is None, f"collection({name!r}).get() must return None after delete()"

    @certifies("domain", Capability.EXPIRY)
    async def test_sliding_sessions_renew_on_read(self, subject: Subject) -> None:
        sliding = subject.domain(sliding_sessions=True, default_ttls={"session": 40})
        await sliding.set_session("default", {"step": 1})
        await sliding.set_session("own", {"step": 2}, ttl=100)
        await subject.elapse(1.0)
        elapsed = Elapsed.of(subject)
        assert await sliding.get_session("default") == {"step": 1}, "get_session must return the session"
        remaining = await sliding.ttl("session:default") or 0.0
        elapsed.check_ttl(remaining, 40, "a sliding session read must renew it to its TTL (40 s)")
        elapsed = Elapsed.of(subject)
        await sliding.get_session("own")
        remaining = await sliding.ttl("session:own") or 0.0
        expected = 100 if Capability.REFRESH in sliding.capabilities_for("session:own") else 40
        elapsed.check_ttl(remaining, expected, "renewed to the TTL it was written with")
        assert await sliding.get_session("missing") is None, "a missing session: None"

    @certifies("domain")
    async def test_list_helpers_page_with_cursors(self, subject: Subject) -> None:
        storage = _helpers(subject)
        for i in range(25):
            await storage.set_deal(f"d{i:02d}", {"status": "active" if i % 2 else "paused", "i": i})
        seen: list[Any] = []
        cursor: str | None = None
        for _ in range(20):
            page = await storage.list_deals({"status": "active"}, limit=5, cursor=cursor)
            seen += page
            cursor = page.next_cursor
            if cursor is None:
                break
        assert [d["i"] for d in seen] == list(range(1, 25, 2)), f"list_deals pages must walk every match: {seen}"
        orders = await storage.list_orders(limit=1)
        await fails_with(
            InvalidInputError,
            storage.list_orders(cursor="not-a-cursor"),
            "a cursor that is not one of this listing's must be refused",
        )
        assert orders == [], "no orders were written"

    @certifies("domain", Capability.TRANSACTIONS)
    async def test_book_order_never_overspends(self, subject: Subject) -> None:
        storage = _helpers(subject)
        await storage.set_campaign("c1", {"budget": "100.00", "spent": "0"})

        async def book(i: int) -> bool:
            while True:
                try:
                    await storage.book_order(f"o{i}", {"n": i}, campaign_id="c1", amount=Decimal("10.00"))
                    return True
                except BudgetExceededError:
                    return False
                except TransactionConflictError:
                    continue

        booked = await asyncio.gather(*(book(i) for i in range(15)))
        campaign = await storage.get_campaign("c1") or {}
        assert sum(booked) == 10, f"a 100.00 budget takes exactly 10 bookings of 10.00: {sum(booked)} booked"
        assert Decimal(campaign["spent"]) == Decimal("100.00"), f"spent must equal what was booked: {campaign}"
        await fails_with(
            VersionConflictError,
            storage.book_order("o0" if booked[0] else "o1", {}, campaign_id="c1", amount=1),
            "an order id is booked once",
        )


class StorageContract(BackendContract, DomainContract):
    """:class:`~ad_buyer_storage.testing.BackendContract` and the opt-in ``domain`` area (the
    buyer agent's ``Storage`` helpers on the backend): what this repository's backends run."""
