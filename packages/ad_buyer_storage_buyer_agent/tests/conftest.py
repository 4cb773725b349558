"""Fixtures for the facade's tests: where the stores live, and stand-ins for the host's models.

``place`` gives (database_url, environment) for each way a store can be placed: a private
``:memory:`` store, our SQLite on a file, and ``AD_BUYER_STORAGE_COMPAT_URL`` on memory,
SQLite, PostgreSQL (a schema of its own) and Redis (a key prefix of its own); what the shared
servers got is removed afterwards. ``host`` puts small stand-ins for the agent's
``ad_buyer.models.state_machine`` in ``sys.modules`` (the facade imports the host's at run time).
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ad_buyer_storage_buyer_agent._backing import _build_store

POSTGRES_URL = os.environ.get("AD_BUYER_STORAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("AD_BUYER_STORAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PLACES = ["memory", "sqlite-file", "compat-memory", "compat-sqlite", "compat-postgres", "compat-redis"]


class Place:
    def __init__(self, name: str, url: str, env: dict[str, str]) -> None:
        self.name, self.url, self.env = name, url, env


def _place(name: str, tmp_path: Path) -> Place:
    run = uuid.uuid4().hex[:10]
    if name == "memory":
        return Place(name, "sqlite:///:memory:", {})
    if name == "sqlite-file":
        return Place(name, f"sqlite:///{tmp_path / 'agent.db'}", {})
    if name == "compat-memory":
        return Place(name, "sqlite:///:memory:", {"AD_BUYER_STORAGE_COMPAT_URL": "memory"})
    if name == "compat-sqlite":
        return Place(name, "sqlite:///:memory:", {"AD_BUYER_STORAGE_COMPAT_URL": f"sqlite:///{tmp_path / 'shared.db'}"})
    if name == "compat-postgres":
        return Place(
            name, "sqlite:///:memory:", {"AD_BUYER_STORAGE_COMPAT_URL": POSTGRES_URL, "POSTGRES_SCHEMA": f"ba_t_{run}"}
        )
    if name == "compat-redis":
        return Place(
            name, "sqlite:///:memory:", {"AD_BUYER_STORAGE_COMPAT_URL": REDIS_URL, "REDIS_KEY_PREFIX": f"ba_t_{run}:"}
        )
    raise AssertionError(name)


async def _clean(env: dict[str, str]) -> None:
    store = _build_store(env["AD_BUYER_STORAGE_COMPAT_URL"])
    async with store:
        await store.clear()
    schema = env.get("POSTGRES_SCHEMA")
    if schema:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture(params=PLACES)
def place(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Place]:
    where = _place(request.param, tmp_path)
    monkeypatch.delenv("AD_BUYER_STORAGE_COMPAT_URL", raising=False)
    for key, value in where.env.items():
        monkeypatch.setenv(key, value)
    yield where
    if where.name in ("compat-postgres", "compat-redis"):
        asyncio.run(_clean(where.env))


# -- stand-ins for the host's state machines ----------------------------------------------------


class DealStatus(enum.StrEnum):
    DRAFT = "draft"
    NEGOTIATING = "negotiating"
    BOOKED = "booked"
    CANCELLED = "cancelled"


_DEAL_MOVES = {
    DealStatus.DRAFT: {DealStatus.NEGOTIATING, DealStatus.CANCELLED},
    DealStatus.NEGOTIATING: {DealStatus.BOOKED, DealStatus.DRAFT, DealStatus.CANCELLED},
    DealStatus.BOOKED: {DealStatus.CANCELLED},
    DealStatus.CANCELLED: set(),
}


class DealMachine:
    def __init__(self, deal_id: str, initial_status: DealStatus) -> None:
        self.status = initial_status

    def can_transition(self, to_status: DealStatus) -> bool:
        return to_status in _DEAL_MOVES[self.status]


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    PLANNING = "planning"
    BOOKING = "booking"
    READY = "ready"
    ACTIVE = "active"
    PAUSED = "paused"
    PACING_HOLD = "pacing_hold"
    COMPLETED = "completed"
    CANCELED = "canceled"


class InvalidTransition(Exception):
    pass


_CAMPAIGN_MOVES = {
    CampaignStatus.DRAFT: {CampaignStatus.PLANNING},
    CampaignStatus.PLANNING: {CampaignStatus.BOOKING, CampaignStatus.CANCELED},
    CampaignStatus.BOOKING: {CampaignStatus.READY, CampaignStatus.CANCELED},
    CampaignStatus.READY: {CampaignStatus.ACTIVE, CampaignStatus.CANCELED},
    CampaignStatus.ACTIVE: {CampaignStatus.PAUSED, CampaignStatus.COMPLETED, CampaignStatus.CANCELED},
    CampaignStatus.PAUSED: {CampaignStatus.ACTIVE, CampaignStatus.CANCELED},
}


class CampaignMachine:
    def __init__(self, order_id: str, initial_status: CampaignStatus) -> None:
        self.status = initial_status

    def transition(self, to_status: CampaignStatus) -> None:
        if to_status not in _CAMPAIGN_MOVES.get(self.status, set()):
            raise InvalidTransition(f"{self.status.value} -> {to_status.value}")
        self.status = to_status


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """``ad_buyer.models.state_machine`` as the stand-ins above."""
    machine = types.ModuleType("ad_buyer.models.state_machine")
    names: dict[str, Any] = {
        "BuyerDealStatus": DealStatus,
        "DealStateMachine": DealMachine,
        "CampaignStatus": CampaignStatus,
        "CampaignAutomationStateMachine": CampaignMachine,
        "InvalidTransitionError": InvalidTransition,
    }
    for key, value in names.items():
        setattr(machine, key, value)
    package = types.ModuleType("ad_buyer")
    package.__path__ = []
    models = types.ModuleType("ad_buyer.models")
    models.__path__ = []
    monkeypatch.setitem(sys.modules, "ad_buyer", package)
    monkeypatch.setitem(sys.modules, "ad_buyer.models", models)
    monkeypatch.setitem(sys.modules, "ad_buyer.models.state_machine", machine)
    return machine


class Servers:
    """The shared servers' URLs, and how to remove what a run left on them."""

    postgres = POSTGRES_URL
    redis = REDIS_URL

    @staticmethod
    def clean(env: dict[str, str]) -> None:
        asyncio.run(_clean(env))


@pytest.fixture
def servers() -> Servers:
    return Servers()
