"""Faults from the reliability plan: cancellation storms (C5), a SQLite writer killed at random
(F6), a process killed in the middle of transactions (F10), and secrets in DEBUG logs on
failures (S1)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import random
import signal
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ad_buyer_storage import Storage, StorageError
from ad_buyer_storage.errors import BackendError, OutcomeUnknownError, UnavailableError
from ad_buyer_storage.testing.harness import load_callable
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.figures import record
from tests._support.history import History
from tests._support.proxy import FaultProxy
from tests._support.servers import free_port, redis_server
from tests._support.shared import POSTGRES_URL, drop_redis_prefix

pytestmark = pytest.mark.faults

SECRET = "Fault-S3cret-Value"


def _through(kind: str, proxy_port: int, schema: str) -> Any:
    if kind == "redis":
        return RedisBackend(
            f"redis://127.0.0.1:{proxy_port}/0", key_prefix=f"abs-test:{schema}:", command_timeout=2, connect_timeout=2
        )
    return PostgresBackend(f"postgresql://postgres@127.0.0.1:{proxy_port}/test", schema=schema, pool_max=10,
                           command_timeout=2, connect_timeout=2, acquire_timeout=2, sweep_interval=None,
                           pooling="session")  # a plain TCP proxy: no pooler to detect  # fmt: skip


@pytest.fixture
def scratch(pg_schema: str) -> Iterator[str]:
    """A namespace on the shared servers (schema, Redis key prefix) emptied even if the test fails."""
    yield pg_schema
    drop_redis_prefix(f"abs-test:{pg_schema}:")


@pytest.mark.parametrize("kind", ["redis", "postgres"])
async def test_c5_cancellation_storm_never_crosses_keys_or_leaks(kind: str, scratch: str) -> None:
    """200 rounds of 10 reads through a slow link, 5-9 of them cancelled each round."""
    target = 6379 if kind == "redis" else 5432
    async with FaultProxy(target) as proxy:
        storage = Storage(_through(kind, proxy.port, scratch))
        await storage.connect()
        await storage.set_many({f"deal:{i}": {"id": i} for i in range(10)})
        proxy.mode, proxy.delay = "delay", 0.002
        rng = random.Random(7)
        wrong = 0
        for _ in range(200):
            tasks = [asyncio.create_task(storage.get(f"deal:{i}")) for i in range(10)]
            await asyncio.sleep(rng.uniform(0, 0.004))
            for task in rng.sample(tasks, rng.randint(5, 9)):
                task.cancel()
            for i, task in enumerate(tasks):
                try:
                    value = await task
                except asyncio.CancelledError:
                    continue
                except BackendError:
                    continue  # a typed error is acceptable; a wrong value is not
                wrong += value != {"id": i}
        assert wrong == 0
        record("C5", f"{kind}: 200 rounds x 10 reads through a 2 ms-per-chunk proxy, 5-9 cancelled per round: "
                     "0 values from another key")  # fmt: skip
        proxy.mode = "pass"
        assert await storage.get("deal:3") == {"id": 3}  # still healthy after the storm
        await storage.clear()
        await storage.aclose()  # returns (pytest-timeout bounds it), and closes every connection:
        await asyncio.sleep(0.2)
        assert not [w for w in proxy._writers if not w.is_closing()]  # no connection left open


@pytest.mark.parametrize("kind", ["redis", "postgres"])
async def test_truncated_replies_are_typed_errors_never_partial_values(kind: str, scratch: str) -> None:
    """Half an answer, then the connection cut: a typed error, never a partial or wrong value."""
    async with (
        FaultProxy(6379 if kind == "redis" else 5432) as proxy,
        Storage(_through(kind, proxy.port, scratch)) as storage,
    ):
        value = {"blob": "x" * 5000, "n": 1}
        await storage.set("deal:1", value)
        proxy.mode = "truncate_replies"
        for call in (
            lambda: storage.get("deal:1"),
            lambda: storage.get_many(["deal:1"]),
            lambda: storage.incr("n"),
        ):
            with pytest.raises((UnavailableError, OutcomeUnknownError)):
                await call()
        proxy.mode = "pass"
        proxy.cut_all()
        assert await storage.get("deal:1") == value
        assert await storage.get("n") in (None, 1)  # the increment ran once or not at all
        await storage.clear()


def _write_until_killed(path: str, acks: Any) -> None:
    async def main() -> None:
        async with Storage(SQLiteBackend(path, sweep_interval=None)) as storage:
            i = 0
            while True:
                await storage.set(f"order:{i}", {"n": i})
                acks.send(i)  # acknowledged: set() returned
                i += 1

    asyncio.run(main())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_f6_sqlite_writer_killed_at_random_loses_nothing_acknowledged(tmp_path, seed: int) -> None:
    path = str(tmp_path / "killed.db")
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_write_until_killed, args=(path, send))
    child.start()
    acknowledged: list[int] = []
    deadline = time.monotonic() + 30 + random.Random(seed).uniform(0.2, 1.5)
    first: float | None = None  # the window runs from the first acknowledged write, not from the
    # spawn: a child slow to start (imports, a loaded machine) must still write for the whole window
    while time.monotonic() < deadline and (first is None or time.monotonic() - first < 0.3 + seed * 0.3):
        if receive.poll(0.05):
            acknowledged.append(receive.recv())
            first = first if first is not None else time.monotonic()
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)  # no shutdown, no close, no checkpoint
    child.join(10)
    while receive.poll(0):
        acknowledged.append(receive.recv())
    assert len(acknowledged) > 10
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    history = History()
    for i in acknowledged:
        history.acknowledged_set("child", f"order:{i}", {"n": i})

    async def reopen() -> dict[str, Any]:
        async with Storage(SQLiteBackend(path, sweep_interval=None)) as storage:
            return await history.final_state(storage)

    report = history.check(asyncio.run(reopen()))
    assert not report.problems, report.problems[:5]
    record("F6", f"seed {seed}: writer killed -9 after {len(acknowledged):,} acknowledged writes: 0 lost, "
                 "integrity_check ok, reopened by a new backend")  # fmt: skip


_PAIR = [f"pacing:part{i}" for i in range(8)]  # one transaction writes all of them, the same number


def _transactions_until_killed(recipe: tuple[str, tuple[Any, ...]], first_round: int, acks: Any) -> None:
    async def main() -> None:
        async with Storage(load_callable(recipe[0])(*recipe[1])) as storage:
            i = first_round
            while True:
                async with storage.transaction() as tx:
                    for n, key in enumerate(_PAIR):  # two kinds of writes: several statements
                        tx.set(key, {"round": i, "pad": "x" * 2000}, keep_ttl=n % 2 == 1)
                    for marker in await storage.keys("marker:*"):
                        tx.delete(marker)
                    tx.set(f"marker:{i}", i)
                acks.send(i)  # acknowledged: the commit returned
                i += 1

    asyncio.run(main())


def _kill_mid_stream(recipe: tuple[str, tuple[Any, ...]], first_round: int, wait: float) -> list[int]:
    """Run transactions in a child, SIGKILL it after *wait* s of acknowledgements; the acknowledged rounds."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_transactions_until_killed, args=(recipe, first_round, send))
    child.start()
    acknowledged: list[int] = []
    deadline, first = time.monotonic() + 60, None
    while time.monotonic() < deadline and (first is None or time.monotonic() - first < wait):
        if receive.poll(0.01):
            acknowledged.append(receive.recv())
            first = first or time.monotonic()
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)  # mid-stream: as likely inside a commit as anywhere
    child.join(10)
    while receive.poll(0):
        acknowledged.append(receive.recv())
    return acknowledged


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_f10_a_process_killed_mid_commit_leaves_all_of_a_transaction_or_none(tmp_path, pg_schema, kind) -> None:
    recipe: tuple[str, tuple[Any, ...]] = (
        ("tests._support.recipes:sqlite_file", (str(tmp_path / "tx.db"),))
        if kind == "sqlite"
        else ("tests._support.recipes:postgres", (POSTGRES_URL, pg_schema, "kv"))
    )

    async def state() -> tuple[dict[str, Any], list[str]]:
        async with Storage(load_callable(recipe[0])(*recipe[1])) as storage:
            return await storage.get_many(_PAIR), await storage.keys("marker:*")

    rng, kills, total = random.Random(9), 12, 0
    for kill in range(kills):
        acknowledged = _kill_mid_stream(recipe, kill * 1_000_000, rng.uniform(0.05, 0.4))
        assert acknowledged, "the child never got going"
        total += len(acknowledged)
        parts, markers = asyncio.run(state())
        rounds = {part["round"] for part in parts.values()}
        assert len(parts) == len(_PAIR), f"kill {kill}: a transaction's writes half applied: {sorted(parts)}"
        assert len(rounds) == 1, f"kill {kill}: the parts come from different transactions: {sorted(rounds)}"
        (last,) = rounds
        assert markers == [f"marker:{last}"], f"kill {kill}: a transaction's deletes and writes apart: {markers}"
        assert last >= acknowledged[-1], (
            f"kill {kill}: an acknowledged transaction was lost ({last} < {acknowledged[-1]})"
        )
    record("F10", f"{kind}: {kills} writers killed -9 mid-stream after {total:,} acknowledged transactions of "
                 "10 keys (8 writes, 2 deletes): each time every key from one transaction, none lost")  # fmt: skip


