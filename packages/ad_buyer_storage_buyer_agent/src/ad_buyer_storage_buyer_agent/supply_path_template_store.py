"""``SupplyPathTemplateStore``: reusable supply path (curation) templates (``supply_path_templates``)."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing
from ad_buyer_storage_buyer_agent._rows import now_iso

__all__ = ["SupplyPathTemplateStore"]

logger = logging.getLogger(__name__)

_ALLOWED = frozenset(
    {
        "name",
        "scoring_weights",
        "max_reseller_hops",
        "require_sellers_json",
        "preferred_ssps",
        "blocked_ssps",
        "preferred_curators",
        "rules",
    }
)


class SupplyPathTemplateStore:
    """Supply path templates, on the backing of the :class:`DealStore` composing it."""

    def __init__(self, conn: Backing | None, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def save_supply_path_template(
        self,
        *,
        template_id: str | None = None,
        name: str,
        scoring_weights: str | None = None,
        max_reseller_hops: int | None = None,
        require_sellers_json: int | None = None,
        preferred_ssps: str | None = None,
        blocked_ssps: str | None = None,
        preferred_curators: str | None = None,
        rules: str | None = None,
    ) -> str:
        """Insert a template; its id (generated when not given)."""
        if template_id is None:
            template_id = str(uuid.uuid4())
        now = now_iso()
        given = {
            "id": template_id,
            "name": name,
            "scoring_weights": scoring_weights,
            "max_reseller_hops": max_reseller_hops,
            "require_sellers_json": require_sellers_json,
            "preferred_ssps": preferred_ssps,
            "blocked_ssps": blocked_ssps,
            "preferred_curators": preferred_curators,
            "rules": rules,
            "created_at": now,
            "updated_at": now,
        }
        _ops.run_on(self._conn, lambda b: _ops.insert(b, "supply_path_templates", given))
        logger.info("Saved supply path template %s: %s", template_id, name)
        return template_id

    def get_supply_path_template(self, template_id: str) -> dict[str, Any] | None:
        """A template by id, or None."""
        return _ops.run_on(self._conn, lambda b: _ops.get(b, "supply_path_templates", template_id))

    def list_supply_path_templates(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Templates, newest first, at most *limit*."""
        return _ops.run_on(
            self._conn,
            lambda b: _ops.rows(b, "supply_path_templates", order_by="created_at", descending=True, limit=limit),
        )

    def update_supply_path_template(self, template_id: str, **kwargs: Any) -> bool:
        """Update the known columns given and ``updated_at``; False if none or no such template."""
        updates = {k: v for k, v in kwargs.items() if k in _ALLOWED}
        if not updates:
            return False
        updates["updated_at"] = now_iso()
        return _ops.run_on(self._conn, lambda b: _ops.update(b, "supply_path_templates", [template_id], updates))

    def delete_supply_path_template(self, template_id: str) -> bool:
        """Delete a template; whether it existed."""
        return _ops.run_on(self._conn, lambda b: _ops.delete(b, "supply_path_templates", template_id))
