"""``JobStore``: API-initiated booking jobs (``jobs``), upserted.

``save_job`` inserts or replaces a job in one transaction, keeping its ``created_at``; reads
decode the JSON columns and give ``auto_approve`` as a bool, as upstream does.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any

from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing
from ad_buyer_storage_buyer_agent._rows import now_iso
from ad_buyer_storage_buyer_agent.schema import TABLES

__all__ = ["JobStore"]

_JSON_FIELDS = ("brief", "budget_allocs", "recommendations", "booked_lines", "errors")


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    for name in _JSON_FIELDS:
        value = row.get(name)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                row[name] = json.loads(value)
    row["auto_approve"] = bool(row.get("auto_approve", 0))
    return row


class JobStore:
    """Booking jobs, on the backing of the :class:`DealStore` composing it."""

    def __init__(self, conn: Backing | None, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def save_job(
        self,
        *,
        job_id: str,
        status: str = "pending",
        progress: float = 0.0,
        brief: str | None = None,
        auto_approve: bool = False,
        budget_allocs: str | None = None,
        recommendations: str | None = None,
        booked_lines: str | None = None,
        errors: str | None = None,
    ) -> str:
        """Insert or update a job (its ``created_at`` kept); the job id."""
        now = now_iso()
        fields = {
            "status": status,
            "progress": progress,
            "brief": brief or "{}",
            "auto_approve": 1 if auto_approve else 0,
            "budget_allocs": budget_allocs or "{}",
            "recommendations": recommendations or "[]",
            "booked_lines": booked_lines or "[]",
            "errors": errors or "[]",
            "updated_at": now,
        }
        table = TABLES["jobs"]

        async def upsert(backing: Backing) -> None:
            key = table.pk_key(backing, [job_id])

            async def run(tx: Transaction) -> None:
                current = await tx.get(key)
                if isinstance(current, dict):
                    tx.set(key, table.changed(current, fields))
                else:
                    row = table.build({"id": job_id, **fields, "created_at": now})
                    await table.insert(tx, backing, TABLES, row)

            await _ops.transact(backing, run)

        _ops.run_on(self._conn, upsert)
        return job_id

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """A job with its JSON fields decoded, or None."""
        row = _ops.run_on(self._conn, lambda b: _ops.get(b, "jobs", job_id))
        return None if row is None else _decoded(row)

    def list_jobs(self, *, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Jobs (of one status), newest first, at most *limit*, JSON fields decoded."""
        equal = {"status": status} if status is not None else {}
        found = _ops.run_on(
            self._conn,
            lambda b: _ops.rows(
                b, "jobs", equal=equal, order_by="created_at", descending=True, ties_descending=True, limit=limit
            ),
        )
        return [_decoded(r) for r in found]
