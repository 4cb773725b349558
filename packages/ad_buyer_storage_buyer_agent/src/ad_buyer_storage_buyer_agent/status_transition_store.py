"""``StatusTransitionStore``: the append-only audit log of status changes (``status_transitions``).

Rows are kept per entity (one key range each), ids from one counter per table: a transition's
id and timestamp are taken inside the transaction that read the entity's status, so two
processes' histories of one entity interleave in the order their transitions committed.
"""

from __future__ import annotations

import threading
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing

__all__ = ["StatusTransitionStore"]


class StatusTransitionStore:
    """Status transitions, on the backing of the :class:`DealStore` composing it."""

    def __init__(self, conn: Backing | None, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def record_status_transition(
        self,
        *,
        entity_type: str,
        entity_id: str,
        from_status: str | None,
        to_status: str,
        triggered_by: str = "system",
        notes: str = "",
    ) -> int:
        """Log a status change; its auto-generated row id."""
        given = {
            "entity_type": entity_type,
            "entity_id": entity_id,
            "from_status": from_status,
            "to_status": to_status,
            "triggered_by": triggered_by,
            "notes": notes,
        }
        row = _ops.run_on(self._conn, lambda b: _ops.insert(b, "status_transitions", given))
        return int(row["id"])

    def get_status_history(self, entity_type: str, entity_id: str) -> list[dict[str, Any]]:
        """An entity's transitions, oldest first (ties in insertion order)."""
        return _ops.run_on(
            self._conn,
            lambda b: _ops.rows(b, "status_transitions", parent=[entity_type, entity_id], order_by="created_at"),
        )
