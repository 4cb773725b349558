"""``PerformanceCacheStore``: cached deal performance metrics (``performance_cache``).

``update_performance_cache`` changes the deal's latest entry only (upstream's "update the
latest row"), found and rewritten in one transaction.
"""

from __future__ import annotations

import threading
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing

__all__ = ["PerformanceCacheStore"]

_ALLOWED = frozenset(
    {
        "impressions_delivered",
        "spend_to_date",
        "fill_rate",
        "win_rate",
        "avg_effective_cpm",
        "last_delivery_at",
        "performance_trend",
        "cached_at",
    }
)


class PerformanceCacheStore:
    """Performance cache entries, on the backing of the :class:`DealStore` composing it."""

    def __init__(self, conn: Backing | None, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def save_performance_cache(
        self,
        *,
        deal_id: str,
        impressions_delivered: int | None = None,
        spend_to_date: float | None = None,
        fill_rate: float | None = None,
        win_rate: float | None = None,
        avg_effective_cpm: float | None = None,
        last_delivery_at: str | None = None,
        performance_trend: str | None = None,
        cached_at: str | None = None,
    ) -> int:
        """Insert an entry for a deal (which must exist); its auto-generated row id."""
        given = {
            "deal_id": deal_id,
            "impressions_delivered": impressions_delivered,
            "spend_to_date": spend_to_date,
            "fill_rate": fill_rate,
            "win_rate": win_rate,
            "avg_effective_cpm": avg_effective_cpm,
            "last_delivery_at": last_delivery_at,
            "performance_trend": performance_trend,
            "cached_at": cached_at,
        }
        row = _ops.run_on(self._conn, lambda b: _ops.insert(b, "performance_cache", given))
        return int(row["id"])

    def get_performance_cache(self, deal_id: str) -> dict[str, Any] | None:
        """The deal's latest entry (highest id), or None."""
        found = _ops.run_on(
            self._conn,
            lambda b: _ops.rows(
                b, "performance_cache", equal={"deal_id": deal_id}, order_by="id", descending=True, limit=1
            ),
        )
        return found[0] if found else None

    def update_performance_cache(self, deal_id: str, **kwargs: Any) -> bool:
        """Update the deal's latest entry; False if none or nothing to update."""
        updates = {k: v for k, v in kwargs.items() if k in _ALLOWED}
        if not updates:
            return False
        changed = _ops.run_on(
            self._conn,
            lambda b: _ops.update_where(b, "performance_cache", {"deal_id": deal_id}, updates, latest=True),
        )
        return changed > 0

    def delete_performance_cache(self, deal_id: str) -> bool:
        """Delete every entry of the deal; whether there were any."""
        deleted = _ops.run_on(self._conn, lambda b: _ops.delete_where(b, "performance_cache", {"deal_id": deal_id}))
        return deleted > 0
