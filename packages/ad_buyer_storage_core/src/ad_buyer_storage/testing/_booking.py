"""The kit's booking workload: an order written and a campaign's ``spent`` raised together,
iff the budget allows, in one transaction. Generic (keys and a transaction, no domain), so the
transactions area certifies any store; the buyer agent's ``Storage.book_order`` is the same
shape and is certified by the domain area."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ad_buyer_storage.client.api import StoreAPI
from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage.errors import BudgetExceededError, KeyNotFoundError, VersionConflictError

__all__ = ["book"]


async def book(store: StoreAPI, order_id: str, order: Any, *, campaign_id: str, amount: Decimal | str) -> Any:
    """Book *order* (``order:<id>``) on campaign ``campaign:<id>`` for *amount*; return the
    campaign as booked. :class:`BudgetExceededError` over budget, :class:`VersionConflictError`
    for an order booked before; :class:`TransactionConflictError` after ``transact``'s attempts."""
    cost = Decimal(amount)
    campaign_key, order_key = f"campaign:{campaign_id}", f"order:{order_id}"

    async def run(tx: Transaction) -> Any:
        campaign = await tx.get(campaign_key)
        if not isinstance(campaign, dict):
            raise KeyNotFoundError(f"campaign {campaign_id!r} does not exist")
        if await tx.exists(order_key):
            raise VersionConflictError(f"order {order_id!r} is already booked")
        spent = Decimal(campaign.get("spent", "0")) + cost
        if spent > Decimal(campaign.get("budget", "0")):
            raise BudgetExceededError(f"booking {cost} on {campaign_id!r} would spend {spent}")
        booked = {**campaign, "spent": str(spent)}
        tx.set(campaign_key, booked, keep_ttl=True)
        tx.set(order_key, order)
        return booked

    return await store.transact(run)
