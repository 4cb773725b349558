"""``DealStore``: deal state on ad-buyer-storage, with upstream's API.

The composition root of deal persistence, as upstream's: it owns the backing (the store and
key namespace its URL names, see :mod:`._backing`), keeps the core deal CRUD and delegates the
other aggregates to the sub-stores it composes on ``connect()``.

What upstream did in separate statements under a process lock is one transaction here, so it
holds across processes sharing one store: ``save_deal`` writes the deal and its first
transition together (a taken id is ``sqlite3.IntegrityError``); ``update_deal_status`` reads
the status, checks the host's ``DealStateMachine``, writes the new status and the transition in
one transaction: two processes moving one deal never lose a transition, and its history is in
the order the transitions happened.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage_buyer_agent import _ops
from ad_buyer_storage_buyer_agent._backing import Backing
from ad_buyer_storage_buyer_agent._host import host
from ad_buyer_storage_buyer_agent._rows import now_iso
from ad_buyer_storage_buyer_agent._select import Range, sqlite_order
from ad_buyer_storage_buyer_agent.booking_record_store import BookingRecordStore
from ad_buyer_storage_buyer_agent.creative_asset_store import CreativeAssetStore
from ad_buyer_storage_buyer_agent.deal_activation_store import DealActivationStore
from ad_buyer_storage_buyer_agent.deal_event_store import DealEventStore
from ad_buyer_storage_buyer_agent.deal_template_store import DealTemplateStore
from ad_buyer_storage_buyer_agent.job_store import JobStore
from ad_buyer_storage_buyer_agent.negotiation_store import NegotiationStore
from ad_buyer_storage_buyer_agent.performance_cache_store import PerformanceCacheStore
from ad_buyer_storage_buyer_agent.portfolio_metadata_store import PortfolioMetadataStore
from ad_buyer_storage_buyer_agent.schema import TABLES
from ad_buyer_storage_buyer_agent.status_transition_store import StatusTransitionStore
from ad_buyer_storage_buyer_agent.supply_path_template_store import SupplyPathTemplateStore

__all__ = ["DealStore"]

logger = logging.getLogger(__name__)

_DEALS = TABLES["deals"]
_TRANSITIONS = TABLES["status_transitions"]
#: The deals columns upstream added in schema v2 (written only when given, as upstream does).
V2_DEAL_COLUMNS: tuple[str, ...] = _DEALS.names[16:]


def _allowed(deal_id: str, old_status: str, new_status: str) -> bool:
    """The host's ``DealStateMachine`` verdict; True when either status is not one it knows."""
    found = host("models.state_machine", "BuyerDealStatus", "DealStateMachine")
    if found is None:
        return True
    status_type, machine_type = found
    try:
        old, new = status_type(old_status), status_type(new_status)
        machine = machine_type(deal_id, initial_status=old)
        if not machine.can_transition(new):
            logger.warning("Rejected transition for deal %s: %s -> %s", deal_id, old_status, new_status)
            return False
    except ValueError:
        pass  # a status the machine does not know: unchecked, for backward compatibility
    return True


