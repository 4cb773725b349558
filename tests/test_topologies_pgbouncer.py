"""PostgreSQL behind PgBouncer (issue 18): the conformance kit through ``pool_mode=transaction``
and ``pool_mode=session``, eight processes cold-starting through the pooler, the sweeper never
running twice at once, pub/sub through a direct connection or refused. Private servers only."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from ad_buyer_storage import ConfigurationError, Storage
from ad_buyer_storage.testing import Harness, StorageContract
from ad_buyer_storage_postgres import PostgresBackend
from tests._support.refusals import postgres_refuses
from tests._support.servers import PgBouncer, PostgresServer, pgbouncer, postgres_server

pytestmark = pytest.mark.topologies


@pytest.fixture(scope="module")
def primary() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        server.sql("ALTER SYSTEM SET max_connections = 300")
        server.stop("fast")
        server.start()
        yield server


@pytest.fixture(scope="module")
def transaction_bouncer(primary: PostgresServer) -> Iterator[PgBouncer]:
    with pgbouncer(primary, "transaction") as bouncer:
        yield bouncer


@pytest.fixture(scope="module")
def session_bouncer(primary: PostgresServer) -> Iterator[PgBouncer]:
    with pgbouncer(primary, "session", pool_size=60) as bouncer:
        yield bouncer


def _harness(url: str, direct: str, *, listen: bool) -> Harness:
    table = f"t_{uuid.uuid4().hex[:12]}"

    def make(_clock: object) -> PostgresBackend:
        return PostgresBackend(
            url, table=table, pool_min=1, pool_max=10, listen_url=direct if listen else None, sweep_interval=None
        )

    return Harness(
        make,
        uses_clock=False,
        child_backend=("tests._support.recipes:postgres", (url, "public", table)),
        storage_options={"max_value_bytes": 64 * 1024},
        fail_writes_to=lambda key: postgres_refuses(direct, "public", table, key),
    )


class TestThroughTransactionPooling(StorageContract):
    @pytest.fixture
    def harness(self, transaction_bouncer: PgBouncer, primary: PostgresServer) -> Harness:
        return _harness(transaction_bouncer.url(), primary.url(), listen=True)


class TestThroughSessionPooling(StorageContract):
    @pytest.fixture
    def harness(self, session_bouncer: PgBouncer, primary: PostgresServer) -> Harness:
        return _harness(session_bouncer.url(), primary.url(), listen=False)


async def test_transaction_pooling_is_detected_and_session_pooling_is_not(
    transaction_bouncer: PgBouncer, session_bouncer: PgBouncer, primary: PostgresServer
) -> None:
    found = {}
    for name, url in (("transaction", transaction_bouncer.url()), ("session", session_bouncer.url()),
                      ("direct", primary.url())):  # fmt: skip
        async with Storage(PostgresBackend(url, table="detect", sweep_interval=None)) as storage:
            found[name] = (await storage.backend.info())["pooling"]
    # A session pooler is not told from a TCP proxy: "unknown", run without a statement cache.
    assert found == {"transaction": "transaction", "session": "unknown", "direct": "direct"}


async def test_a_session_pooler_with_one_server_session_does_not_hang_the_detection(
    primary: PostgresServer,
) -> None:
    """The second probe connection waits for a session the first holds: "session", not a hang."""
    with pgbouncer(primary, "session", pool_size=1) as bouncer:
        backend = PostgresBackend(bouncer.url(), table="tiny", pool_min=1, pool_max=1, connect_timeout=1,
                                  command_timeout=1, sweep_interval=None)  # fmt: skip
        async with Storage(backend) as storage:
            assert (await backend.info())["pooling"] == "unknown"
            await storage.set("deal:1", 1)
            assert await storage.get("deal:1") == 1


async def test_subscribe_through_transaction_pooling_without_a_listen_url_is_refused(
    transaction_bouncer: PgBouncer,
) -> None:
    async with Storage(PostgresBackend(transaction_bouncer.url(), table="nolisten", sweep_interval=None)) as storage:
        with pytest.raises(ConfigurationError, match="POSTGRES_LISTEN_URL"):
            async with storage.subscribe("pubsub:deals"):
                pass
        assert await storage.publish("pubsub:deals", {"a": 1}) == -1  # NOTIFY itself goes through


@pytest.mark.parametrize("mode", ["transaction", "session"])
async def test_when_the_pooler_is_of_unknown_mode_subscribe_checks_that_listen_delivers(
    mode: str, transaction_bouncer: PgBouncer, session_bouncer: PgBouncer
) -> None:
    """A busy transaction pooler can hide from the detection: then a probe NOTIFY decides."""
    bouncer = transaction_bouncer if mode == "transaction" else session_bouncer
    backend = PostgresBackend(bouncer.url(), table="probe", sweep_interval=None)
    async with Storage(backend) as storage:
        backend._between = "unknown"  # as if the detection had seen nothing conclusive
        if mode == "transaction":
            with pytest.raises(ConfigurationError, match="probe NOTIFY did not arrive"):
                async with storage.subscribe("pubsub:deals"):
                    pass
        else:
            async with storage.subscribe("pubsub:deals") as messages:
                await storage.publish("pubsub:deals", {"a": 1})
                assert await asyncio.wait_for(anext(aiter(messages)), timeout=5) == {"a": 1}


async def test_a_listen_through_the_pooler_really_is_dead_which_is_why_it_is_refused(
    transaction_bouncer: PgBouncer,
) -> None:
    """What the refusal prevents: told (wrongly) it is a session pooler, the subscription is silent."""
    backend = PostgresBackend(transaction_bouncer.url(), table="dead", pooling="session", statement_cache_size=0,
                              sweep_interval=None)  # fmt: skip
    async with Storage(backend) as storage, storage.subscribe("pubsub:deals") as messages:
        # Keep the pooler's server sessions busy so the LISTEN's session is not the one left idle.
        await asyncio.gather(*(storage.publish("pubsub:deals", {"n": i}) for i in range(20)))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(aiter(messages)), timeout=1.5)


_CHILD = """
import asyncio, sys, time
from ad_buyer_storage import Storage
from ad_buyer_storage_postgres import PostgresBackend
url, schema, start, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
async def main():
    time.sleep(max(0.0, start - time.time()))
    async with Storage(PostgresBackend(url, schema=schema, pool_min=1, pool_max=2, sweep_interval=None)) as s:
        await s.set(f"deal:{n}", int(n))
