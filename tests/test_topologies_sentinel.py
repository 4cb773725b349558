"""Redis Sentinel (issue 18): a master, a replica and three sentinels on loopback; the master
killed under write load. The backend finds the new master by itself, errors meanwhile are
typed, and what asynchronous replication lost is measured. Private servers only."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from ad_buyer_storage import Storage
from ad_buyer_storage.errors import BackendError
from ad_buyer_storage_redis import RedisBackend
from tests._support.history import History
from tests._support.servers import sentinel_group

pytestmark = pytest.mark.topologies

TYPED = {"UnavailableError", "OutcomeUnknownError", "StorageTimeoutError", "ReadOnlyError", "BusyError"}


SECRET = "s3cr3t-Sentinel:p@ss"


@pytest.mark.parametrize("password", [None, SECRET], ids=["no-auth", "password"])
async def test_the_master_killed_under_load_the_backend_finds_the_new_one(tmp_path, password: str | None) -> None:
    with sentinel_group(tmp_path, password=password) as group:
        old_port = group.master.port
        backend = RedisBackend(group.url, key_prefix="topo:", connect_timeout=1, command_timeout=1,
                               health_check_interval=0)  # fmt: skip
        history = History()
        raw: list[str] = []
        async with Storage(backend) as storage, contextlib.AsyncExitStack() as stack:
            assert (await backend.info())["mode"] == "sentinel"
            stop = asyncio.Event()

            async def worker(n: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        await history.set(storage, f"w{n}", f"order:{n}:{i}", {"n": n, "i": i})
                        await history.get(storage, f"w{n}", f"order:{n}:{i - 1}")
                        await history.incr(storage, f"w{n}", f"count:{n % 2}")
                    except BackendError:
                        await asyncio.sleep(0.01)
                    except Exception as exc:  # a raw driver error: the test fails on it below
                        raw.append(repr(exc))
                        await asyncio.sleep(0.01)

            tasks = [asyncio.create_task(worker(n)) for n in range(8)]
            stack.callback(lambda: [task.cancel() for task in tasks])  # no worker outlives a failure
            await asyncio.sleep(1.5)
            killed = time.monotonic()
            await asyncio.to_thread(group.master.kill)
            dead = time.monotonic()  # kill -9 returned: the master is gone (before: maybe still serving)
            while True:  # until a write lands on a new master
                try:
                    await storage.set("probe", 1)
                    break
                except BackendError:
                    assert time.monotonic() - killed < 60, "the backend never found the new master"
                    await asyncio.sleep(0.05)
            recovered = time.monotonic() - killed
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*tasks)
            assert group.master_port() == group.replica.port != old_port
            final = await history.final_state(storage)
        errors = {op.error for op in history.operations if op.outcome == "unknown"}
        assert not any("s3cr3t" in str(op.result) for op in history.operations), "a password in an error"
        assert not raw, raw[:3]
        assert errors, "the workers never noticed the kill"
        assert errors <= TYPED, errors
        report = history.check(final)
        assert report.foreign_reads == []
        # Asynchronous replication: only writes acknowledged shortly before the kill may be lost.
        lost = [op for op in history.operations
                if op.kind == "set" and op.outcome == "ok" and final.get(op.key) != op.value]  # fmt: skip
        window = max((dead - op.complete for op in lost), default=0.0)
        assert all(op.complete <= dead for op in lost), "a write acknowledged after the master died was lost"
        assert window < 1.0, f"a write acknowledged {window:.2f} s before the kill was lost"
        counters_short = sum(
            max(0, sum(op.value for op in history.operations if op.kind == "incr" and op.key == key and
                       op.outcome == "ok") - int(final.get(key) or 0))
            for key in ("count:0", "count:1")
        )  # fmt: skip
    acked = sum(op.outcome == "ok" and op.kind in ("set", "incr") for op in history.operations)
    auth = "password" if password else "no auth"
    print(f"TOPOLOGY S1 ({auth}): Sentinel, master kill -9 under 8-task load: {acked:,} acknowledged writes, "
          f"{len(lost)} sets and {counters_short} increments lost (acknowledged at most {window * 1000:.0f} ms "
          f"before the kill); errors {sorted(errors)}; writing to the new master {recovered:.2f} s after the kill "
          f"(down-after-milliseconds 1000)")  # fmt: skip
