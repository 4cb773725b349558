"""``DealTemplateStore``: reusable deal templates (``deal_templates``)."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing
from ad_buyer_storage_buyer_agent._rows import now_iso

__all__ = ["DealTemplateStore"]

logger = logging.getLogger(__name__)

_ALLOWED = frozenset(
    {
        "name",
        "deal_type_pref",
        "inventory_types",
        "preferred_publishers",
        "excluded_publishers",
        "targeting_defaults",
        "default_price",
        "max_cpm",
        "min_impressions",
        "default_flight_days",
        "supply_path_prefs",
        "advertiser_id",
        "agency_id",
    }
)


class DealTemplateStore:
    """Deal templates, on the backing of the :class:`DealStore` composing it."""

    def __init__(self, conn: Backing | None, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def save_deal_template(
        self,
        *,
        template_id: str | None = None,
        name: str,
        deal_type_pref: str | None = None,
        inventory_types: str | None = None,
        preferred_publishers: str | None = None,
        excluded_publishers: str | None = None,
        targeting_defaults: str | None = None,
        default_price: float | None = None,
        max_cpm: float | None = None,
        min_impressions: int | None = None,
        default_flight_days: int | None = None,
        supply_path_prefs: str | None = None,
        advertiser_id: str | None = None,
        agency_id: str | None = None,
    ) -> str:
        """Insert a template; its id (generated when not given)."""
        if template_id is None:
            template_id = str(uuid.uuid4())
        now = now_iso()
        given = {
            "id": template_id,
            "name": name,
            "deal_type_pref": deal_type_pref,
            "inventory_types": inventory_types,
            "preferred_publishers": preferred_publishers,
            "excluded_publishers": excluded_publishers,
            "targeting_defaults": targeting_defaults,
            "default_price": default_price,
            "max_cpm": max_cpm,
            "min_impressions": min_impressions,
            "default_flight_days": default_flight_days,
            "supply_path_prefs": supply_path_prefs,
            "advertiser_id": advertiser_id,
            "agency_id": agency_id,
            "created_at": now,
            "updated_at": now,
        }
        _ops.run_on(self._conn, lambda b: _ops.insert(b, "deal_templates", given))
        logger.info("Saved deal template %s: %s", template_id, name)
        return template_id

    def get_deal_template(self, template_id: str) -> dict[str, Any] | None:
        """A template by id, or None."""
        return _ops.run_on(self._conn, lambda b: _ops.get(b, "deal_templates", template_id))

    def list_deal_templates(
        self, *, advertiser_id: str | None = None, deal_type_pref: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Templates matching the filters given, newest first, at most *limit*."""
        equal = {
            k: v for k, v in (("advertiser_id", advertiser_id), ("deal_type_pref", deal_type_pref)) if v is not None
        }
        return _ops.run_on(
            self._conn,
            lambda b: _ops.rows(b, "deal_templates", equal=equal, order_by="created_at", descending=True, limit=limit),
        )

    def update_deal_template(self, template_id: str, **kwargs: Any) -> bool:
        """Update the known columns given and ``updated_at``; False if none or no such template."""
        updates = {k: v for k, v in kwargs.items() if k in _ALLOWED}
        if not updates:
            return False
        updates["updated_at"] = now_iso()
        return _ops.run_on(self._conn, lambda b: _ops.update(b, "deal_templates", [template_id], updates))

    def delete_deal_template(self, template_id: str) -> bool:
        """Delete a template; whether it existed."""
        return _ops.run_on(self._conn, lambda b: _ops.delete(b, "deal_templates", template_id))
