"""Buyer-agent v2.4.2's ``ad_buyer.storage`` on ad-buyer-storage: same modules, same API.

Each submodule has the name of one of upstream's (``deal_store``, ``campaign_store``,
``pacing_store``, ``order_store``, ``adserver_store``, the sub-stores, ``audience_audit_log``,
``health``, ``schema``) and exports the same public classes and functions, with the same
constructors, method signatures, return shapes and errors (ours are also the ``sqlite3``
classes: :mod:`.errors`). This package exports what upstream's ``ad_buyer.storage`` does.
"""

from __future__ import annotations

from ad_buyer_storage_buyer_agent.booking_record_store import BookingRecordStore
from ad_buyer_storage_buyer_agent.creative_asset_store import CreativeAssetStore
from ad_buyer_storage_buyer_agent.deal_activation_store import DealActivationStore
from ad_buyer_storage_buyer_agent.deal_event_store import DealEventStore
from ad_buyer_storage_buyer_agent.deal_store import DealStore
from ad_buyer_storage_buyer_agent.deal_template_store import DealTemplateStore
from ad_buyer_storage_buyer_agent.job_store import JobStore
from ad_buyer_storage_buyer_agent.negotiation_store import NegotiationStore
from ad_buyer_storage_buyer_agent.performance_cache_store import PerformanceCacheStore
from ad_buyer_storage_buyer_agent.portfolio_metadata_store import PortfolioMetadataStore
from ad_buyer_storage_buyer_agent.schema import SCHEMA_VERSION, create_tables, initialize_schema
from ad_buyer_storage_buyer_agent.status_transition_store import StatusTransitionStore
from ad_buyer_storage_buyer_agent.supply_path_template_store import SupplyPathTemplateStore

_store_instance: DealStore | None = None


def get_deal_store(database_url: str = "sqlite:///./ad_buyer.db") -> DealStore:
    """The process's ``DealStore``, created and connected on the first call (later calls
    ignore *database_url*, as upstream's do)."""
    global _store_instance
    if _store_instance is None:
        store = DealStore(database_url)
        store.connect()
        _store_instance = store
    return _store_instance


__all__ = [
    "DealStore",
    "get_deal_store",
    "SCHEMA_VERSION",
    "create_tables",
    "initialize_schema",
    "BookingRecordStore",
    "CreativeAssetStore",
    "DealActivationStore",
    "DealEventStore",
    "DealTemplateStore",
    "JobStore",
    "NegotiationStore",
    "PerformanceCacheStore",
    "PortfolioMetadataStore",
    "StatusTransitionStore",
    "SupplyPathTemplateStore",
]
