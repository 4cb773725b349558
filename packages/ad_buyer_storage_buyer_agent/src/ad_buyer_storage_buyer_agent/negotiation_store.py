"""``NegotiationStore``: a deal's negotiation rounds (``negotiation_rounds``).

UNIQUE(deal_id, round_number) and the deal's existence (FOREIGN KEY) are checked in the
insert's transaction: a duplicate round or an unknown deal is ``sqlite3.IntegrityError``.
"""

from __future__ import annotations

import threading
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing

__all__ = ["NegotiationStore"]


class NegotiationStore:
    """Per-deal negotiation rounds, on the backing of the :class:`DealStore` composing it."""

    def __init__(self, conn: Backing | None, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def save_negotiation_round(
        self,
        *,
        deal_id: str,
        proposal_id: str,
        round_number: int,
        buyer_price: float,
        seller_price: float,
        action: str,
        rationale: str = "",
    ) -> int:
        """Record a round; its auto-generated row id."""
        given = {
            "deal_id": deal_id,
            "proposal_id": proposal_id,
            "round_number": round_number,
            "buyer_price": buyer_price,
            "seller_price": seller_price,
            "action": action,
            "rationale": rationale,
        }
        row = _ops.run_on(self._conn, lambda b: _ops.insert(b, "negotiation_rounds", given))
        return int(row["id"])

    def get_negotiation_history(self, deal_id: str) -> list[dict[str, Any]]:
        """A deal's rounds by round number."""
        return _ops.run_on(
            self._conn, lambda b: _ops.rows(b, "negotiation_rounds", parent=[deal_id], order_by="round_number")
        )
