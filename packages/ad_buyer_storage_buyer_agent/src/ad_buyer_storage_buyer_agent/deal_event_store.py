"""``DealEventStore``: persisted event-bus events (``events``)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing

__all__ = ["DealEventStore"]


class DealEventStore:
    """Event-bus events, on the backing of the :class:`DealStore` composing it."""

    def __init__(self, conn: Backing | None, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def save_event(
        self,
        *,
        event_id: str | None = None,
        event_type: str,
        flow_id: str = "",
        flow_type: str = "",
        deal_id: str = "",
        session_id: str = "",
        payload: str | None = None,
        metadata: str | None = None,
    ) -> str:
        """Persist an event; its id (generated when not given). A taken id is ``sqlite3.IntegrityError``."""
        if event_id is None:
            event_id = str(uuid.uuid4())
        given = {
            "id": event_id,
            "event_type": event_type,
            "flow_id": flow_id,
            "flow_type": flow_type,
            "deal_id": deal_id,
            "session_id": session_id,
            "payload": payload or "{}",
            "metadata": metadata or "{}",
        }
        _ops.run_on(self._conn, lambda b: _ops.insert(b, "events", given))
        return event_id

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        """An event by id, or None."""
        return _ops.run_on(self._conn, lambda b: _ops.get(b, "events", event_id))

    def list_events(
        self,
        *,
        event_type: str | None = None,
        flow_id: str | None = None,
        session_id: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Events matching the filters given, newest first, at most *limit*."""
        equal = {
            k: v
            for k, v in (("event_type", event_type), ("flow_id", flow_id), ("session_id", session_id))
            if v is not None
        }
        return _ops.run_on(
            self._conn,
            lambda b: _ops.rows(
                b, "events", equal=equal, order_by="created_at", descending=True, ties_descending=True, limit=limit
            ),
        )
