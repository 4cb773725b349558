"""The stores built on the host's models (with stand-ins), outages as sqlite3 errors, the
fail-open audit log, and the one call the facade must refuse."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import types
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, Field

from ad_buyer_storage.errors import InvalidValueError, UnavailableError
from ad_buyer_storage_buyer_agent import DealStore, _runtime, audience_audit_log
from ad_buyer_storage_buyer_agent.errors import translate
from ad_buyer_storage_buyer_agent.health import database_accessible, probe_database
from ad_buyer_storage_buyer_agent.pacing_store import PacingStore

UNREACHABLE = "postgresql://postgres:s3cret@127.0.0.1:1/test"  # nothing listens on port 1


class ChannelSnapshot(BaseModel):
    channel: str
    spend: float = 0.0


class DealSnapshot(BaseModel):
    deal_id: str


class PacingRecommendation(BaseModel):
    action: str


class PacingSnapshot(BaseModel):
    snapshot_id: str
    campaign_id: str
    timestamp: datetime
    total_budget: float
    total_spend: float
    pacing_pct: float
    expected_spend: float
    deviation_pct: float
    channel_snapshots: list[ChannelSnapshot] = Field(default_factory=list)
    deal_snapshots: list[DealSnapshot] = Field(default_factory=list)
    recommendations: list[PacingRecommendation] = Field(default_factory=list)


@pytest.fixture
def campaign_models(monkeypatch: pytest.MonkeyPatch) -> None:
    models = types.ModuleType("ad_buyer.models.campaign")
    for cls in (ChannelSnapshot, DealSnapshot, PacingRecommendation, PacingSnapshot):
        setattr(models, cls.__name__, cls)
    package = types.ModuleType("ad_buyer")
    package.__path__ = []
    parent = types.ModuleType("ad_buyer.models")
    parent.__path__ = []
    monkeypatch.setitem(sys.modules, "ad_buyer", package)
    monkeypatch.setitem(sys.modules, "ad_buyer.models", parent)
    monkeypatch.setitem(sys.modules, "ad_buyer.models.campaign", models)


def _snapshot(n: int, at: datetime, campaign: str = "c1") -> PacingSnapshot:
    return PacingSnapshot(
        snapshot_id=f"s{n}",
        campaign_id=campaign,
        timestamp=at,
        total_budget=1000,
        total_spend=10 * n,
        pacing_pct=1.0,
        expected_spend=10 * n,
        deviation_pct=0.0,
        channel_snapshots=[ChannelSnapshot(channel="CTV", spend=n)],
        recommendations=[PacingRecommendation(action="hold")],
    )


def test_pacing_windows_are_half_open_and_chronological(place, campaign_models) -> None:
    store = PacingStore(place.url)
    store.connect()
    try:
        start = datetime(2026, 3, 1, tzinfo=UTC)
        for n in (3, 1, 2, 0):  # written out of time order
            store.save_pacing_snapshot(_snapshot(n, start + timedelta(hours=n)))
        store.save_pacing_snapshot(_snapshot(9, start, campaign="other"))
        window = store.list_pacing_snapshots("c1", start + timedelta(hours=1), start + timedelta(hours=3))
        assert [s.snapshot_id for s in window] == ["s1", "s2"]  # [start, end)
        assert [s.snapshot_id for s in store.list_pacing_snapshots("c1")] == ["s0", "s1", "s2", "s3"]
        latest = store.get_latest_pacing_snapshot("c1")
        assert latest is not None
        assert latest.snapshot_id == "s0"  # the last written, whatever its timestamp
        got = store.get_pacing_snapshot("s2")
        assert got is not None
        assert got.channel_snapshots == [ChannelSnapshot(channel="CTV", spend=2.0)]
        assert got.timestamp == start + timedelta(hours=2)
        with pytest.raises(sqlite3.IntegrityError):
            store.save_pacing_snapshot(_snapshot(2, start))
    finally:
        store.disconnect()


def test_an_unreachable_store_is_an_operational_error_and_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AD_BUYER_STORAGE_COMPAT_URL", UNREACHABLE)
    monkeypatch.setenv("STORAGE_CONNECT_TIMEOUT", "2")
    store = DealStore("sqlite:///:memory:")
    with pytest.raises(sqlite3.OperationalError) as caught:
        store.connect()
    assert isinstance(caught.value, UnavailableError)
    assert "s3cret" not in str(caught.value)  # no password in the message
    monkeypatch.delenv("AD_BUYER_STORAGE_COMPAT_URL")
    ok, message = probe_database(UNREACHABLE)
    assert ok is False
    assert message
    assert "s3cret" not in message
    assert database_accessible("sqlite:///:memory:") is True


def test_translation_keeps_our_class_and_adds_sqlite3s() -> None:
    original = InvalidValueError("too big")
    dual = translate(original)
    assert isinstance(dual, InvalidValueError)
    assert isinstance(dual, sqlite3.ProgrammingError)
    assert str(dual) == "too big"
    assert translate(KeyError("x")).__class__ is KeyError  # not ours: unchanged


def test_the_audit_log_is_fail_open(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("AD_BUYER_STORAGE_COMPAT_URL", raising=False)
    audience_audit_log.configure("sqlite:///:memory:")
    try:
        audience_audit_log.log_event("plan-1", audience_audit_log.EVENT_DEGRADATION, {"dropped": ["a"]})
        audience_audit_log.log_event("plan-1", "new_kind", {"n": 1})
        audience_audit_log.log_event("", audience_audit_log.EVENT_DEGRADATION)
        events = audience_audit_log.get_events("plan-1")
        assert [(e["event_type"], e["payload"]) for e in events] == [
            ("degradation", {"dropped": ["a"]}),
            ("new_kind", {"n": 1}),
        ]
        monkeypatch.setenv("STORAGE_CONNECT_TIMEOUT", "2")
        audience_audit_log.configure(UNREACHABLE)
        audience_audit_log.log_event("plan-2", audience_audit_log.EVENT_DEGRADATION)  # never raises
        assert audience_audit_log.get_events("plan-2") == []
        assert "failed" in caplog.text
    finally:
        audience_audit_log.configure("sqlite:///:memory:")


def test_a_call_from_the_facades_own_loop_thread_is_refused() -> None:
    store = DealStore("sqlite:///:memory:")
    store.connect()
    try:

        async def inside() -> None:
            store.get_deal("x")  # would wait for its own thread forever

        with pytest.raises(sqlite3.ProgrammingError, match="own event-loop thread"):
            asyncio.run_coroutine_threadsafe(inside(), _runtime.loop()).result(10)
    finally:
        store.disconnect()
