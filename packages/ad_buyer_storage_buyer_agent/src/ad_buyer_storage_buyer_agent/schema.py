"""Upstream's tables, as data: what the facade's rows hold and which constraints it enforces.

``SCHEMA_VERSION`` is upstream's (5). The columns, their types (SQLite affinity), NOT NULL
flags and defaults, the primary keys, UNIQUE and FOREIGN KEY constraints are those of
buyer-agent v2.4.2's ``ad_buyer.storage.schema`` (and of the tables ``CampaignStore``,
``OrderStore``, ``PacingStore`` and ``AdServerStore`` create themselves), written here in a
compact form of our own; the rows the facade returns have exactly these columns, in this order.

The SQLite DDL and migration functions (``create_tables``, ``initialize_schema``,
``run_migrations``, ``get_schema_version``...) work on a raw ``sqlite3`` connection: there is
no such thing behind the facade. They exist with upstream's signatures and raise
:class:`~ad_buyer_storage_buyer_agent.errors.NotSupportedError` (also
``sqlite3.NotSupportedError``); the README lists the upstream tests that call them among the
documented exceptions.
"""

from __future__ import annotations

from typing import Any

from ad_buyer_storage_buyer_agent._rows import Table, table
from ad_buyer_storage_buyer_agent.errors import NotSupportedError

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "create_tables",
    "get_schema_version",
    "initialize_schema",
    "migrate_v1_to_v2",
    "migrate_v2_to_v4",
    "migrate_v4_to_v5",
    "run_migrations",
    "set_schema_version",
]

#: Upstream's schema version at v2.4.2 (v3 was reserved and skipped).
SCHEMA_VERSION = 5

_T = "TEXT"
_DEALS_V2 = (
    "display_name; description; buyer_org; buyer_id; seller_org; seller_id; seller_domain; seller_type; "
    "price_model; bid_floor_cpm REAL; fixed_price_cpm REAL; cpp REAL; guaranteed_grps REAL; "
    "currency TEXT ='USD'; fee_transparency REAL; media_type; formats; content_categories; publisher_domains; "
    "geo_targets; dayparts; programs; networks; audience_segments; estimated_volume INTEGER; deprecated_at; "
    "deprecated_reason; parent_deal_id; schain_complete INTEGER; schain_nodes; sellers_json_url; "
    "is_direct INTEGER; hop_count INTEGER; inventory_fingerprint; makegood_provisions; cancellation_window; "
    "audience_guarantee; preemption_rights; agency_of_record_status"
)


