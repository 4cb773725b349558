"""The facade's stores as upstream's callers use them, on every place a store can live."""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
import threading
import time
from typing import Any, TypeVar

import pytest

import ad_buyer_storage_buyer_agent as facade
from ad_buyer_storage.errors import StorageError
from ad_buyer_storage_buyer_agent import DealStore, _backing, _runtime, get_deal_store
from ad_buyer_storage_buyer_agent.campaign_store import CampaignStore
from ad_buyer_storage_buyer_agent.deal_store import V2_DEAL_COLUMNS
from ad_buyer_storage_buyer_agent.order_store import OrderStore

T = TypeVar("T")
MICROS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def deals(place):
    store = DealStore(place.url)
    store.connect()
    yield store
    store.disconnect()


def present(value: T | None) -> T:
    assert value is not None
    return value


def _deal(store: DealStore, **fields) -> str:
    return store.save_deal(seller_url="https://seller.example", product_id="ctv-1", **fields)


def test_a_deal_row_has_upstreams_55_columns_types_and_defaults(deals):
    deal_id = _deal(deals, price=12, impressions=1000.0, display_name="Launch", hop_count="2")
    row = deals.get_deal(deal_id)
    assert len(row) == 55
    assert list(row)[:3] == ["id", "seller_url", "seller_deal_id"]
    assert list(row)[16:] == list(V2_DEAL_COLUMNS)
    assert row["price"] == 12.0
    assert type(row["price"]) is float
    assert row["impressions"] == 1000
    assert type(row["impressions"]) is int
    assert row["hop_count"] == 2  # numeric text in an INTEGER column
    assert row["currency"] == "USD"
    assert row["metadata"] == "{}"
    assert row["product_name"] == ""
    assert row["deal_type"] == "PD"
    assert row["status"] == "draft"
    assert row["original_price"] is None
    assert MICROS.fullmatch(row["created_at"])
    assert row["created_at"] == row["updated_at"]
    (created,) = deals.get_status_history("deal", deal_id)
    assert (created["from_status"], created["to_status"], created["notes"]) == (None, "draft", "Deal created")
    assert MILLIS.fullmatch(created["created_at"])  # SQLite's default, as upstream's table gives it


def test_constraint_errors_are_sqlite3_integrity_errors_and_ours(deals):
    deal_id = _deal(deals, deal_id="d-1")
    with pytest.raises(sqlite3.IntegrityError, match=r"UNIQUE constraint failed: deals\.id"):
        _deal(deals, deal_id="d-1")
    round_args = {"proposal_id": "p", "round_number": 1, "buyer_price": 10, "seller_price": 12, "action": "counter"}
    assert deals.save_negotiation_round(deal_id=deal_id, **round_args) >= 1
    with pytest.raises(StorageError, match=r"negotiation_rounds\.deal_id, negotiation_rounds\.round_number"):
        deals.save_negotiation_round(deal_id=deal_id, **round_args)
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        deals.save_negotiation_round(deal_id="no-such-deal", **round_args)
    # SQLite's UNIQUE lets NULLs repeat: two bookings without a line id are fine, two with one are not.
    deals.save_booking_record(deal_id=deal_id)
    deals.save_booking_record(deal_id=deal_id)
    deals.save_booking_record(deal_id=deal_id, line_id="l1")
    with pytest.raises(sqlite3.IntegrityError):
        deals.save_booking_record(deal_id=deal_id, line_id="l1")
    assert [r["line_id"] for r in deals.get_booking_records(deal_id)] == [None, None, "l1"]
    with pytest.raises(sqlite3.ProgrammingError, match="not supported"):
        _deal(deals, buyer_context={"a": 1})  # sqlite3 cannot bind a dict either
    assert [h["to_status"] for h in deals.get_status_history("deal", deal_id)] == ["draft"]


def test_status_moves_follow_the_hosts_machine_and_log_in_order(deals, host):
    deal_id = _deal(deals)
    assert deals.update_deal_status(deal_id, "booked") is False  # draft -> booked: refused
    assert deals.update_deal_status(deal_id, "negotiating", triggered_by="agent", notes="n")
    assert deals.update_deal_status(deal_id, "booked")
    assert deals.update_deal_status(deal_id, "legacy-status")  # unknown to the machine: unchecked
    assert deals.update_deal_status("missing", "negotiating") is False
    history = deals.get_status_history("deal", deal_id)
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "draft"),
        ("draft", "negotiating"),
        ("negotiating", "booked"),
        ("booked", "legacy-status"),
    ]
    assert [h["id"] for h in history] == sorted(h["id"] for h in history)
    assert history[1]["triggered_by"] == "agent"
    assert history[1]["notes"] == "n"
    assert deals.get_deal(deal_id)["status"] == "legacy-status"


