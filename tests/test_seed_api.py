"""The seed's 34 domain methods keep their names and signatures; the factory keeps its names."""

from __future__ import annotations

import inspect

import ad_buyer_storage
from ad_buyer_storage import Storage

SEED_METHODS = {
    "get_deal": ["deal_id"],
    "set_deal": ["deal_id", "deal_data"],
    "delete_deal": ["deal_id"],
    "list_deals": ["filters"],
    "get_campaign": ["campaign_id"],
    "set_campaign": ["campaign_id", "data"],
    "list_campaigns": ["filters"],
    "get_order": ["order_id"],
    "set_order": ["order_id", "data"],
    "list_orders": ["filters"],
    "get_session": ["session_id"],
    "set_session": ["session_id", "data", "ttl"],
    "delete_session": ["session_id"],
    "list_sessions": [],
    "get_conversion": ["event_id"],
    "set_conversion": ["event_id", "data"],
    "list_conversions": ["filters"],
    "get_optimization_decision": ["decision_id"],
    "set_optimization_decision": ["decision_id", "data"],
    "list_optimization_decisions": ["filters"],
    "get_experiment": ["experiment_id"],
    "set_experiment": ["experiment_id", "data"],
    "list_experiments": ["filters"],
    "get_supply_path_score": ["supply_path_hash"],
    "set_supply_path_score": ["supply_path_hash", "data"],
    "list_supply_path_scores": [],
    "get_quote": ["quote_id"],
    "set_quote": ["quote_id", "data", "ttl"],
    "get_negotiation": ["proposal_id"],
    "set_negotiation": ["proposal_id", "data"],
    "get_model_artifact": ["model_name"],
    "set_model_artifact": ["model_name", "data"],
    "get_pacing_snapshot": ["snapshot_id"],
    "set_pacing_snapshot": ["snapshot_id", "data"],
}


def test_all_34_seed_methods_exist_with_compatible_signatures() -> None:
    assert len(SEED_METHODS) == 34
    for name, params in SEED_METHODS.items():
        method = getattr(Storage, name)
        assert inspect.iscoroutinefunction(method), name
        actual = list(inspect.signature(method).parameters)[1:]
        assert actual[: len(params)] == params, (name, actual)
        for extra in actual[len(params) :]:  # anything we added is optional
            assert inspect.signature(method).parameters[extra].default is not inspect.Parameter.empty, (name, extra)
    assert inspect.signature(Storage.set_quote).parameters["ttl"].default == 86400


def test_delete_and_list_exist_for_all_twelve_entities() -> None:
    plural = {
        "deal": "deals",
        "campaign": "campaigns",
        "order": "orders",
        "session": "sessions",
        "conversion": "conversions",
        "optimization_decision": "optimization_decisions",
        "experiment": "experiments",
        "supply_path_score": "supply_path_scores",
        "quote": "quotes",
        "negotiation": "negotiations",
        "model_artifact": "model_artifacts",
        "pacing_snapshot": "pacing_snapshots",
    }
    for single, many in plural.items():
        assert inspect.iscoroutinefunction(getattr(Storage, f"delete_{single}"))
        params = inspect.signature(getattr(Storage, f"list_{many}")).parameters
        assert "filters" in params
        assert "limit" in params


def test_factory_keeps_the_seed_names() -> None:
    for name in ("get_storage", "get_storage_backend", "close_storage"):
        assert callable(getattr(ad_buyer_storage, name))
    assert list(inspect.signature(ad_buyer_storage.get_storage_backend).parameters)[:3] == [
        "name",
        "database_url",
        "redis_url",
    ]
    assert inspect.iscoroutinefunction(Storage.connect)
    assert inspect.iscoroutinefunction(Storage.disconnect)
