"""Four processes racing on one store (SQLite, Redis, PostgreSQL, hybrid): one idempotent
execution and the stored response for every caller; one "claimed" per signature nonce; one
winner of a proposal's consumption; a holder killed -9 mid-hold delays the next caller until its
lease lapses, and never are two executions under way at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests._support.shared import drop_pg_schema, drop_redis_prefix

BACKENDS = ["sqlite", "redis", "postgres", "hybrid"]
LEASE = 2.0  # _racers.LEASE

# One child imports the SDK (a minute on a busy machine), then 64 racers run.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def races(tmp_path_factory: pytest.TempPathFactory, backend_factory) -> Any:
    """Every scenario on every backend, in one child process that imports the SDK once and forks."""
    tmp = tmp_path_factory.mktemp("races")
    backends = [backend_factory(name, tmp) for name in BACKENDS]
    config = {
        "backends": [{"name": b.name, "target": b.url, "env": b.env} for b in backends],
        "out": str(tmp / "results.json"),
    }
    (tmp / "config.json").write_text(json.dumps(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "REDIS_", "STORAGE_", "DATABASE_"))}
    try:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("_racers.py")), str(tmp / "config.json")],
            env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        yield json.loads((tmp / "results.json").read_text(encoding="utf-8"))
    finally:
        for b in backends:
            if b.name in ("postgres", "hybrid"):
                drop_pg_schema(b.env["POSTGRES_SCHEMA"])
            if b.name in ("redis", "hybrid"):
                drop_redis_prefix(b.env["REDIS_KEY_PREFIX"])


def _no_errors(answers: list[Any]) -> None:
    errors = [a["error"] for a in answers if isinstance(a, dict) and "error" in a]
    assert not errors, errors


@pytest.mark.parametrize("name", BACKENDS)
def test_one_execution_for_four_processes(races, name) -> None:
    found = races[f"{name}/idempotency"]
    _no_errors(found["answers"])
    assert found["executions"] == 1
    results = [a["result"] for a in found["answers"]]
    assert len({r["media_buy_id"] for r in results}) == 1  # every caller gets the stored response
    assert sum(1 for r in results if r.get("replayed") is True) == 3


@pytest.mark.parametrize("name", BACKENDS)
def test_exactly_one_claim_of_a_nonce(races, name) -> None:
    answers = races[f"{name}/nonce"]["answers"]
    _no_errors(answers)
    assert sorted(answers) == ["request_signature_replayed"] * 3 + ["verified"]


@pytest.mark.parametrize("name", BACKENDS)
def test_exactly_one_consumption_winner(races, name) -> None:
    answers = races[f"{name}/proposal"]["answers"]
    _no_errors(answers)
    assert sorted(answers) == ["PROPOSAL_NOT_COMMITTED"] * 3 + ["reserved"]


@pytest.mark.parametrize("name", BACKENDS)
def test_a_holder_killed_mid_hold_delays_the_next_until_its_lease_lapses(races, name) -> None:
    found = races[f"{name}/killed"]
    _no_errors(found["answers"])
    assert found["executions"] == 1
    results = [a["result"] for a in found["answers"]]
    assert len({r["media_buy_id"] for r in results}) == 1
    executed = next(r for r in results if "replayed" not in r)
    # The killed holder's lease was not bypassed: the execution began a lease after it was taken...
    assert executed["began"] >= found["held_at"] + LEASE - 0.2
    # ... and, once it lapsed, the next caller did proceed (not stuck for ever).
    assert executed["began"] <= found["killed_at"] + LEASE + 5
