"""SQLite behaviour beyond the shared contract: files, processes, sweeping, plans, errors."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap

import pytest

from ad_buyer_storage import Capability, ConfigurationError, ManualClock, ReadOnlyError, Storage, UnavailableError
from ad_buyer_storage.contract import compile_glob
from ad_buyer_storage.testing import Elapsed
from ad_buyer_storage_sqlite import SQLiteBackend, parse_sqlite_url


def _increment_many(path: str, count: int) -> None:
    async def main() -> None:
        async with Storage(SQLiteBackend(path)) as storage:
            for i in range(count):
                await storage.incr("counter:shared")
                await storage.set(f"row:{os.getpid()}:{i}", {"i": i})

    asyncio.run(main())


@pytest.mark.slow
async def test_four_processes_times_2000_increments_are_exact(tmp_path) -> None:
    path = str(tmp_path / "shared.db")
    async with Storage(SQLiteBackend(path)):
        pass  # create the schema once, as a deployment would
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_increment_many, args=(path, 2000)) for _ in range(4)]
    for proc in procs:
        proc.start()
    loop = asyncio.get_running_loop()
    for proc in procs:
        await loop.run_in_executor(None, proc.join, 240)
        assert proc.exitcode == 0
    async with Storage(SQLiteBackend(path)) as storage:
        assert await storage.get("counter:shared") == 8000
        assert await storage.count("row:*") == 8000
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_fifty_coroutines_writing_at_once(tmp_path) -> None:
    async with Storage(SQLiteBackend(str(tmp_path / "c2.db"))) as storage:
        await asyncio.gather(*(storage.set(f"k:{i}", i) for i in range(50)))
        await asyncio.gather(*(storage.incr("n") for _ in range(50)))
        assert await storage.get_many([f"k:{i}" for i in range(50)]) == {f"k:{i}": i for i in range(50)}
        assert await storage.get("n") == 50


async def test_database_files_are_private(tmp_path) -> None:
    path = tmp_path / "private.db"
    async with Storage(SQLiteBackend(str(path))) as storage:
        await storage.set("k", 1)
        for suffix in ("", "-wal", "-shm"):
            candidate = tmp_path / f"private.db{suffix}"
            assert candidate.exists(), suffix
            assert stat.S_IMODE(candidate.stat().st_mode) == 0o600, suffix


async def test_reads_never_write_and_the_sweeper_purges_in_batches(tmp_path) -> None:
    clock = ManualClock()
    backend = SQLiteBackend(str(tmp_path / "sweep.db"), clock=clock, sweep_interval=None, sweep_batch=7)
    async with Storage(backend) as storage:
        await storage.set_many({f"cache:{i}": i for i in range(20)}, ttl=1)
        await storage.set("keep", 1)
        clock.advance(2)
        assert await storage.get("cache:1") is None
        assert await storage.keys() == ["keep"]
        rows = await backend._fetch('SELECT count(*) FROM "kv_store"', ())
        assert rows[0][0] == 21  # expired rows are still there: reading wrote nothing
        assert await backend.purge_expired() == 20
        rows = await backend._fetch('SELECT count(*) FROM "kv_store"', ())
        assert rows[0][0] == 1


async def test_background_sweeper_runs(tmp_path) -> None:
    clock = ManualClock()
    backend = SQLiteBackend(str(tmp_path / "bg.db"), clock=clock, sweep_interval=0.01)
    async with Storage(backend) as storage:
        await storage.set("cache:x", 1, ttl=1)
        clock.advance(5)
        for _ in range(200):
            rows = await backend._fetch('SELECT count(*) FROM "kv_store"', ())
            if rows[0][0] == 0:
                break
            await asyncio.sleep(0.01)
        assert rows[0][0] == 0


async def test_prefix_listing_uses_the_primary_key_index(tmp_path) -> None:
    backend = SQLiteBackend(str(tmp_path / "plan.db"))
    async with Storage(backend):
        sql = backend._sql.scan(first=True, bounded=True)
        plan = await backend._fetch("EXPLAIN QUERY PLAN " + sql, ("deal:", "deal;", 0, 10))
        detail = " ".join(str(row[-1]) for row in plan)
        assert "USING INDEX sqlite_autoindex" in detail
        assert "SCAN" not in detail.replace("SCAN TABLE", "")
        assert compile_glob("deal:*").prefix == "deal:"


async def test_sqlite_memory_url_works_and_is_not_durable() -> None:
    assert parse_sqlite_url("sqlite:///:memory:") == ":memory:"
    backend = SQLiteBackend(":memory:")
    assert {c.value for c in backend.capabilities} == {"expiry", "atomic", "transactions", "refresh"}
    async with Storage(backend) as storage:
        await storage.set("k", 1)
        assert await storage.get("k") == 1


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///./ad_buyer.db", "./ad_buyer.db"),
        ("sqlite:///rel.db", "rel.db"),
        ("sqlite:////abs/x.db", "/abs/x.db"),
        ("sqlite+aiosqlite:///x.db", "x.db"),
        ("sqlite://", ":memory:"),
    ],
)
def test_url_forms(url: str, path: str) -> None:
    assert parse_sqlite_url(url) == path


@pytest.mark.parametrize("url", ["postgresql://h/db", "sqlite:/x.db", "sqlite:x.db"])
def test_bad_urls_name_the_problem(url: str) -> None:
    with pytest.raises(ConfigurationError, match="sqlite"):
        parse_sqlite_url(url)


def test_table_names_are_identifiers() -> None:
    with pytest.raises(ConfigurationError):
        SQLiteBackend("x.db", table='kv"; DROP TABLE x;--')


async def test_missing_directory_is_a_typed_error(tmp_path) -> None:
    storage = Storage(SQLiteBackend(str(tmp_path / "no" / "such" / "dir.db")))
    with pytest.raises(UnavailableError, match=r"dir\.db"):
        await storage.connect()


async def test_read_only_database_is_a_typed_error(tmp_path) -> None:
    path = tmp_path / "ro.db"
    async with Storage(SQLiteBackend(str(path))) as storage:
        await storage.set("k", 1)
    async with Storage(SQLiteBackend(str(path), read_only=True)) as storage:  # refused even for root
        assert await storage.get("k") == 1
        with pytest.raises(ReadOnlyError):
            await storage.set("k", 2)
        assert await storage.get("k") == 1


def test_process_exits_quickly_without_closing(tmp_path) -> None:
    """F9: a script that never closes get_storage() exits at once, with no warning."""
    script = textwrap.dedent(
        """
        import asyncio, warnings
        warnings.simplefilter("error")
        from ad_buyer_storage import get_storage
        async def main():
            storage = await get_storage()
            await storage.set("deal:exit", {"ok": True})
        asyncio.run(main())
        print("done")
        """
    )
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/exit.db", "PYTHONWARNINGS": "error"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20, env=env, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "Event loop is closed" not in result.stderr, result.stderr
    assert "Unclosed" not in result.stderr, result.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / "exit.db")) as conn:
        assert conn.execute("SELECT value FROM kv_store WHERE key = 'deal:exit'").fetchone() == ('{"ok":true}',)


@pytest.mark.parametrize(("setting", "pragma"), [("NORMAL", 1), ("full", 2)])
async def test_synchronous_is_normal_unless_full_is_asked_for(tmp_path, setting: str, pragma: int) -> None:
    backend = SQLiteBackend(tmp_path / "s.db", synchronous=setting, sweep_interval=None)
    async with Storage(backend):
        assert (await backend._fetch("PRAGMA synchronous", ()))[0][0] == pragma
    with pytest.raises(ConfigurationError, match="NORMAL or FULL"):
        SQLiteBackend(tmp_path / "s.db", synchronous="OFF")


_FORK_SCRIPT = """
import asyncio, os, sys
from ad_buyer_storage import get_storage

