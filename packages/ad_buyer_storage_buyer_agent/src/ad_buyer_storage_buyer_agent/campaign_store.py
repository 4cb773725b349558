"""``CampaignStore``: campaigns, their lifecycle events, pacing snapshots, creative assets,
ad server bindings and approval requests, on ad-buyer-storage, with upstream's API.

``transition_campaign_status`` reads the campaign, checks the move with the host's
``CampaignAutomationStateMachine`` (its ``InvalidTransitionError`` comes out unchanged; an
unknown campaign is ``KeyError``, as upstream's), writes the new status and the lifecycle
event in one transaction: processes sharing the store never lose a transition, and a
campaign's events are in the order its transitions happened. ``create_campaign`` writes the
campaign and its ``campaign.created`` event together.
"""

from __future__ import annotations

import uuid
from typing import Any

from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing
from ad_buyer_storage_buyer_agent._host import require
from ad_buyer_storage_buyer_agent._rows import now_iso
from ad_buyer_storage_buyer_agent.schema import TABLES

__all__ = ["CampaignStore"]

_CAMPAIGNS = TABLES["campaigns"]
_EVENTS = TABLES["campaign_events"]
#: The lifecycle event each target status emits (by the status's value).
TRANSITION_EVENTS: dict[str, str] = {
    "planning": "campaign.plan_generated",
    "booking": "campaign.booking_started",
    "ready": "campaign.ready",
    "active": "campaign.activated",
    "completed": "campaign.completed",
    "canceled": "campaign.canceled",
    "paused": "campaign.paused",
    "pacing_hold": "campaign.pacing_hold",
}
_CAMPAIGN_FIELDS = frozenset(
    {
        "campaign_name",
        "status",
        "total_budget",
        "currency",
        "flight_start",
        "flight_end",
        "channels",
        "target_audience",
        "target_geo",
        "kpis",
        "brand_safety",
        "approval_config",
        "advertiser_id",
    }
)
_ASSET_FIELDS = frozenset(
    {"asset_name", "asset_type", "format_spec", "source_url", "validation_status", "validation_errors"}
)
_BINDING_FIELDS = frozenset({"ad_server", "external_campaign_id", "status", "creative_assignments", "last_sync_at"})
_APPROVAL_FIELDS = frozenset({"status", "decided_at", "reviewer", "notes"})


def _event_row(
    campaign_id: str, event_type: str, from_status: str | None, to_status: str | None, payload: str | None
) -> dict[str, Any]:
    return _EVENTS.build(
        {
            "event_id": str(uuid.uuid4()),
            "campaign_id": campaign_id,
            "event_type": event_type,
            "timestamp": now_iso(),
            "from_status": from_status,
            "to_status": to_status,
            "payload": payload or "{}",
        }
    )


def _only(fields: frozenset[str], kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in fields}


