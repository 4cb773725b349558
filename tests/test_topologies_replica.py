"""PostgreSQL with a streaming standby (issue 18): listings and filtered reads on the standby
(``read_urls``) with read-your-writes per backend object; the standby down or stalled; and a
multi-host URL (``target_session_attrs=read-write``) finding the promoted standby after a
switchover. Private servers only (``pg_basebackup -R``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest

from ad_buyer_storage import Storage
from ad_buyer_storage.errors import BackendError
from ad_buyer_storage_postgres import PostgresBackend
from tests._support.history import History
from tests._support.servers import PostgresServer, replicated_postgres

pytestmark = pytest.mark.topologies


@pytest.fixture
def pair() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    with replicated_postgres() as servers:
        yield servers


def replayed(primary: PostgresServer, standby: PostgresServer, timeout: float = 20) -> None:
    """Wait until *standby* has replayed everything *primary* has written so far."""
    target = primary.sql("SELECT pg_current_wal_lsn()")
    deadline = time.monotonic() + timeout
    while standby.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") != "t":
        if time.monotonic() > deadline:
            raise TimeoutError("the standby never caught up")
        time.sleep(0.05)


def backend(primary: PostgresServer, standby: PostgresServer, table: str = "kv_store") -> PostgresBackend:
    return PostgresBackend(primary.url(), table=table, read_urls=standby.url(), pooling="session",
                           sweep_interval=None, connect_timeout=2, command_timeout=5, acquire_timeout=2)  # fmt: skip


async def test_a_stalled_standby_never_returns_a_value_older_than_this_objects_own_write(pair) -> None:
    primary, standby = pair
    async with Storage(backend(primary, standby)) as writer, Storage(backend(primary, standby)) as reader:
        await writer.set("deal:1", {"status": "draft", "n": 0})
        await asyncio.to_thread(replayed, primary, standby)
        standby.sql("SELECT pg_wal_replay_pause()")
        w: PostgresBackend = writer.backend  # type: ignore[assignment]
        r: PostgresBackend = reader.backend  # type: ignore[assignment]
        stale = 0
        for n in range(1, 51):
            await writer.set("deal:1", {"status": "live", "n": n})
            await writer.set(f"deal:{n + 1}", {"status": "live", "n": n})
            rows = dict((await writer.select("deal:", {"status": "live"})).rows)
            assert rows["deal:1"] == {"status": "live", "n": n}  # own write: never older
            assert f"deal:{n + 1}" in await writer.keys("deal:*")
            # Another object that wrote nothing reads the stalled standby: the old row.
            seen = dict((await reader.select("deal:")).rows)
            stale += seen == {"deal:1": {"status": "draft", "n": 0}}
        assert stale == 50, "reads of an object that did not write must go to the standby"
        assert r.replica_reads == 50
        assert w.replica_reads == 0
        assert w.primary_fallbacks == 100
        standby.sql("SELECT pg_wal_replay_resume()")
        await asyncio.to_thread(replayed, primary, standby)
        before = w.replica_reads
        rows = dict((await writer.select("deal:", {"status": "live"})).rows)
        assert rows["deal:1"] == {"status": "live", "n": 50}
        assert len(rows) == 51
        assert w.replica_reads == before + 1, "caught up: the standby serves this object again"
    print(f"TOPOLOGY R1: standby replay paused, 50 write+list rounds: writer saw its own write 100/100 times "
          f"(primary fallbacks {w.primary_fallbacks}); a non-writing reader served by the standby {r.replica_reads} "
          f"times, stale as expected {stale}/50")  # fmt: skip


async def test_reads_fall_back_to_the_primary_while_the_standby_is_down(pair) -> None:
    primary, standby = pair
    async with Storage(backend(primary, standby)) as storage:
        await storage.set_many({f"deal:{i}": {"i": i} for i in range(20)})
        b: PostgresBackend = storage.backend  # type: ignore[assignment]
        await asyncio.to_thread(replayed, primary, standby)
        await storage.set("x", 1)  # taints nothing under deal:, but this object wrote: the LSN check runs
        assert len(await storage.keys("deal:*")) == 20
        served = b.replica_reads
        assert served == 1
        await asyncio.to_thread(standby.stop, "immediate")
        started = time.monotonic()
        for _ in range(20):
            assert len(await storage.keys("deal:*")) == 20
            assert len((await storage.select("deal:", {"i": 3})).rows) == 1
        slowest = time.monotonic() - started
        assert b.replica_reads == served
        assert b.primary_fallbacks >= 40
        await asyncio.to_thread(standby.start)
        await asyncio.to_thread(replayed, primary, standby)
        deadline = time.monotonic() + 15
        while b.replica_reads == served:  # the standby is tried again after its rest
            assert time.monotonic() < deadline, "the standby was never used again"
            assert len(await storage.keys("deal:*")) == 20
            await asyncio.sleep(0.2)
        recovered = time.monotonic() - started
    print(f"TOPOLOGY R2: standby stopped (-m immediate): 40 listings served by the primary in {slowest:.2f} s, "
          f"no error; standby used again {recovered:.1f} s after the stop (restart + 5 s rest)")  # fmt: skip


async def test_a_multi_host_url_finds_the_promoted_standby_after_a_switchover(pair) -> None:
    primary, standby = pair
    url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/postgres"
           "?target_session_attrs=read-write")  # fmt: skip
    pg = PostgresBackend(url, pooling="session", sweep_interval=None, connect_timeout=2, command_timeout=2,
                         acquire_timeout=2)  # fmt: skip
    history = History()
    async with Storage(pg) as storage, contextlib.AsyncExitStack() as stack:
        assert (await pg.info())["server_version"]
        stop = asyncio.Event()
        errors: set[str] = set()

        async def worker(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    await history.set(storage, f"w{n}", f"order:{n}:{i}", {"n": n, "i": i})
                    await history.incr(storage, f"w{n}", "order:count")
                except BackendError as exc:
                    errors.add(type(exc).__name__)
                    await asyncio.sleep(0.02)

        tasks = [asyncio.create_task(worker(n)) for n in range(8)]
        stack.callback(lambda: [task.cancel() for task in tasks])  # no worker outlives a failure
        await asyncio.sleep(1.0)
        switched = time.monotonic()
        await asyncio.to_thread(primary.stop, "fast")  # a clean switchover: the standby has every WAL record
        await asyncio.to_thread(standby.promote)
        while True:
            try:
                await storage.set("order:probe", 1)
                break
            except BackendError:
                assert time.monotonic() - switched < 30, "the backend never found the new primary"
                await asyncio.sleep(0.05)
        recovered = time.monotonic() - switched
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)
        report = history.check(await history.final_state(storage))
        assert report.problems == [], report.problems[:5]
        assert errors <= {"UnavailableError", "OutcomeUnknownError", "StorageTimeoutError", "ReadOnlyError"}, errors
        assert standby.sql("SELECT pg_is_in_recovery()") == "f"
    print(f"TOPOLOGY R3: multi-host URL, primary stopped (-m fast) and standby promoted under 8-task load: "
          f"{report.acknowledged:,} acknowledged ops, 0 lost; errors {sorted(errors)}; writing again "
          f"{recovered:.2f} s after the stop")  # fmt: skip