loop = asyncio.new_event_loop()
parent = loop.run_until_complete(get_storage())
loop.run_until_complete(parent.set("order:parent", 1))
child_pid = os.fork()
if child_pid == 0:  # as a pre-forking server's worker: a loop of its own, and its own connection
    async def child():
        mine = await get_storage()
        assert mine is not parent, "the child got the parent's connection"
        await mine.set("order:child", os.getpid())
        await mine.aclose()
    try:
        asyncio.run(child())  # an inherited loop is not fork-safe (its executor's threads are gone)
    except BaseException as exc:
        print(repr(exc), file=sys.stderr)
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(child_pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, "child failed"
assert loop.run_until_complete(parent.get("order:child")) == child_pid
loop.run_until_complete(parent.aclose())
print("ok")
"""


def test_a_forked_child_opens_its_own_connection(tmp_path) -> None:
    """C3: get_storage() in a forked child never reuses the parent's connection."""
    env = {**os.environ, "STORAGE_TYPE": "sqlite", "DATABASE_URL": f"sqlite:///{tmp_path}/forked.db"}
    out = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("hook", ["_execute", "_conn"])
async def test_an_aiosqlite_without_its_worker_hook_fails_connect_loudly(monkeypatch, tmp_path, hook) -> None:
    """A transaction runs as one function on aiosqlite's worker thread (a private hook): an
    aiosqlite without it must fail at connect, naming the release to install, never run
    transactions unsafely nor quietly stop claiming them (the kit would then skip them)."""
    import aiosqlite  # noqa: PLC0415 - the driver, only here

    backend = SQLiteBackend(str(tmp_path / "a.db"))
    assert Capability.TRANSACTIONS in backend.capabilities
    monkeypatch.delattr(aiosqlite.Connection, hook)
    with pytest.raises(ConfigurationError, match=rf"aiosqlite .* lacks Connection\.{hook}.*aiosqlite>=0\.20,<0\.23"):
        await backend.connect()
    assert Capability.TRANSACTIONS in SQLiteBackend(str(tmp_path / "b.db")).capabilities


def test_the_installed_aiosqlite_has_the_private_hook_we_rely_on() -> None:
    """README "Private parts of other libraries": when a release drops it, this fails (and
    deps-latest with it) before any user sees connect() refuse."""
    from ad_buyer_storage_sqlite.connection import missing_worker_hooks  # noqa: PLC0415

    assert missing_worker_hooks() == []


async def test_a_table_from_before_sliding_ttls_gains_its_ttl_column(tmp_path) -> None:
    path = str(tmp_path / "old.db")
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE kv_store (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, version TEXT NOT NULL, "
            "expires_at INTEGER)"
        )
        conn.execute("INSERT INTO kv_store VALUES ('session:old', '1', 'v1', NULL)")
    async with Storage(SQLiteBackend(path)) as storage:
        assert await storage.get("session:old", refresh_ttl=True) == 1  # no TTL recorded: none given
        assert await storage.ttl("session:old") is None
        await storage.set("session:new", 2, ttl=40)
        elapsed = Elapsed()
        assert await storage.get("session:new", refresh_ttl=True) == 2
        elapsed.check_ttl(await storage.ttl("session:new"), 40, "refresh_ttl=True must renew to the TTL it was given")
    async with Storage(SQLiteBackend(path)) as storage:  # the second open finds the column there
        assert await storage.get("session:new") == 2
