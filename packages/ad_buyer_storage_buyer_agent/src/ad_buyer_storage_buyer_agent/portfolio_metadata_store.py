"""``PortfolioMetadataStore``: extrinsic metadata attached to deals (``portfolio_metadata``)."""

from __future__ import annotations

import threading
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing

__all__ = ["PortfolioMetadataStore"]

_ALLOWED = frozenset({"import_source", "import_date", "tags", "advertiser_id", "agency_id"})


class PortfolioMetadataStore:
    """Portfolio metadata, on the backing of the :class:`DealStore` composing it."""

    def __init__(self, conn: Backing | None, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def save_portfolio_metadata(
        self,
        *,
        deal_id: str,
        import_source: str | None = None,
        import_date: str | None = None,
        tags: str | None = None,
        advertiser_id: str | None = None,
        agency_id: str | None = None,
    ) -> int:
        """Insert a record for a deal (which must exist); its auto-generated row id."""
        given = {
            "deal_id": deal_id,
            "import_source": import_source,
            "import_date": import_date,
            "tags": tags,
            "advertiser_id": advertiser_id,
            "agency_id": agency_id,
        }
        row = _ops.run_on(self._conn, lambda b: _ops.insert(b, "portfolio_metadata", given))
        return int(row["id"])

    def get_portfolio_metadata(self, deal_id: str) -> dict[str, Any] | None:
        """The deal's first record, or None."""
        found = _ops.run_on(
            self._conn, lambda b: _ops.rows(b, "portfolio_metadata", equal={"deal_id": deal_id}, limit=1)
        )
        return found[0] if found else None

    def update_portfolio_metadata(self, deal_id: str, **kwargs: Any) -> bool:
        """Update the known columns given on every record of the deal; whether any changed."""
        updates = {k: v for k, v in kwargs.items() if k in _ALLOWED}
        if not updates:
            return False
        changed = _ops.run_on(
            self._conn, lambda b: _ops.update_where(b, "portfolio_metadata", {"deal_id": deal_id}, updates)
        )
        return changed > 0

    def delete_portfolio_metadata(self, deal_id: str) -> bool:
        """Delete the deal's records; whether there were any."""
        deleted = _ops.run_on(self._conn, lambda b: _ops.delete_where(b, "portfolio_metadata", {"deal_id": deal_id}))
        return deleted > 0
