"""``BookingRecordStore``: a deal's booked line items (``booking_records``).

UNIQUE(deal_id, line_id) (two NULL line ids never collide, as in SQLite) and the deal's
existence are checked in the insert's transaction: ``sqlite3.IntegrityError`` otherwise.
"""

from __future__ import annotations

import threading
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing

__all__ = ["BookingRecordStore"]


class BookingRecordStore:
    """Booked line items, on the backing of the :class:`DealStore` composing it."""

    def __init__(self, conn: Backing | None, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def save_booking_record(
        self,
        *,
        deal_id: str,
        order_id: str | None = None,
        line_id: str | None = None,
        channel: str = "",
        impressions: int = 0,
        cost: float = 0.0,
        booking_status: str = "pending",
        metadata: str | None = None,
    ) -> int:
        """Record a booked line; its auto-generated row id."""
        given = {
            "deal_id": deal_id,
            "order_id": order_id,
            "line_id": line_id,
            "channel": channel,
            "impressions": impressions,
            "cost": cost,
            "booking_status": booking_status,
            "metadata": metadata or "{}",
        }
        row = _ops.run_on(self._conn, lambda b: _ops.insert(b, "booking_records", given))
        return int(row["id"])

    def get_booking_records(self, deal_id: str) -> list[dict[str, Any]]:
        """A deal's booking records, in insertion order (upstream's rowid order)."""
        return _ops.run_on(self._conn, lambda b: _ops.rows(b, "booking_records", parent=[deal_id]))