def test_lists_are_newest_first_filtered_limited_and_bounded(deals):
    ids = []
    for i in range(6):
        ids.append(_deal(deals, status="active" if i % 2 else "draft", media_type="CTV"))
        time.sleep(0.002)
    newest = deals.list_deals()
    assert [d["id"] for d in newest] == ids[::-1]
    assert [d["id"] for d in deals.list_deals(status="active", limit=2)] == [ids[5], ids[3]]
    after = deals.get_deal(ids[2])["created_at"]
    assert [d["id"] for d in deals.list_deals(created_after=after)] == ids[:2:-1]
    assert deals.list_deals(media_type="DOOH") == []
    assert len(deals.list_deals(limit=-1)) == 6  # SQLite's LIMIT -1: no limit
    deals.save_portfolio_metadata(deal_id=ids[1], advertiser_id="adv-1")
    deals.save_portfolio_metadata(deal_id=ids[4], advertiser_id="adv-1")
    assert [d["id"] for d in deals.list_deals(advertiser_id="adv-1")] == [ids[4], ids[1]]
    assert [d["id"] for d in deals.list_deals(advertiser_id="adv-1", status="active")] == [ids[1]]


def test_jobs_upsert_keeps_created_at_and_decodes_json(deals):
    deals.save_job(job_id="j1", brief='{"name": "x"}', auto_approve=True)
    first = deals.get_job("j1")
    time.sleep(0.002)
    deals.save_job(job_id="j1", status="done", progress=1, booked_lines='["l1"]')
    job = deals.get_job("j1")
    assert job["created_at"] == first["created_at"]
    assert job["updated_at"] > first["updated_at"]
    assert job["brief"] == {}
    assert job["booked_lines"] == ["l1"]
    assert job["progress"] == 1.0
    assert job["auto_approve"] is False
    assert first["auto_approve"] is True
    assert [j["id"] for j in deals.list_jobs(status="done")] == ["j1"]
    assert deals.get_job("nope") is None


def test_performance_cache_updates_the_latest_entry_only(deals):
    deal_id = _deal(deals)
    first = deals.save_performance_cache(deal_id=deal_id, fill_rate=0.1)
    second = deals.save_performance_cache(deal_id=deal_id, fill_rate=0.2)
    assert second > first
    assert deals.update_performance_cache(deal_id, fill_rate=0.9, bogus=1)
    assert deals.get_performance_cache(deal_id)["fill_rate"] == 0.9
    assert deals.update_performance_cache(deal_id, bogus=1) is False
    assert deals.delete_performance_cache(deal_id)
    assert deals.get_performance_cache(deal_id) is None
    activation = deals.save_deal_activation(deal_id=deal_id, platform="TTD")
    assert deals.update_deal_activation(activation, activation_status="ACTIVE")
    assert deals.get_deal_activations(deal_id)[0]["activation_status"] == "ACTIVE"
    assert deals.delete_deal_activation(activation)
    assert not deals.delete_deal_activation(activation)


def test_campaign_transitions_check_the_hosts_machine_and_emit_events(place, host):
    store = CampaignStore(place.url)
    store.connect()
    try:
        brief = {
            "advertiser_id": "adv",
            "campaign_name": "Launch",
            "total_budget": 1000,
            "flight_start": "2026-01-01",
            "flight_end": "2026-02-01",
        }
        campaign_id = store.create_campaign(brief)
        assert present(store.get_campaign(campaign_id))["total_budget"] == 1000.0
        with pytest.raises(InvalidTransitionOf(host)):
            store.activate_campaign(campaign_id)  # draft -> active: refused, nothing written
        store.start_planning(campaign_id)
        store.start_booking(campaign_id)
        with pytest.raises(KeyError):
            store.start_planning("no-such-campaign")
        events = store.get_campaign_events(campaign_id)
        assert [(e["event_type"], e["from_status"], e["to_status"]) for e in events] == [
            ("campaign.created", None, "draft"),
            ("campaign.plan_generated", "draft", "planning"),
            ("campaign.booking_started", "planning", "booking"),
        ]
        assert present(store.get_campaign(campaign_id))["status"] == "booking"
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            store.save_approval_request(
                approval_request_id="a1", campaign_id="nope", stage="s", status="pending", requested_at="t"
            )
    finally:
        store.disconnect()


def InvalidTransitionOf(host: Any) -> type[Exception]:
    error: type[Exception] = host.InvalidTransitionError
    return error