class CampaignStore(_ops.Connected):
    """Campaign automation records on any ad-buyer-storage backend.

    Args:
        database_url: ``sqlite:///./ad_buyer.db``, ``sqlite:///:memory:`` (a private store),
            ``postgresql://...``, ``redis://...`` or a backend name (``hybrid``).
    """

    def _create_campaign_events_table(self) -> None:
        """Upstream creates the table here; the facade's rows need no DDL."""

    def create_approval_requests_table(self) -> None:
        """Upstream creates the table here; the facade's rows need no DDL (kept for callers)."""

    # -- lifecycle events ------------------------------------------------------------------------
    def _emit_event(
        self,
        campaign_id: str,
        event_type: str,
        from_status: str | None = None,
        to_status: str | None = None,
        payload: str | None = None,
    ) -> str:
        """Record a lifecycle event (the campaign must exist); its generated id."""
        row = _event_row(campaign_id, event_type, from_status, to_status, payload)

        async def emit(backing: Backing) -> None:
            async def run(tx: Transaction) -> None:
                await _EVENTS.insert(tx, backing, TABLES, row)

            await _ops.transact(backing, run)

        self._run(emit)
        return str(row["event_id"])

    def get_campaign_events(self, campaign_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """A campaign's lifecycle events, oldest first, at most *limit*."""
        return self._run(
            lambda b: _ops.rows(b, "campaign_events", parent=[campaign_id], order_by="timestamp", limit=limit)
        )

    # -- state machine -------------------------------------------------------------------------
    def transition_campaign_status(self, campaign_id: str, new_status: Any) -> bool:
        """Check and make a status move, with its event, in one transaction; True.

        Raises ``KeyError`` for an unknown campaign and the host's ``InvalidTransitionError``
        for a move its ``CampaignAutomationStateMachine`` refuses (nothing written)."""
        status_type, machine_type = require("models.state_machine", "CampaignStatus", "CampaignAutomationStateMachine")

        async def move(backing: Backing) -> None:
            key = _CAMPAIGNS.pk_key(backing, [campaign_id])

            async def run(tx: Transaction) -> None:
                row = await tx.get(key)
                if not isinstance(row, dict):
                    raise KeyError(f"Campaign not found: {campaign_id}")
                current = status_type(row["status"])
                machine_type(order_id=campaign_id, initial_status=current).transition(new_status)
                target = str(getattr(new_status, "value", new_status))
                tx.set(key, _CAMPAIGNS.changed(row, {"status": target, "updated_at": now_iso()}))
                event_type = TRANSITION_EVENTS.get(target)
                if event_type:
                    event = _event_row(campaign_id, event_type, str(current.value), target, None)
                    await _EVENTS.insert(tx, backing, TABLES, event)

            await _ops.transact(backing, run)

        self._run(move)
        return True

    def create_campaign(self, brief: dict[str, Any]) -> str:
        """A new campaign in ``draft`` from a brief, with its ``campaign.created`` event; its id."""
        campaign_id = str(uuid.uuid4())
        now = now_iso()
        row = _CAMPAIGNS.build(
            {
                "campaign_id": campaign_id,
                "advertiser_id": brief["advertiser_id"],
                "campaign_name": brief["campaign_name"],
                "status": "draft",
                "total_budget": brief["total_budget"],
                "currency": brief.get("currency", "USD"),
                "flight_start": brief["flight_start"],
                "flight_end": brief["flight_end"],
                "channels": brief.get("channels"),
                "target_audience": brief.get("target_audience"),
                "target_geo": brief.get("target_geo"),
                "kpis": brief.get("kpis"),
                "brand_safety": brief.get("brand_safety"),
                "approval_config": brief.get("approval_config"),
                "created_at": now,
                "updated_at": now,
            }
        )
        event = _event_row(campaign_id, "campaign.created", None, "draft", None)

        async def create(backing: Backing) -> None:
            async def run(tx: Transaction) -> None:
                await _CAMPAIGNS.insert(tx, backing, TABLES, dict(row))
                await _EVENTS.insert(tx, backing, TABLES, dict(event))

            await _ops.transact(backing, run)

        self._run(create)
        return campaign_id

    def _to(self, campaign_id: str, status_name: str) -> None:
        (status_type,) = require("models.state_machine", "CampaignStatus")
        self.transition_campaign_status(campaign_id, getattr(status_type, status_name))

    def start_planning(self, campaign_id: str) -> None:
        self._to(campaign_id, "PLANNING")

    def start_booking(self, campaign_id: str) -> None:
        self._to(campaign_id, "BOOKING")

    def mark_ready(self, campaign_id: str) -> None:
        self._to(campaign_id, "READY")

    def activate_campaign(self, campaign_id: str) -> None:
        self._to(campaign_id, "ACTIVE")

    def pause_campaign(self, campaign_id: str) -> None:
        self._to(campaign_id, "PAUSED")

    def resume_campaign(self, campaign_id: str) -> None:
        self._to(campaign_id, "ACTIVE")

    def complete_campaign(self, campaign_id: str) -> None:
        self._to(campaign_id, "COMPLETED")

    def cancel_campaign(self, campaign_id: str) -> None:
        self._to(campaign_id, "CANCELED")

    # -- campaigns -----------------------------------------------------------------------------
    def save_campaign(
        self,
        *,
        campaign_id: str | None = None,
        advertiser_id: str,
        campaign_name: str,
        status: str = "DRAFT",
        total_budget: float,
        currency: str = "USD",
        flight_start: str,
        flight_end: str,
        channels: str | None = None,
        target_audience: str | None = None,
        target_geo: str | None = None,
        kpis: str | None = None,
        brand_safety: str | None = None,
        approval_config: str | None = None,
    ) -> str:
        """Insert a campaign; its id (generated when not given). A taken id is ``sqlite3.IntegrityError``."""
        if campaign_id is None:
            campaign_id = str(uuid.uuid4())
        now = now_iso()
        given = {
            "campaign_id": campaign_id,
            "advertiser_id": advertiser_id,
            "campaign_name": campaign_name,
            "status": status,
            "total_budget": total_budget,
            "currency": currency,
            "flight_start": flight_start,
            "flight_end": flight_end,
            "channels": channels,
            "target_audience": target_audience,
            "target_geo": target_geo,
            "kpis": kpis,
            "brand_safety": brand_safety,
            "approval_config": approval_config,
            "created_at": now,
            "updated_at": now,
        }
        self._run(lambda b: _ops.insert(b, "campaigns", given))
        return campaign_id

    def get_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        return self._run(lambda b: _ops.get(b, "campaigns", campaign_id))

    def list_campaigns(
        self, *, status: str | None = None, advertiser_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Campaigns matching the filters given, newest first, at most *limit*."""
        equal = {k: v for k, v in (("status", status), ("advertiser_id", advertiser_id)) if v is not None}
        return self._run(
            lambda b: _ops.rows(b, "campaigns", equal=equal, order_by="created_at", descending=True, limit=limit)
        )

    def update_campaign_status(self, campaign_id: str, new_status: str) -> bool:
        """Set a campaign's status (unchecked); False if it does not exist."""
        updates = {"status": new_status, "updated_at": now_iso()}
        return self._run(lambda b: _ops.update(b, "campaigns", [campaign_id], updates))

    def update_campaign(self, campaign_id: str, **kwargs: Any) -> bool:
        """Update the known columns given and ``updated_at``; False if none or no such campaign."""
        updates = _only(_CAMPAIGN_FIELDS, kwargs)
        if not updates:
            return False
        updates["updated_at"] = now_iso()
        return self._run(lambda b: _ops.update(b, "campaigns", [campaign_id], updates))

    # -- pacing snapshots ----------------------------------------------------------------------
    def save_pacing_snapshot(
        self,
        *,
        snapshot_id: str | None = None,
        campaign_id: str,
        timestamp: str,
        total_budget: float = 0.0,
        total_spend: float = 0.0,
        pacing_pct: float = 0.0,
        expected_spend: float = 0.0,
        deviation_pct: float = 0.0,
        channel_snapshots: str = "[]",
        deal_snapshots: str = "[]",
        recommendations: str = "[]",
    ) -> str:
        if snapshot_id is None:
            snapshot_id = str(uuid.uuid4())
        given = {
            "snapshot_id": snapshot_id,
            "campaign_id": campaign_id,
            "timestamp": timestamp,
            "total_budget": total_budget,
            "total_spend": total_spend,
            "pacing_pct": pacing_pct,
            "expected_spend": expected_spend,
            "deviation_pct": deviation_pct,
            "channel_snapshots": channel_snapshots,
            "deal_snapshots": deal_snapshots,
            "recommendations": recommendations,
        }
        self._run(lambda b: _ops.insert(b, "pacing_snapshots", given))
        return snapshot_id

    def get_pacing_snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        return self._run(lambda b: _ops.get(b, "pacing_snapshots", snapshot_id))

    def list_pacing_snapshots(self, *, campaign_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """A campaign's snapshots, latest ``timestamp`` first, at most *limit*."""
        return self._run(
            lambda b: _ops.rows(
                b,
                "pacing_snapshots",
                equal={"campaign_id": campaign_id},
                order_by="timestamp",
                descending=True,
                ties_descending=True,
                limit=limit,
            )
        )

    # -- creative assets -----------------------------------------------------------------------
    def save_creative_asset(
        self,
        *,
        asset_id: str | None = None,
        campaign_id: str,
        asset_name: str,
        asset_type: str,
        format_spec: str | None = None,
        source_url: str | None = None,
        validation_status: str | None = None,
        validation_errors: str | None = None,
    ) -> str:
        """Insert an asset (omitted optional columns keep their defaults); its id."""
        if asset_id is None:
            asset_id = str(uuid.uuid4())
        given: dict[str, Any] = {
            "asset_id": asset_id,
            "campaign_id": campaign_id,
            "asset_name": asset_name,
            "asset_type": asset_type,
            "format_spec": format_spec,
            "source_url": source_url,
            "created_at": now_iso(),
        }
        if validation_status is not None:
            given["validation_status"] = validation_status
        if validation_errors is not None:
            given["validation_errors"] = validation_errors
        self._run(lambda b: _ops.insert(b, "creative_assets", given))
        return asset_id

    def get_creative_asset(self, asset_id: str) -> dict[str, Any] | None:
        return self._run(lambda b: _ops.get(b, "creative_assets", asset_id))

    def list_creative_assets(
        self, *, campaign_id: str, asset_type: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        equal = {"campaign_id": campaign_id, **({"asset_type": asset_type} if asset_type is not None else {})}
        return self._run(
            lambda b: _ops.rows(b, "creative_assets", equal=equal, order_by="created_at", descending=True, limit=limit)
        )

    def update_creative_asset(self, asset_id: str, **kwargs: Any) -> bool:
        updates = _only(_ASSET_FIELDS, kwargs)
        if not updates:
            return False
        return self._run(lambda b: _ops.update(b, "creative_assets", [asset_id], updates))

    # -- ad server bindings --------------------------------------------------------------------
    def save_ad_server_campaign(
        self,
        *,
        binding_id: str | None = None,
        campaign_id: str,
        ad_server: str,
        external_campaign_id: str | None = None,
        status: str = "PENDING",
        creative_assignments: str | None = None,
        last_sync_at: str | None = None,
    ) -> str:
        if binding_id is None:
            binding_id = str(uuid.uuid4())
        given = {
            "binding_id": binding_id,
            "campaign_id": campaign_id,
            "ad_server": ad_server,
            "external_campaign_id": external_campaign_id,
            "status": status,
            "creative_assignments": creative_assignments,
            "last_sync_at": last_sync_at,
            "created_at": now_iso(),
        }
        self._run(lambda b: _ops.insert(b, "ad_server_campaigns", given))
        return binding_id

    def get_ad_server_campaign(self, binding_id: str) -> dict[str, Any] | None:
        return self._run(lambda b: _ops.get(b, "ad_server_campaigns", binding_id))

    def list_ad_server_campaigns(
        self, *, campaign_id: str, ad_server: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        equal = {"campaign_id": campaign_id, **({"ad_server": ad_server} if ad_server is not None else {})}
        return self._run(
            lambda b: _ops.rows(
                b, "ad_server_campaigns", equal=equal, order_by="created_at", descending=True, limit=limit
            )
        )

    def update_ad_server_campaign(self, binding_id: str, **kwargs: Any) -> bool:
        updates = _only(_BINDING_FIELDS, kwargs)
        if not updates:
            return False
        return self._run(lambda b: _ops.update(b, "ad_server_campaigns", [binding_id], updates))

    # -- approval requests ---------------------------------------------------------------------
    def save_approval_request(
        self,
        *,
        approval_request_id: str,
        campaign_id: str,
        stage: str,
        status: str,
        requested_at: str,
        context: str | None = None,
    ) -> str:
        """Insert a request for an existing campaign (else ``sqlite3.IntegrityError``); its id."""
        given = {
            "approval_request_id": approval_request_id,
            "campaign_id": campaign_id,
            "stage": stage,
            "status": status,
            "requested_at": requested_at,
            "context": context or "{}",
        }
        self._run(lambda b: _ops.insert(b, "approval_requests", given))
        return approval_request_id

    def update_approval_request(self, approval_request_id: str, **kwargs: Any) -> bool:
        updates = _only(_APPROVAL_FIELDS, kwargs)
        if not updates:
            return False
        return self._run(lambda b: _ops.update(b, "approval_requests", [approval_request_id], updates))

    def get_approval_request(self, approval_request_id: str) -> dict[str, Any] | None:
        return self._run(lambda b: _ops.get(b, "approval_requests", approval_request_id))

    def list_approval_requests(
        self,
        *,
        campaign_id: str | None = None,
        stage: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Requests matching the filters given, latest ``requested_at`` first, at most *limit*."""
        equal = {k: v for k, v in (("campaign_id", campaign_id), ("stage", stage), ("status", status)) if v is not None}
        return self._run(
            lambda b: _ops.rows(
                b, "approval_requests", equal=equal, order_by="requested_at", descending=True, limit=limit
            )
        )
