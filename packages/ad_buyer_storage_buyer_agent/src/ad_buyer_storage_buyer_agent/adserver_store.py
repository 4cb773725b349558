"""``AdServerStore``: ad server integration records as the host's ``AdServerCampaign`` models.

The models (``AdServerCampaign``, ``AdServerBinding``, ``AdServerDelivery``,
``AdServerType``, ``AdServerCampaignStatus``) are the agent's own, imported from
``ad_buyer.models.campaign`` when a record is read or written. Upstream names its table
``ad_server_campaigns`` like ``CampaignStore``'s bindings table (the two cannot share a SQLite
file); here the records have a table of their own (``adserver_records``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._host import require
from ad_buyer_storage_buyer_agent._rows import now_iso

__all__ = ["AdServerStore"]

_FORMATS = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S")
_TABLE = "adserver_records"


def _models() -> tuple[Any, ...]:
    return require(
        "models.campaign",
        "AdServerBinding",
        "AdServerCampaign",
        "AdServerCampaignStatus",
        "AdServerDelivery",
        "AdServerType",
    )


class AdServerStore(_ops.Connected):
    """Ad server integration records on any ad-buyer-storage backend.

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

    def _serialize_bindings(self, bindings: list[Any]) -> str:
        data = []
        for binding in bindings:
            item = binding.model_dump()
            item["last_sync_at"] = self._dt_to_iso(binding.last_sync_at)
            data.append(item)
        return json.dumps(data)

    def _deserialize_bindings(self, raw: str) -> list[Any]:
        binding_type = _models()[0]
        result = []
        for item in json.loads(raw):
            if isinstance(item.get("last_sync_at"), str):
                item["last_sync_at"] = self._iso_to_dt(item["last_sync_at"])
            result.append(binding_type(**item))
        return result

    def _serialize_delivery(self, delivery: Any) -> str | None:
        if delivery is None:
            return None
        item = delivery.model_dump()
        item["last_report_at"] = self._dt_to_iso(delivery.last_report_at)
        return json.dumps(item)

    def _deserialize_delivery(self, raw: str | None) -> Any:
        if raw is None:
            return None
        item = json.loads(raw)
        if isinstance(item.get("last_report_at"), str):
            item["last_report_at"] = self._iso_to_dt(item["last_report_at"])
        return _models()[3](**item)

    def _row_to_campaign(self, row: dict[str, Any]) -> Any:
        _, campaign, status, _, server = _models()
        return campaign(
            id=row["id"],
            campaign_id=row["campaign_id"],
            ad_server=server(row["ad_server"]),
            ad_server_campaign_id=row["ad_server_campaign_id"],
            status=status(row["status"]),
            bindings=self._deserialize_bindings(row["bindings"]),
            delivery=self._deserialize_delivery(row["delivery"]),
            created_at=self._iso_to_dt(row["created_at"]),
        )

    def save_ad_server_campaign(self, record: Any) -> str:
        """Persist an ``AdServerCampaign``; its id. A taken id is ``sqlite3.IntegrityError``."""
        given = {
            "id": record.id,
            "campaign_id": record.campaign_id,
            "ad_server": record.ad_server.value,
            "ad_server_campaign_id": record.ad_server_campaign_id,
            "status": record.status.value,
            "bindings": self._serialize_bindings(record.bindings),
            "delivery": self._serialize_delivery(record.delivery),
            "created_at": self._dt_to_iso(record.created_at),
            "updated_at": now_iso(),
        }
        self._run(lambda b: _ops.insert(b, _TABLE, given))
        return str(record.id)

    def get_ad_server_campaign(self, record_id: str) -> Any:
        """The ``AdServerCampaign`` with that id, or None."""
        row = self._run(lambda b: _ops.get(b, _TABLE, record_id))
        return None if row is None else self._row_to_campaign(row)

    def list_ad_server_campaigns(
        self, campaign_id: str | None = None, ad_server: Any = None, status: Any = None
    ) -> list[Any]:
        """Records matching the filters given, oldest ``created_at`` first."""
        equal: dict[str, Any] = {}
        if campaign_id is not None:
            equal["campaign_id"] = campaign_id
        if ad_server is not None:
            equal["ad_server"] = ad_server.value
        if status is not None:
            equal["status"] = status.value
        found = self._run(lambda b: _ops.rows(b, _TABLE, equal=equal, order_by="created_at"))
        return [self._row_to_campaign(r) for r in found]

    def update_ad_server_campaign(
        self,
        record_id: str,
        *,
        status: Any = None,
        ad_server_campaign_id: str | None = None,
        bindings: list[Any] | None = None,
        delivery: Any = None,
    ) -> None:
        """Update the fields given; ``ValueError`` if the record does not exist."""
        updates: dict[str, Any] = {}
        if status is not None:
            updates["status"] = status.value
        if ad_server_campaign_id is not None:
            updates["ad_server_campaign_id"] = ad_server_campaign_id
        if bindings is not None:
            updates["bindings"] = self._serialize_bindings(bindings)
        if delivery is not None:
            updates["delivery"] = self._serialize_delivery(delivery)
        if not updates:
            return
        updates["updated_at"] = now_iso()
        if not self._run(lambda b: _ops.update(b, _TABLE, [record_id], updates)):
            raise ValueError(f"Ad server campaign record '{record_id}' not found")