def _typed(spec: str) -> str:
    """Columns written without a type are TEXT."""
    return "; ".join(p.strip() if len(p.split()) > 1 else f"{p.strip()} TEXT" for p in spec.split(";") if p.strip())


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        table(
            "deals",
            "id TEXT pk; seller_url TEXT nn; seller_deal_id TEXT; product_id TEXT nn; product_name TEXT nn=''; "
            "deal_type TEXT nn='PD'; status TEXT nn='draft'; price REAL; original_price REAL; impressions INTEGER; "
            "flight_start TEXT; flight_end TEXT; buyer_context TEXT; metadata TEXT ='{}'; created_at TEXT nn=now; "
            "updated_at TEXT nn=now; " + _typed(_DEALS_V2),
        ),
        table(
            "negotiation_rounds",
            "id INTEGER pk; deal_id TEXT nn; proposal_id TEXT nn; round_number INTEGER nn; buyer_price REAL nn; "
            "seller_price REAL nn; action TEXT nn; rationale TEXT =''; created_at TEXT nn=now",
            autoincrement=True,
            parent=("deal_id",),
            unique=(("deal_id", "round_number"),),
            references=(("deal_id", "deals"),),
        ),
        table(
            "booking_records",
            "id INTEGER pk; deal_id TEXT nn; order_id TEXT; line_id TEXT; channel TEXT nn=''; "
            "impressions INTEGER nn=0; cost REAL nn=0.0; booking_status TEXT nn='pending'; booked_at TEXT nn=now; "
            "metadata TEXT ='{}'",
            autoincrement=True,
            parent=("deal_id",),
            unique=(("deal_id", "line_id"),),
            references=(("deal_id", "deals"),),
        ),
        table(
            "jobs",
            "id TEXT pk; status TEXT nn='pending'; progress REAL nn=0.0; brief TEXT nn='{}'; "
            "auto_approve INTEGER nn=0; budget_allocs TEXT ='{}'; recommendations TEXT ='[]'; "
            "booked_lines TEXT ='[]'; errors TEXT ='[]'; created_at TEXT nn=now; updated_at TEXT nn=now",
        ),
        table(
            "events",
            "id TEXT pk; event_type TEXT nn; flow_id TEXT nn=''; flow_type TEXT nn=''; deal_id TEXT nn=''; "
            "session_id TEXT nn=''; payload TEXT ='{}'; metadata TEXT ='{}'; created_at TEXT nn=now",
        ),
        table(
            "status_transitions",
            "id INTEGER pk; entity_type TEXT nn; entity_id TEXT nn; from_status TEXT; to_status TEXT nn; "
            "triggered_by TEXT ='system'; notes TEXT =''; created_at TEXT nn=now",
            autoincrement=True,
            parent=("entity_type", "entity_id"),
        ),
        table(
            "portfolio_metadata",
            "id INTEGER pk; deal_id TEXT nn; import_source TEXT; import_date TEXT; tags TEXT; advertiser_id TEXT; "
            "agency_id TEXT",
            autoincrement=True,
            references=(("deal_id", "deals"),),
        ),
        table(
            "deal_activations",
            "id INTEGER pk; deal_id TEXT nn; platform TEXT; platform_deal_id TEXT; activation_status TEXT; "
            "last_sync_at TEXT",
            autoincrement=True,
            references=(("deal_id", "deals"),),
        ),
        table(
            "performance_cache",
            "id INTEGER pk; deal_id TEXT nn; impressions_delivered INTEGER; spend_to_date REAL; fill_rate REAL; "
            "win_rate REAL; avg_effective_cpm REAL; last_delivery_at TEXT; performance_trend TEXT; cached_at TEXT",
            autoincrement=True,
            references=(("deal_id", "deals"),),
        ),
        table(
            "campaigns",
            "campaign_id TEXT pk; advertiser_id TEXT nn; campaign_name TEXT nn; status TEXT nn='DRAFT'; "
            "total_budget REAL nn; currency TEXT nn='USD'; flight_start TEXT nn; flight_end TEXT nn; "
            "channels TEXT ='[]'; target_audience TEXT ='[]'; target_geo TEXT ='[]'; kpis TEXT ='[]'; "
            "brand_safety TEXT; approval_config TEXT; created_at TEXT nn=now; updated_at TEXT nn=now",
        ),
        table(
            "pacing_snapshots",
            "snapshot_id TEXT pk; campaign_id TEXT nn; timestamp TEXT nn; total_budget REAL nn; total_spend REAL nn; "
            "pacing_pct REAL nn; expected_spend REAL nn; deviation_pct REAL nn; channel_snapshots TEXT ='[]'; "
            "deal_snapshots TEXT ='[]'; recommendations TEXT ='[]'; created_at TEXT nn=now",
        ),
        table(
            "creative_assets",
            "asset_id TEXT pk; campaign_id TEXT nn; asset_name TEXT nn; asset_type TEXT nn; format_spec TEXT ='{}'; "
            "source_url TEXT; validation_status TEXT; validation_errors TEXT; created_at TEXT nn=now; "
            "updated_at TEXT nn=now",
        ),
        table(
            "ad_server_campaigns",
            "binding_id TEXT pk; campaign_id TEXT nn; ad_server TEXT nn; external_campaign_id TEXT; "
            "status TEXT nn='PENDING'; creative_assignments TEXT ='{}'; last_sync_at TEXT; created_at TEXT nn=now",
        ),
        table(
            "approval_requests",
            "approval_request_id TEXT pk; campaign_id TEXT nn; stage TEXT nn; status TEXT nn='pending'; "
            "requested_at TEXT nn; decided_at TEXT; reviewer TEXT; notes TEXT; context TEXT ='{}'",
            references=(("campaign_id", "campaigns"),),
        ),
        table(
            "deal_templates",
            "id TEXT pk; name TEXT nn; deal_type_pref TEXT; inventory_types TEXT; preferred_publishers TEXT; "
            "excluded_publishers TEXT; targeting_defaults TEXT; default_price REAL; max_cpm REAL; "
            "min_impressions INTEGER; default_flight_days INTEGER; supply_path_prefs TEXT; advertiser_id TEXT; "
            "agency_id TEXT; created_at TEXT nn=now; updated_at TEXT nn=now",
        ),
        table(
            "supply_path_templates",
            "id TEXT pk; name TEXT nn; scoring_weights TEXT; max_reseller_hops INTEGER; "
            "require_sellers_json INTEGER =0; preferred_ssps TEXT; blocked_ssps TEXT; preferred_curators TEXT; "
            "rules TEXT; created_at TEXT nn=now; updated_at TEXT nn=now",
        ),
        table(
            "audience_audit_log",
            "plan_id TEXT pk; event_type TEXT pk; payload_json TEXT nn; created_at TEXT pk nn=now",
            parent=("plan_id",),
        ),
        # CampaignStore creates it on connect.
        table(
            "campaign_events",
            "event_id TEXT pk; campaign_id TEXT nn; event_type TEXT nn; timestamp TEXT nn; from_status TEXT; "
            "to_status TEXT; payload TEXT ='{}'",
            parent=("campaign_id",),
            references=(("campaign_id", "campaigns"),),
        ),
        # OrderStore's own table.
        table(
            "orders",
            "key TEXT pk; data TEXT nn; status TEXT nn='pending'; created_at TEXT nn=now; updated_at TEXT nn=now",
        ),
        # AdServerStore's own table: upstream names it ad_server_campaigns too, with other columns
        # (the two stores cannot share one SQLite file); here it has a name of its own.
        table(
            "adserver_records",
            "id TEXT pk; campaign_id TEXT nn; ad_server TEXT nn; ad_server_campaign_id TEXT nn; "
            "status TEXT nn='PENDING'; bindings TEXT ='[]'; delivery TEXT; created_at TEXT nn=now; "
            "updated_at TEXT nn=now",
        ),
    )
}


def _refuse(name: str) -> NotSupportedError:
    return NotSupportedError(
        f"{name}() runs SQLite DDL on a raw sqlite3 connection; the ad-buyer-storage facade has no such "
        "connection (its stores need no schema step: see the package README's documented exceptions)"
    )


def create_tables(conn: Any) -> None:
    """Upstream's DDL on a raw connection: not available through the facade."""
    raise _refuse("create_tables")


def get_schema_version(conn: Any) -> int:
    """Upstream's version table on a raw connection: not available through the facade."""
    raise _refuse("get_schema_version")


def set_schema_version(conn: Any, version: int) -> None:
    raise _refuse("set_schema_version")


def migrate_v1_to_v2(conn: Any) -> None:
    raise _refuse("migrate_v1_to_v2")


def migrate_v2_to_v4(conn: Any) -> None:
    raise _refuse("migrate_v2_to_v4")


def migrate_v4_to_v5(conn: Any) -> None:
    raise _refuse("migrate_v4_to_v5")


def run_migrations(conn: Any) -> None:
    raise _refuse("run_migrations")


def initialize_schema(conn: Any) -> None:
    raise _refuse("initialize_schema")
