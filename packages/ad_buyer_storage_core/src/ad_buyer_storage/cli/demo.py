"""The main job in miniature: a buyer-agent day against whatever backend is configured."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ad_buyer_storage.composed.hybrid import HybridBackend
from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.domain.storage import Storage
from ad_buyer_storage.errors import BudgetExceededError

__all__ = ["run_demo"]


#: Every key the demo writes matches one of these: what it removes at the end.
DEMO_KEYS = ("campaign:demo-*", "deal:demo-*", "order:demo-*", "session:demo-*", "quote:demo-*", "pacing:demo-*")


async def run_demo(storage: Storage, say: Callable[[str], None] = print, *, keep: bool = False) -> dict[str, Any]:
    """Store a campaign, deals, orders, a session, a quote and pacing snapshots; read them back.

    Then 130 concurrent bookings of 10.00 against a 1,000.00 budget, each a transaction over
    the campaign and its order, which must stop exactly at the budget (on a store with
    transactions); and 20 concurrent optimistic-concurrency updates of one deal's spend, which
    must add up exactly. Returns what was read back (the tests check it). At the end its keys
    are removed (the store is left as it was found) unless *keep*.
    """
    try:
        return await _run(storage, say)
    finally:
        if not keep and storage.is_open:
            removed = sum([await storage.delete_pattern(pattern) for pattern in DEMO_KEYS])
            say(f"removed the demo's {removed} keys (--keep leaves them)")


async def _run(storage: Storage, say: Callable[[str], None]) -> dict[str, Any]:

    router = storage.backend if isinstance(storage.backend, HybridBackend) else None  # says where keys live

    def show(label: str, value: Any) -> None:
        key = label.split(" ")[0]
        where = f" [{router.route_for(key).label}]" if router is not None and ":" in key else ""
        say(f"  {label + where:<44} {json.dumps(value, default=str, sort_keys=True)}")

    say(f"backend: {storage.name}  capabilities: {', '.join(sorted(c.value for c in storage.capabilities))}")
    say("storing:")
    campaign = {"campaign_id": "demo-c1", "name": "Holiday CTV", "status": "active", "budget": Decimal("25000.00")}
    await storage.set_campaign("demo-c1", campaign)
    show("campaign:demo-c1", campaign)
    deals = {
        "demo-d1": {
            "deal_id": "demo-d1",
            "campaign_id": "demo-c1",
            "status": "active",
            "deal_type": "PG",
            "cpm": Decimal("18.50"),
            "spend": Decimal("0.00"),
        },
        "demo-d2": {
            "deal_id": "demo-d2",
            "campaign_id": "demo-c1",
            "status": "active",
            "deal_type": "PMP",
            "cpm": Decimal("9.75"),
            "spend": Decimal("0.00"),
        },
        "demo-d3": {
            "deal_id": "demo-d3",
            "campaign_id": "demo-c1",
            "status": "paused",
            "deal_type": "PMP",
            "cpm": Decimal("7.10"),
            "spend": Decimal("0.00"),
        },
    }
    for deal_id, deal in deals.items():
        await storage.set_deal(deal_id, deal)
        show(f"deal:{deal_id}", deal)
    for n in (1, 2):
        order = {"order_id": f"demo-o{n}", "deal_id": "demo-d1", "status": "booked", "impressions": 100_000 * n}
        await storage.set_order(f"demo-o{n}", order)
        show(f"order:demo-o{n}", order)
    await storage.set_session("demo-s1", {"buyer_id": "demo-buyer", "step": "negotiating"}, ttl=1800)
    show("session:demo-s1 (ttl 1800 s)", {"buyer_id": "demo-buyer", "step": "negotiating"})
    await storage.set_quote("demo-q1", {"deal_id": "demo-d2", "cpm": Decimal("9.50")})
    show("quote:demo-q1 (ttl 24 h)", {"deal_id": "demo-d2", "cpm": "9.50"})
    for hour in range(3):
        snapshot = {"campaign_id": "demo-c1", "hour": hour, "pacing": round(0.9 + hour * 0.05, 2)}
        await storage.set_pacing_snapshot(f"demo-c1-h{hour}", snapshot)
    show("pacing:demo-c1-h0..h2", "3 snapshots")

    say("reading back:")
    result: dict[str, Any] = {
        "campaign": await storage.get_campaign("demo-c1"),
        "active_deals": [
            d["deal_id"] for d in await storage.list_deals({"campaign_id": "demo-c1", "status": "active"})
        ],
        "orders": len(await storage.list_orders({"deal_id": "demo-d1"})),
        "session": await storage.get_session("demo-s1"),
        "session_ttl_s": round(await storage.ttl("session:demo-s1") or 0),
        "quote": await storage.get_quote("demo-q1"),
        "pacing_snapshots": len(await storage.list_pacing_snapshots({"campaign_id": "demo-c1"})),
    }
    for label, value in result.items():
        show(label, value)

    if Capability.TRANSACTIONS in storage.capabilities_for("campaign:demo-c2"):
        result["bookings"] = await _book_to_the_budget(storage, show, say)
    else:
        say(f"(no transactions on {storage.name}: the concurrent bookings are skipped)")

    say("20 concurrent spend updates of deal demo-d1 (+12.50 each, optimistic concurrency):")
    await storage.update_deal("demo-d1", lambda d: {**d, "spend": "0.00"})

    def add_spend(deal: dict[str, Any]) -> dict[str, Any]:
        return {**deal, "spend": str(Decimal(deal["spend"]) + Decimal("12.50"))}

    await asyncio.gather(*(storage.update_deal("demo-d1", add_spend) for _ in range(20)))
    final = await storage.get_deal("demo-d1")
    result["final_spend"] = final["spend"] if final else None
    show("deal:demo-d1 spend", result["final_spend"])
    say("ok: 250.00 expected" if result["final_spend"] == "250.00" else "MISMATCH: 250.00 expected")
    return result


async def _book_to_the_budget(
    storage: Storage, show: Callable[[str, Any], None], say: Callable[[str], None]
) -> dict[str, Any]:
    say("130 concurrent bookings of 10.00 against campaign demo-c2's 1,000.00 budget (transactions):")
    await storage.set_campaign("demo-c2", {"campaign_id": "demo-c2", "budget": "1000.00", "spent": "0.00"})
    await storage.delete_pattern("order:demo-c2-*")

    async def book(n: int) -> bool:
        order = {"order_id": f"demo-c2-o{n}", "campaign_id": "demo-c2", "amount": "10.00"}
        try:
            await storage.book_order(f"demo-c2-o{n}", order, campaign_id="demo-c2", amount="10.00", attempts=1000)
        except BudgetExceededError:
            return False
        return True

    booked = sum(await asyncio.gather(*(book(n) for n in range(130))))
    campaign = await storage.get_campaign("demo-c2") or {}
    outcome = {"booked": booked, "refused": 130 - booked, "spent": campaign.get("spent")}
    show("campaign:demo-c2 bookings", outcome)
    exact = booked == 100 and outcome["spent"] == "1000.00"
    say("ok: stopped exactly at the budget" if exact else "MISMATCH: 100 bookings and 1000.00 spent expected")
    return outcome
