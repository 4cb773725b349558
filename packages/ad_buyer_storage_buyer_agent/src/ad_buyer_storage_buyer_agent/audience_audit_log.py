"""The audience-plan audit trail (``audience_audit_log``), with upstream's module API.

Append-only: ``log_event`` adds an event for a plan, ``get_events`` reads a plan's events oldest
first (ties in insertion order). Both are fail-open, as upstream's: a storage error is logged
at WARNING and swallowed (``get_events`` then returns ``[]``), so the audit trail never fails
the flow it observes. ``configure(url)`` points the module at a store (a ``sqlite:///:memory:``
one is private and dropped when the module is pointed elsewhere).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from typing import Any

from ad_buyer_storage_buyer_agent import _ops, _runtime
from ad_buyer_storage_buyer_agent._backing import Backing, acquire
from ad_buyer_storage_buyer_agent._rows import now_iso

__all__ = [
    "EVENT_CAPABILITY_REJECTION",
    "EVENT_DEGRADATION",
    "EVENT_PREFLIGHT_CACHE",
    "EVENT_SNAPSHOT_HONOR",
    "KNOWN_EVENT_TYPES",
    "configure",
    "get_events",
    "log_event",
]

logger = logging.getLogger(__name__)

EVENT_DEGRADATION = "degradation"
EVENT_CAPABILITY_REJECTION = "capability_rejection"
EVENT_SNAPSHOT_HONOR = "snapshot_honor"
EVENT_PREFLIGHT_CACHE = "preflight_cache"
KNOWN_EVENT_TYPES: frozenset[str] = frozenset(
    {EVENT_DEGRADATION, EVENT_CAPABILITY_REJECTION, EVENT_SNAPSHOT_HONOR, EVENT_PREFLIGHT_CACHE}
)

_DEFAULT_DATABASE_URL = "sqlite:///./ad_buyer.db"
_database_url: str = _DEFAULT_DATABASE_URL
_conn: Backing | None = None
_conn_lock = threading.Lock()
_TABLE = "audience_audit_log"


def configure(database_url: str) -> None:
    """Point the helpers at *database_url* (the next call opens it); the same URL again is a no-op."""
    global _database_url, _conn
    with _conn_lock:
        if database_url == _database_url and _conn is not None:
            return
        _database_url = database_url
        previous, _conn = _conn, None
    if previous is not None:
        try:
            _runtime.call(previous.release())
        except sqlite3.Error as exc:  # best effort: the new URL is what matters now
            logger.debug("audience_audit_log: closing the previous store failed: %s", exc)


def _get_conn() -> Backing:
    global _conn
    with _conn_lock:
        if _conn is None:
            _conn = _runtime.call(acquire(_database_url))
        return _conn


def _to_json_safe(value: Any) -> Any:
    """Pydantic models as their JSON dump, containers walked, anything else as it is."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_safe(v) for v in value]
    return value


def log_event(plan_id: str, event_type: str, payload: dict[str, Any] | None = None) -> None:
    """Append an event for *plan_id*; never raises for a storage failure (logged instead)."""
    if not plan_id:
        logger.warning("audience_audit_log.log_event called with empty plan_id; skipping")
        return
    if event_type not in KNOWN_EVENT_TYPES:
        logger.warning(
            "audience_audit_log.log_event: unknown event_type=%r (allowed: %s)", event_type, sorted(KNOWN_EVENT_TYPES)
        )
    safe = _to_json_safe(payload or {})
    try:
        payload_json = json.dumps(safe, default=str, sort_keys=True)
    except (TypeError, ValueError) as exc:
        logger.warning(
            "audience_audit_log.log_event: payload not JSON-serializable for plan_id=%s event_type=%s (%s); "
            "writing string repr",
            plan_id,
            event_type,
            exc,
        )
        payload_json = json.dumps({"_repr": repr(safe)})
    given = {"plan_id": plan_id, "event_type": event_type, "payload_json": payload_json, "created_at": now_iso()}
    try:
        _ops.run_on(_get_conn(), lambda b: _ops.insert(b, _TABLE, given))
    except sqlite3.Error as exc:
        logger.warning(
            "audience_audit_log.log_event: failed to insert plan_id=%s event_type=%s: %s", plan_id, event_type, exc
        )


def _events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events = []
    for row in rows:
        try:
            payload = json.loads(row["payload_json"])
        except (TypeError, ValueError):
            payload = {"_raw": row["payload_json"]}
        events.append(
            {
                "plan_id": row["plan_id"],
                "event_type": row["event_type"],
                "payload": payload,
                "created_at": row["created_at"],
            }
        )
    return events


def get_events(plan_id: str) -> list[dict[str, Any]]:
    """A plan's events oldest first (``payload`` decoded); ``[]`` when none or on failure."""
    if not plan_id:
        return []
    try:
        rows = _ops.run_on(_get_conn(), lambda b: _ops.rows(b, _TABLE, parent=[plan_id], order_by="created_at"))
    except sqlite3.Error as exc:
        logger.warning("audience_audit_log.get_events: failed for plan_id=%s: %s", plan_id, exc)
        return []
    return _events(rows)


def _all_events() -> list[dict[str, Any]]:
    """Every event, oldest first (a test and debugging helper, as upstream's)."""
    try:
        rows = _ops.run_on(_get_conn(), lambda b: _ops.rows(b, _TABLE, order_by="created_at"))
    except sqlite3.Error:
        return []
    return _events(rows)
