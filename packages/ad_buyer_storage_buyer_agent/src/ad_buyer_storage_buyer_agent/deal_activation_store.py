"""``DealActivationStore``: cross-platform deal activations (``deal_activations``)."""

from __future__ import annotations

import threading
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing

__all__ = ["DealActivationStore"]

_ALLOWED = frozenset({"platform", "platform_deal_id", "activation_status", "last_sync_at"})


class DealActivationStore:
    """Deal activations, on the backing of the :class:`DealStore` composing it."""

    def __init__(self, conn: Backing | None, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def save_deal_activation(
        self,
        *,
        deal_id: str,
        platform: str,
        platform_deal_id: str | None = None,
        activation_status: str | None = None,
        last_sync_at: str | None = None,
    ) -> int:
        """Insert an activation of a deal (which must exist); its auto-generated row id."""
        given = {
            "deal_id": deal_id,
            "platform": platform,
            "platform_deal_id": platform_deal_id,
            "activation_status": activation_status,
            "last_sync_at": last_sync_at,
        }
        row = _ops.run_on(self._conn, lambda b: _ops.insert(b, "deal_activations", given))
        return int(row["id"])

    def get_deal_activations(self, deal_id: str) -> list[dict[str, Any]]:
        """A deal's activations, in insertion order."""
        return _ops.run_on(self._conn, lambda b: _ops.rows(b, "deal_activations", equal={"deal_id": deal_id}))

    def update_deal_activation(self, activation_id: int, **kwargs: Any) -> bool:
        """Update the known columns given; False if no such activation or nothing to update."""
        updates = {k: v for k, v in kwargs.items() if k in _ALLOWED}
        if not updates:
            return False
        return _ops.run_on(self._conn, lambda b: _ops.update(b, "deal_activations", [activation_id], updates))

    def delete_deal_activation(self, activation_id: int) -> bool:
        """Delete an activation; whether it existed."""
        return _ops.run_on(self._conn, lambda b: _ops.delete(b, "deal_activations", activation_id))
