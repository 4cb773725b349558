"""``CreativeAssetStore``: a campaign's creative assets (``creative_assets``), JSON decoded.

``format_spec`` (a dict) and ``validation_errors`` (a list) are written as JSON text and read
back decoded, as upstream does.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing
from ad_buyer_storage_buyer_agent._rows import now_iso

__all__ = ["CreativeAssetStore"]

_ALLOWED = frozenset(
    {"asset_name", "asset_type", "format_spec", "source_url", "validation_status", "validation_errors", "campaign_id"}
)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("format_spec", "validation_errors"):
        value = row.get(name)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                row[name] = json.loads(value)
    return row


class CreativeAssetStore:
    """Creative assets, on the backing of the :class:`DealStore` composing it."""

    def __init__(self, conn: Backing | None, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def save_creative_asset(
        self,
        *,
        asset_id: str | None = None,
        campaign_id: str,
        asset_name: str,
        asset_type: str,
        format_spec: dict[str, Any] | None = None,
        source_url: str | None = None,
        validation_status: str = "pending",
        validation_errors: list[Any] | None = None,
    ) -> str:
        """Insert an asset; its id (generated when not given)."""
        if asset_id is None:
            asset_id = str(uuid.uuid4())
        now = now_iso()
        given = {
            "asset_id": asset_id,
            "campaign_id": campaign_id,
            "asset_name": asset_name,
            "asset_type": asset_type,
            "format_spec": json.dumps(format_spec) if format_spec is not None else "{}",
            "source_url": source_url,
            "validation_status": validation_status,
            "validation_errors": json.dumps(validation_errors) if validation_errors is not None else "[]",
            "created_at": now,
            "updated_at": now,
        }
        _ops.run_on(self._conn, lambda b: _ops.insert(b, "creative_assets", given))
        return asset_id

    def get_creative_asset(self, asset_id: str) -> dict[str, Any] | None:
        """An asset with its JSON fields decoded, or None."""
        row = _ops.run_on(self._conn, lambda b: _ops.get(b, "creative_assets", asset_id))
        return None if row is None else _decoded(row)

    def list_creative_assets(
        self,
        *,
        campaign_id: str | None = None,
        asset_type: str | None = None,
        validation_status: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Assets matching the filters given, newest first, at most *limit*."""
        equal = {
            k: v
            for k, v in (
                ("campaign_id", campaign_id),
                ("asset_type", asset_type),
                ("validation_status", validation_status),
            )
            if v is not None
        }
        found = _ops.run_on(
            self._conn,
            lambda b: _ops.rows(b, "creative_assets", equal=equal, order_by="created_at", descending=True, limit=limit),
        )
        return [_decoded(r) for r in found]

    def update_creative_asset(self, asset_id: str, **kwargs: Any) -> bool:
        """Update the known columns given (dicts and lists as JSON) and ``updated_at``."""
        updates = {k: v for k, v in kwargs.items() if k in _ALLOWED}
        if not updates:
            return False
        if isinstance(updates.get("format_spec"), dict):
            updates["format_spec"] = json.dumps(updates["format_spec"])
        if isinstance(updates.get("validation_errors"), list):
            updates["validation_errors"] = json.dumps(updates["validation_errors"])
        updates["updated_at"] = now_iso()
        return _ops.run_on(self._conn, lambda b: _ops.update(b, "creative_assets", [asset_id], updates))

    def delete_creative_asset(self, asset_id: str) -> bool:
        """Delete an asset; whether it existed."""
        return _ops.run_on(self._conn, lambda b: _ops.delete(b, "creative_assets", asset_id))