class DealStore(_ops.Connected):
    """Deals, negotiations, bookings, jobs, events, transitions... on any ad-buyer-storage backend.

    Args:
        database_url: ``sqlite:///./ad_buyer.db``, ``sqlite:///:memory:`` (a private store),
            ``postgresql://...``, ``redis://...`` or a backend name (``hybrid``).
    """

    _V2_DEAL_COLUMNS = V2_DEAL_COLUMNS

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url)
        self._wire_stores()

    # -- lifecycle -----------------------------------------------------------------------------
    def connect(self) -> None:
        """Open (or join) the store, then compose the sub-stores over it."""
        super().connect()
        self._wire_stores()

    def disconnect(self) -> None:
        """Release the store; the sub-stores refuse calls until ``connect()`` (a closed database)."""
        super().disconnect()
        self._wire_stores()

    def _wire_stores(self) -> None:
        """Compose the sub-stores over this instance's backing (None: not connected)."""
        conn, lock = self._conn, self._lock
        self._negotiation_store = NegotiationStore(conn, lock)
        self._booking_record_store = BookingRecordStore(conn, lock)
        self._job_store = JobStore(conn, lock)
        self._event_store = DealEventStore(conn, lock)
        self._status_store = StatusTransitionStore(conn, lock)
        self._portfolio_store = PortfolioMetadataStore(conn, lock)
        self._activation_store = DealActivationStore(conn, lock)
        self._performance_store = PerformanceCacheStore(conn, lock)
        self._creative_asset_store = CreativeAssetStore(conn, lock)
        self._deal_template_store = DealTemplateStore(conn, lock)
        self._supply_path_template_store = SupplyPathTemplateStore(conn, lock)

    # -- deals ---------------------------------------------------------------------------------
    def save_deal(
        self,
        *,
        deal_id: str | None = None,
        seller_url: str,
        product_id: str,
        product_name: str = "",
        deal_type: str = "PD",
        status: str = "draft",
        seller_deal_id: str | None = None,
        price: float | None = None,
        original_price: float | None = None,
        impressions: int | None = None,
        flight_start: str | None = None,
        flight_end: str | None = None,
        buyer_context: str | None = None,
        metadata: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
        buyer_org: str | None = None,
        buyer_id: str | None = None,
        seller_org: str | None = None,
        seller_id: str | None = None,
        seller_domain: str | None = None,
        seller_type: str | None = None,
        price_model: str | None = None,
        bid_floor_cpm: float | None = None,
        fixed_price_cpm: float | None = None,
        cpp: float | None = None,
        guaranteed_grps: float | None = None,
        currency: str | None = None,
        fee_transparency: float | None = None,
        media_type: str | None = None,
        formats: str | None = None,
        content_categories: str | None = None,
        publisher_domains: str | None = None,
        geo_targets: str | None = None,
        dayparts: str | None = None,
        programs: str | None = None,
        networks: str | None = None,
        audience_segments: str | None = None,
        estimated_volume: int | None = None,
        deprecated_at: str | None = None,
        deprecated_reason: str | None = None,
        parent_deal_id: str | None = None,
        schain_complete: int | None = None,
        schain_nodes: str | None = None,
        sellers_json_url: str | None = None,
        is_direct: int | None = None,
        hop_count: int | None = None,
        inventory_fingerprint: str | None = None,
        makegood_provisions: str | None = None,
        cancellation_window: str | None = None,
        audience_guarantee: str | None = None,
        preemption_rights: str | None = None,
        agency_of_record_status: str | None = None,
    ) -> str:
        """Insert a new deal and its first transition (``None -> status``); the deal id.

        The v2 keyword arguments (``display_name`` ... ``agency_of_record_status``, see
        ``V2_DEAL_COLUMNS``) are written only when given: one left None keeps the column's
        default (``currency``: ``USD``), as upstream's dynamic INSERT does."""
        v2 = {name: value for name, value in locals().items() if name in V2_DEAL_COLUMNS}
        if deal_id is None:
            deal_id = str(uuid.uuid4())
        now = now_iso()
        given: dict[str, Any] = {
            "id": deal_id,
            "seller_url": seller_url,
            "seller_deal_id": seller_deal_id,
            "product_id": product_id,
            "product_name": product_name,
            "deal_type": deal_type,
            "status": status,
            "price": price,
            "original_price": original_price,
            "impressions": impressions,
            "flight_start": flight_start,
            "flight_end": flight_end,
            "buyer_context": buyer_context,
            "metadata": metadata or "{}",
            "created_at": now,
            "updated_at": now,
        }
        given.update({name: value for name, value in v2.items() if value is not None})

        async def save(backing: Backing) -> None:
            async def run(tx: Transaction) -> None:
                await _DEALS.insert(tx, backing, TABLES, _DEALS.build(given))
                transition = _TRANSITIONS.build(
                    {
                        "entity_type": "deal",
                        "entity_id": deal_id,
                        "from_status": None,
                        "to_status": status,
                        "triggered_by": "system",
                        "notes": "Deal created",
                    }
                )
                await _TRANSITIONS.insert(tx, backing, TABLES, transition)

            await _ops.transact(backing, run)

        self._run(save)
        return deal_id

    def get_deal(self, deal_id: str) -> dict[str, Any] | None:
        """A deal's 55 columns, or None."""
        return self._run(lambda b: _ops.get(b, "deals", deal_id))

    def list_deals(
        self,
        *,
        status: str | None = None,
        seller_url: str | None = None,
        created_after: str | None = None,
        media_type: str | None = None,
        seller_domain: str | None = None,
        deal_type: str | None = None,
        advertiser_id: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Deals matching the filters given, newest first, at most *limit*; *advertiser_id*
        through the deals' portfolio metadata (a deal once per matching metadata row, as
        upstream's join gives it)."""
        equal = {
            name: value
            for name, value in (
                ("status", status),
                ("seller_url", seller_url),
                ("media_type", media_type),
                ("seller_domain", seller_domain),
                ("deal_type", deal_type),
            )
            if value is not None
        }
        ranges = [Range("created_at", ">", created_after)] if created_after is not None else []
        if advertiser_id is None:
            return self._run(
                lambda b: _ops.rows(
                    b,
                    "deals",
                    equal=equal,
                    ranges=ranges,
                    order_by="created_at",
                    descending=True,
                    ties_descending=True,
                    limit=limit,
                )
            )

        async def joined(backing: Backing) -> list[dict[str, Any]]:
            metadata = await _ops.rows(backing, "portfolio_metadata", equal={"advertiser_id": advertiser_id})
            ids = [m["deal_id"] for m in metadata]
            deals = await backing.store.get_many(_DEALS.pk_key(backing, [i]) for i in dict.fromkeys(ids))
            matching = _ops.equal_filters(_DEALS, equal)
            found = []
            for deal_id in ids:
                row = deals.get(_DEALS.pk_key(backing, [deal_id]))
                if not isinstance(row, dict) or any(row.get(k) != v for k, v in matching.items()):
                    continue
                if created_after is not None and not sqlite_order(row.get("created_at")) > sqlite_order(created_after):
                    continue
                found.append(row)
            found.sort(key=lambda r: sqlite_order(r.get("created_at")), reverse=True)
            return [_DEALS.public(r) for r in (found if limit < 0 else found[:limit])]

        return self._run(joined)

    def update_deal_status(
        self, deal_id: str, new_status: str, *, triggered_by: str = "system", notes: str = ""
    ) -> bool:
        """Move a deal to *new_status* and log the transition, in one transaction; False if
        the deal does not exist or the host's state machine rejects the move."""

        async def move(backing: Backing) -> bool:
            key = _DEALS.pk_key(backing, [deal_id])

            async def run(tx: Transaction) -> bool:
                row = await tx.get(key)
                if not isinstance(row, dict):
                    return False
                old_status = row["status"]
                if not _allowed(deal_id, old_status, new_status):
                    return False
                tx.set(key, _DEALS.changed(row, {"status": new_status, "updated_at": now_iso()}))
                transition = _TRANSITIONS.build(
                    {
                        "entity_type": "deal",
                        "entity_id": deal_id,
                        "from_status": old_status,
                        "to_status": new_status,
                        "triggered_by": triggered_by,
                        "notes": notes,
                    }
                )
                await _TRANSITIONS.insert(tx, backing, TABLES, transition)
                return True

            return await _ops.transact(backing, run)

        return self._run(move)

    # -- delegated aggregates (upstream's public API, forwarded verbatim) -----------------------
    def save_negotiation_round(self, *args: Any, **kwargs: Any) -> int:
        return self._negotiation_store.save_negotiation_round(*args, **kwargs)

    def get_negotiation_history(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self._negotiation_store.get_negotiation_history(*args, **kwargs)

    def save_booking_record(self, *args: Any, **kwargs: Any) -> int:
        return self._booking_record_store.save_booking_record(*args, **kwargs)

    def get_booking_records(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self._booking_record_store.get_booking_records(*args, **kwargs)

    def save_job(self, *args: Any, **kwargs: Any) -> str:
        return self._job_store.save_job(*args, **kwargs)

    def get_job(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return self._job_store.get_job(*args, **kwargs)

    def list_jobs(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self._job_store.list_jobs(*args, **kwargs)

    def save_event(self, *args: Any, **kwargs: Any) -> str:
        return self._event_store.save_event(*args, **kwargs)

    def get_event(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return self._event_store.get_event(*args, **kwargs)

    def list_events(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self._event_store.list_events(*args, **kwargs)

    def record_status_transition(self, *args: Any, **kwargs: Any) -> int:
        return self._status_store.record_status_transition(*args, **kwargs)

    def get_status_history(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self._status_store.get_status_history(*args, **kwargs)

    def save_portfolio_metadata(self, *args: Any, **kwargs: Any) -> int:
        return self._portfolio_store.save_portfolio_metadata(*args, **kwargs)

    def get_portfolio_metadata(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return self._portfolio_store.get_portfolio_metadata(*args, **kwargs)

    def update_portfolio_metadata(self, *args: Any, **kwargs: Any) -> bool:
        return self._portfolio_store.update_portfolio_metadata(*args, **kwargs)

    def delete_portfolio_metadata(self, *args: Any, **kwargs: Any) -> bool:
        return self._portfolio_store.delete_portfolio_metadata(*args, **kwargs)

    def save_deal_activation(self, *args: Any, **kwargs: Any) -> int:
        return self._activation_store.save_deal_activation(*args, **kwargs)

    def get_deal_activations(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self._activation_store.get_deal_activations(*args, **kwargs)

    def update_deal_activation(self, *args: Any, **kwargs: Any) -> bool:
        return self._activation_store.update_deal_activation(*args, **kwargs)

    def delete_deal_activation(self, *args: Any, **kwargs: Any) -> bool:
        return self._activation_store.delete_deal_activation(*args, **kwargs)

    def save_performance_cache(self, *args: Any, **kwargs: Any) -> int:
        return self._performance_store.save_performance_cache(*args, **kwargs)

    def get_performance_cache(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return self._performance_store.get_performance_cache(*args, **kwargs)

    def update_performance_cache(self, *args: Any, **kwargs: Any) -> bool:
        return self._performance_store.update_performance_cache(*args, **kwargs)

    def delete_performance_cache(self, *args: Any, **kwargs: Any) -> bool:
        return self._performance_store.delete_performance_cache(*args, **kwargs)

    def save_creative_asset(self, *args: Any, **kwargs: Any) -> str:
        return self._creative_asset_store.save_creative_asset(*args, **kwargs)

    def get_creative_asset(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return self._creative_asset_store.get_creative_asset(*args, **kwargs)

    def list_creative_assets(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self._creative_asset_store.list_creative_assets(*args, **kwargs)

    def update_creative_asset(self, *args: Any, **kwargs: Any) -> bool:
        return self._creative_asset_store.update_creative_asset(*args, **kwargs)

    def delete_creative_asset(self, *args: Any, **kwargs: Any) -> bool:
        return self._creative_asset_store.delete_creative_asset(*args, **kwargs)

    def save_deal_template(self, *args: Any, **kwargs: Any) -> str:
        return self._deal_template_store.save_deal_template(*args, **kwargs)

    def get_deal_template(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return self._deal_template_store.get_deal_template(*args, **kwargs)

    def list_deal_templates(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self._deal_template_store.list_deal_templates(*args, **kwargs)

    def update_deal_template(self, *args: Any, **kwargs: Any) -> bool:
        return self._deal_template_store.update_deal_template(*args, **kwargs)

    def delete_deal_template(self, *args: Any, **kwargs: Any) -> bool:
        return self._deal_template_store.delete_deal_template(*args, **kwargs)

    def save_supply_path_template(self, *args: Any, **kwargs: Any) -> str:
        return self._supply_path_template_store.save_supply_path_template(*args, **kwargs)

    def get_supply_path_template(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return self._supply_path_template_store.get_supply_path_template(*args, **kwargs)

    def list_supply_path_templates(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self._supply_path_template_store.list_supply_path_templates(*args, **kwargs)

    def update_supply_path_template(self, *args: Any, **kwargs: Any) -> bool:
        return self._supply_path_template_store.update_supply_path_template(*args, **kwargs)

    def delete_supply_path_template(self, *args: Any, **kwargs: Any) -> bool:
        return self._supply_path_template_store.delete_supply_path_template(*args, **kwargs)