asyncio.run(main())
"""


def test_eight_processes_cold_start_through_transaction_pooling(transaction_bouncer: PgBouncer,
                                                                 primary: PostgresServer) -> None:  # fmt: skip
    schema = f"cold_{uuid.uuid4().hex[:8]}"
    start = time.time() + 3  # every child imports first, then all connect within the same instant
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, transaction_bouncer.url(), schema, str(start), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    try:
        results = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    failures = [err for child, (_, err) in zip(children, results, strict=True) if child.returncode]
    assert not failures, failures[0][-2000:]
    assert primary.sql(f'SELECT count(*) FROM "{schema}".kv_store') == "8"
    assert primary.sql(f'SELECT schema_version FROM "{schema}".ad_buyer_storage_schema') == "3"


async def test_the_sweeper_never_runs_twice_at_once_through_transaction_pooling(
    transaction_bouncer: PgBouncer, primary: PostgresServer
) -> None:
    """Four instances purge at once, again and again; each deleted row's purge records its
    transaction and time (a trigger that also slows it down): no two purges ever overlap."""
    table = f"sweep_{uuid.uuid4().hex[:8]}"
    backends = [PostgresBackend(transaction_bouncer.url(), table=table, sweep_interval=None, sweep_batch=5)
                for _ in range(4)]  # fmt: skip
    storages = [Storage(b) for b in backends]
    await asyncio.gather(*(s.connect() for s in storages))
    conn = await asyncpg.connect(primary.url())
    try:
        await conn.execute(
            "CREATE TABLE purges (xid bigint, at timestamptz);"
            "CREATE FUNCTION slow_purge() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO purges VALUES (txid_current(), clock_timestamp()); PERFORM pg_sleep(0.01); "
            "RETURN OLD; END $$;"
            f"CREATE TRIGGER slow_purge BEFORE DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION slow_purge()"
        )
        purged = 0
        for _ in range(3):
            await storages[0].set_many({f"s:{i}": i for i in range(60)}, ttl=1)
            await asyncio.sleep(1.2)
            purged += sum(await asyncio.gather(*(b.purge_expired() for b in backends)))
        spans = await conn.fetch("SELECT xid, min(at) AS first, max(at) AS last FROM purges GROUP BY xid ORDER BY 2")
    finally:
        await conn.close()
        await asyncio.gather(*(s.aclose() for s in storages))
    assert purged == 180
    assert len(spans) >= 36  # batches of 5
    overlaps = [(a["xid"], b["xid"]) for a, b in itertools.pairwise(spans) if b["first"] < a["last"]]
    assert not overlaps, overlaps
    print(f"TOPOLOGY P2: PgBouncer transaction pooling: 4 instances purging at once, 3 rounds of 60 expired rows: "
                 f"{len(spans)} purge transactions, 0 overlapping")  # fmt: skip