def test_orders_upsert_and_list_newest_first_ties_in_insertion_order(place):
    store = OrderStore(place.url)
    store.connect()
    try:
        for i in range(5):
            store.set_order(f"o{i}", {"status": "pending", "n": i})
        store.set_order("o1", {"status": "booked", "n": 1})
        listed = [o["n"] for o in store.list_orders()]
        assert sorted(listed) == [0, 1, 2, 3, 4]
        assert [o["n"] for o in store.list_orders({"status": "booked"})] == [1]
        assert store.get_order("o1") == {"status": "booked", "n": 1}
        assert store.get_order("x") is None
    finally:
        store.disconnect()


def test_each_memory_instance_is_private_and_dropped_at_disconnect(place):
    if place.url != "sqlite:///:memory:":
        pytest.skip("file URLs are shared by design (see the next test)")
    a, b = DealStore(place.url), DealStore(place.url)
    a.connect()
    b.connect()
    deal_id = _deal(a)
    assert b.get_deal(deal_id) is None
    assert a.get_deal(deal_id) is not None
    backing = present(a._conn)
    a.disconnect()
    if "AD_BUYER_STORAGE_COMPAT_URL" in place.env:  # the namespace on the shared store is gone
        assert asyncio.run_coroutine_threadsafe(backing.store.count(backing.prefix + "*"), _loop()).result() == 0
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        a.get_deal(deal_id)
    b.disconnect()


def _loop() -> asyncio.AbstractEventLoop:
    return _runtime.loop()


def test_instances_on_one_file_url_share_rows_and_survive_reconnect(tmp_path, monkeypatch, place):
    if place.name not in ("sqlite-file", "compat-sqlite"):
        pytest.skip("one file-URL case per store kind is enough")
    url = f"sqlite:///{tmp_path / 'agent-shared.db'}"
    a, b = DealStore(url), CampaignStore(url)
    a.connect()
    b.connect()
    deal_id = _deal(a)
    a.disconnect()
    c = DealStore(url)
    c.connect()
    assert present(c.get_deal(deal_id))["id"] == deal_id
    c.disconnect()
    b.disconnect()


def test_calls_work_from_inside_a_running_event_loop(deals):
    async def handler() -> list[str]:  # a FastAPI handler or an async test calls the sync stores
        deal_id = _deal(deals)
        return [d["id"] for d in deals.list_deals()] + [deal_id]

    listed = asyncio.run(handler())
    assert listed[0] == listed[-1]


def test_no_transition_is_lost_when_threads_of_two_instances_race(place, tmp_path, host):
    url = place.url if place.url != "sqlite:///:memory:" or place.env else f"sqlite:///{tmp_path / 'race.db'}"
    if place.url == "sqlite:///:memory:" and place.env:
        url = f"sqlite:///{tmp_path / 'race-ns.db'}"  # one namespace both instances share
    one, two = DealStore(url), DealStore(url)
    one.connect()
    two.connect()
    deal_id = _deal(one)
    moves = {"draft": "negotiating", "negotiating": "draft"}
    done = []

    def worker(store: DealStore) -> None:
        for _ in range(15):
            current = present(store.get_deal(deal_id))["status"]
            if store.update_deal_status(deal_id, moves[current]):
                done.append(1)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (one, two, one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = two.get_status_history("deal", deal_id)
    assert len(history) == 1 + len(done)  # every successful move logged once, none lost
    for before, after in itertools.pairwise(history):
        assert after["from_status"] == before["to_status"]  # a chain: in order, nothing overwritten
    assert present(one.get_deal(deal_id))["status"] == history[-1]["to_status"]
    one.disconnect()
    two.disconnect()


def test_get_deal_store_is_a_process_singleton(monkeypatch):
    monkeypatch.setattr(facade, "_store_instance", None)
    first = get_deal_store("sqlite:///:memory:")
    try:
        assert get_deal_store("sqlite:///other.db") is first
    finally:
        first.disconnect()


def test_instances_connecting_at_once_share_one_store(place):
    if "AD_BUYER_STORAGE_COMPAT_URL" not in place.env:
        pytest.skip("the shared store is the compat URL's")
    stores = [DealStore(place.url) for _ in range(8)]
    barrier = threading.Barrier(len(stores))

    def connect(store: DealStore) -> None:
        barrier.wait()
        store.connect()

    threads = [threading.Thread(target=connect, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(present(s._conn).store) for s in stores}) == 1
    for s in stores:
        s.disconnect()
    assert place.env["AD_BUYER_STORAGE_COMPAT_URL"] not in _backing._shared  # closed by its last user