@pytest.mark.parametrize(
    "make",
    [
        lambda: RedisBackend(f"redis://:{SECRET}@127.0.0.1:{free_port()}/0", connect_timeout=1),
        lambda: PostgresBackend(f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/db", connect_timeout=1),
    ],
    ids=["redis", "postgres"],
)
async def test_s1_no_secret_in_errors_reprs_or_debug_logs(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    backend = make()
    storage = Storage(backend)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(StorageError) as info:
            await storage.connect()
        text = " ".join(
            [repr(storage), repr(backend), str(info.value), repr(info.value)]
            + [r.getMessage() for r in caplog.records]
            + [str(e) for e in _chain(info.value)]
        )
    assert SECRET not in text
    assert "S3cret" not in text


async def test_s1_wrong_password_on_a_real_server_keeps_the_secret(tmp_path, caplog) -> None:
    with redis_server(tmp_path / "r", "--requirepass", "right-one") as server:
        with caplog.at_level(logging.DEBUG), pytest.raises(StorageError) as info:
            await Storage(RedisBackend(f"redis://:{SECRET}@127.0.0.1:{server.port}/0")).connect()
        text = " ".join([str(e) for e in _chain(info.value)] + [r.getMessage() for r in caplog.records])
        assert SECRET not in text


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen
