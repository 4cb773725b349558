"""``PacingStore``: pacing snapshots as the host's ``PacingSnapshot`` models (``pacing_snapshots``).

The models (``PacingSnapshot``, ``ChannelSnapshot``, ``DealSnapshot``,
``PacingRecommendation``) are the agent's own, imported from ``ad_buyer.models.campaign`` when
a snapshot is read or written. Snapshots share their rows with ``CampaignStore``'s, as they
share upstream's table.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._host import require
from ad_buyer_storage_buyer_agent._rows import now_iso
from ad_buyer_storage_buyer_agent._select import Range

__all__ = ["PacingStore"]

_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S")


class PacingStore(_ops.Connected):
    """Pacing snapshots on any ad-buyer-storage backend.

    Args:
        database_url: ``sqlite:///./ad_buyer.db``, ``sqlite:///:memory:`` (a private store),
            ``postgresql://...``, ``redis://...`` or a backend name (``hybrid``).
    """

    def _create_tables(self) -> None:
        """Upstream creates its table here; the facade's rows need no DDL."""

    @staticmethod
    def _dt_to_iso(dt: datetime) -> str:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    @staticmethod
    def _iso_to_dt(s: str) -> datetime:
        for fmt in _FORMATS:
            try:
                return datetime.strptime(s, fmt).replace(tzinfo=UTC)
            except ValueError:
                continue
        raise ValueError(f"Cannot parse datetime: {s}")

    def _row_to_snapshot(self, row: dict[str, Any]) -> Any:
        snapshot, channel, deal, recommendation = require(
            "models.campaign", "PacingSnapshot", "ChannelSnapshot", "DealSnapshot", "PacingRecommendation"
        )
        return snapshot(
            snapshot_id=row["snapshot_id"],
            campaign_id=row["campaign_id"],
            timestamp=self._iso_to_dt(row["timestamp"]),
            total_budget=row["total_budget"],
            total_spend=row["total_spend"],
            pacing_pct=row["pacing_pct"],
            expected_spend=row["expected_spend"],
            deviation_pct=row["deviation_pct"],
            channel_snapshots=[channel(**c) for c in json.loads(row["channel_snapshots"])],
            deal_snapshots=[deal(**d) for d in json.loads(row["deal_snapshots"])],
            recommendations=[recommendation(**r) for r in json.loads(row["recommendations"])],
        )

    def save_pacing_snapshot(self, snapshot: Any) -> str:
        """Persist a ``PacingSnapshot``; its id. A taken id is ``sqlite3.IntegrityError``."""
        given = {
            "snapshot_id": snapshot.snapshot_id,
            "campaign_id": snapshot.campaign_id,
            "timestamp": self._dt_to_iso(snapshot.timestamp),
            "total_budget": snapshot.total_budget,
            "total_spend": snapshot.total_spend,
            "pacing_pct": snapshot.pacing_pct,
            "expected_spend": snapshot.expected_spend,
            "deviation_pct": snapshot.deviation_pct,
            "channel_snapshots": json.dumps([c.model_dump() for c in snapshot.channel_snapshots]),
            "deal_snapshots": json.dumps([d.model_dump() for d in snapshot.deal_snapshots]),
            "recommendations": json.dumps([r.model_dump() for r in snapshot.recommendations]),
            "created_at": now_iso(),
        }
        self._run(lambda b: _ops.insert(b, "pacing_snapshots", given))
        return str(snapshot.snapshot_id)

    def get_pacing_snapshot(self, snapshot_id: str) -> Any:
        """The ``PacingSnapshot`` with that id, or None."""
        row = self._run(lambda b: _ops.get(b, "pacing_snapshots", snapshot_id))
        return None if row is None else self._row_to_snapshot(row)

    def list_pacing_snapshots(
        self, campaign_id: str, start_time: datetime | None = None, end_time: datetime | None = None
    ) -> list[Any]:
        """A campaign's snapshots in ``[start_time, end_time)``, chronological."""
        ranges = []
        if start_time is not None:
            ranges.append(Range("timestamp", ">=", self._dt_to_iso(start_time)))
        if end_time is not None:
            ranges.append(Range("timestamp", "<", self._dt_to_iso(end_time)))
        found = self._run(
            lambda b: _ops.rows(
                b, "pacing_snapshots", equal={"campaign_id": campaign_id}, ranges=ranges, order_by="timestamp"
            )
        )
        return [self._row_to_snapshot(r) for r in found]

    def get_latest_pacing_snapshot(self, campaign_id: str) -> Any:
        """The campaign's most recently written snapshot (by ``created_at``), or None."""
        found = self._run(
            lambda b: _ops.rows(
                b,
                "pacing_snapshots",
                equal={"campaign_id": campaign_id},
                order_by="created_at",
                descending=True,
                limit=1,
            )
        )
        return self._row_to_snapshot(found[0]) if found else None
