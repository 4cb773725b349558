"""Several agent processes on one store: no lost transition, histories in order, no duplicate id,
and no error but the ones the workload provokes, also with a process idling after a failed call."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from ad_buyer_storage_buyer_agent import DealStore

WORKER = textwrap.dedent(
    """
    import json, sys, time, sqlite3
    from ad_buyer_storage_buyer_agent import DealStore

    url, deal_ids, rounds, idle = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    store = DealStore(url)
    store.connect()
    report = {"moves": 0, "rounds": [], "errors": [], "collisions": 0}
    if idle:  # a failed call, then this process idles while the others work
        try:
            store.save_deal(deal_id=deal_ids[0], seller_url="s", product_id="p")
        except sqlite3.IntegrityError:
            report["collisions"] += 1
        time.sleep(1.5)
    nxt = {"draft": "negotiating", "negotiating": "booked", "booked": "draft"}
    for i in range(rounds):
        for deal_id in deal_ids:
            try:
                for _ in range(4):  # the first deal is hot: every process moves it, again and again
                    status = store.get_deal(deal_ids[0])["status"]
                    if store.update_deal_status(deal_ids[0], nxt[status], triggered_by=f"p{sys.argv[5]}"):
                        report["moves"] += 1
                report["rounds"].append(
                    store.save_negotiation_round(
                        deal_id=deal_id, proposal_id="x", round_number=int(sys.argv[5]) * 1000 + i,
                        buyer_price=1.0, seller_price=2.0, action="counter",
                    )
                )
            except Exception as exc:  # reported, counted by the test
                report["errors"].append(repr(exc))
    store.disconnect()
    print(json.dumps(report))
    """
)


def _run(url: str, env: dict[str, str], processes: int, rounds: int) -> None:
    store = DealStore(url)
    store.connect()
    try:
        deal_ids = [store.save_deal(seller_url="s", product_id="p") for _ in range(3)]
        full_env = {**os.environ, **env}
        children = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, url, json.dumps(deal_ids), str(rounds), "1" if n == 0 else "0", str(n)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=full_env,
            )
            for n in range(processes)
        ]
        reports = []
        for child in children:
            out, err = child.communicate(timeout=240)
            assert child.returncode == 0, err[-2000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
        assert [r["errors"] for r in reports] == [[] for _ in reports]  # nothing but the provoked collision
        assert reports[0]["collisions"] == 1
        moves = sum(r["moves"] for r in reports)
        logged = 0
        for deal_id in deal_ids:
            history = store.get_status_history("deal", deal_id)
            logged += len(history) - 1
            for before, after in itertools.pairwise(history):
                assert after["from_status"] == before["to_status"], history  # in order, none lost
            current = store.get_deal(deal_id)
            assert current is not None
            assert current["status"] == history[-1]["to_status"]
        assert logged == moves
        ids = [i for r in reports for i in r["rounds"]]
        assert len(ids) == len(set(ids)) == processes * rounds * len(deal_ids)  # no duplicate id
    finally:
        store.disconnect()


@pytest.mark.slow
def test_two_processes_on_one_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AD_BUYER_STORAGE_COMPAT_URL", raising=False)
    _run(f"sqlite:///{tmp_path / 'agents.db'}", {}, processes=2, rounds=12)


@pytest.mark.slow
def test_four_processes_on_postgres_and_redis(monkeypatch: pytest.MonkeyPatch, servers: Any) -> None:
    run = uuid.uuid4().hex[:10]
    env = {
        "AD_BUYER_STORAGE_COMPAT_URL": "hybrid",
        "DATABASE_URL": servers.postgres,
        "REDIS_URL": servers.redis,
        "POSTGRES_SCHEMA": f"ba_p_{run}",
        "REDIS_KEY_PREFIX": f"ba_p_{run}:",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        _run("sqlite:///./agents.db", env, processes=4, rounds=8)  # one namespace, from the file URL
    finally:
        servers.clean(env)
