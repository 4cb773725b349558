"""``OrderStore``: buyer-side order state (``orders``), with upstream's API.

An order is kept under ``order:{order_id}`` with its data as JSON text and its status beside
it; ``set_order`` inserts or replaces it in one transaction, keeping its ``created_at``.
``list_orders`` gives the newest first (ties in insertion order, as upstream's sort does).
"""

from __future__ import annotations

import json
from typing import Any

from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing
from ad_buyer_storage_buyer_agent._rows import sql_now
from ad_buyer_storage_buyer_agent.schema import TABLES

__all__ = ["OrderStore"]

_ORDERS = TABLES["orders"]


class OrderStore(_ops.Connected):
    """Orders on any ad-buyer-storage backend.

    Args:
        database_url: ``sqlite:///./ad_buyer.db``, ``sqlite:///:memory:`` (a private store),
            ``postgresql://...``, ``redis://...`` or a backend name (``hybrid``).
    """

    def _create_tables(self) -> None:
        """Upstream creates its table here; the facade's rows need no DDL."""

    def _make_key(self, order_id: str) -> str:
        """The order's key in upstream's table: ``order:{order_id}``."""
        return f"order:{order_id}"

    def set_order(self, order_id: str, data: dict[str, Any]) -> None:
        """Insert or update an order (``data`` must be JSON; its ``status`` is kept beside it)."""
        key = self._make_key(order_id)
        fields = {"data": json.dumps(data), "status": data.get("status", "pending"), "updated_at": sql_now()}

        async def upsert(backing: Backing) -> None:
            row_key = _ORDERS.pk_key(backing, [key])

            async def run(tx: Transaction) -> None:
                current = await tx.get(row_key)
                if isinstance(current, dict):
                    tx.set(row_key, _ORDERS.changed(current, fields))
                else:
                    await _ORDERS.insert(tx, backing, TABLES, _ORDERS.build({"key": key, **fields}))

            await _ops.transact(backing, run)

        self._run(upsert)

    def get_order(self, order_id: str) -> dict[str, Any] | None:
        """An order's data, or None."""
        row = self._run(lambda b: _ops.get(b, "orders", self._make_key(order_id)))
        return None if row is None else _decoded(row)

    def list_orders(self, filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Orders' data (those of ``filters["status"]`` when given), newest first."""
        equal = {"status": filters["status"]} if filters and "status" in filters else {}
        found = self._run(lambda b: _ops.rows(b, "orders", equal=equal, order_by="created_at", descending=True))
        return [_decoded(r) for r in found]


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(row["data"])
    return data
