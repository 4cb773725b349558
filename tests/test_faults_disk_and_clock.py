"""F7 (SQLite on a full, then read-only, filesystem) and F8 (clock skew between processes).

F7 mounts a private 1 MiB tmpfs (root); F8 runs a writer under libfaketime (``faketime``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ad_buyer_storage import Storage
from ad_buyer_storage.contract import StorageBackend
from ad_buyer_storage.errors import ReadOnlyError, StorageFullError
from ad_buyer_storage.testing import Elapsed
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.figures import record
from tests._support.history import History
from tests._support.shared import POSTGRES_URL, REDIS_URL, drop_pg_schema

pytestmark = pytest.mark.faults


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


async def test_f7_sqlite_full_then_read_only_is_typed_loses_nothing_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", "1m") as mnt:
        history = History()
        async with Storage(SQLiteBackend(str(mnt / "full.db"), sweep_interval=None)) as storage:
            blob = "x" * 8000
            full_errors = 0
            for i in range(400):  # ~3 MB into 1 MiB: the disk fills long before the end
                try:
                    await history.set(storage, "writer", f"order:{i}", {"i": i, "blob": blob})
                except StorageFullError:
                    full_errors += 1
                    if full_errors >= 5:
                        break
            assert full_errors >= 5, "the disk never filled"
            acknowledged = sum(op.outcome == "ok" for op in history.operations)
            failed_keys = [op.key for op in history.operations if op.outcome != "ok"]
            # No partial value: a write that failed left nothing behind.
            assert await storage.get_many(failed_keys) == {}
            report = history.check(await history.final_state(storage))
            assert not report.problems, report.problems[:5]
            remount(mnt, "size=8m")  # space returns: the same object writes again
            await history.set(storage, "writer", "order:after-full", {"ok": True})
        # A file system remounted read-only (it refuses while files are open for writing): a typed
        # error that says so, and the file opens again once the file system is read-write.
        remount(mnt, "ro")
        try:
            with pytest.raises(ReadOnlyError, match="mounted read-only"):
                await Storage(SQLiteBackend(str(mnt / "full.db"), sweep_interval=None)).connect()
        finally:
            remount(mnt, "rw")
        async with Storage(SQLiteBackend(str(mnt / "full.db"), sweep_interval=None)) as storage:
            await history.set(storage, "writer", "order:after-ro", {"ok": True})
            report = history.check(await history.final_state(storage))
            assert not report.problems, report.problems[:5]
        with contextlib.closing(__import__("sqlite3").connect(mnt / "full.db")) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    record(
        "F7",
        f"1 MiB tmpfs: {acknowledged} writes acknowledged, then {full_errors} typed StorageFullError, "
        f"0 partial values, 0 lost; space back: the same object writes again; remounted ro: ReadOnlyError on open",
    )


# -- F8: clock skew ------------------------------------------------------------------------------
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)
SKEW = 3600.0

_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from ad_buyer_storage import Storage
    from ad_buyer_storage.contract import StorageBackend
    from tests.test_faults_disk_and_clock import backend_for

    async def main(kind, where, action, key):
        async with Storage(backend_for(kind, where)) as storage:
            if action == "write":
                await storage.set(key, {"by": "skewed"}, ttl=60)
            seen = await storage.get(key)
            print(json.dumps({"now": time.time(), "seen": seen}))

    asyncio.run(main(*sys.argv[1:]))
    """
)


def backend_for(kind: str, where: str) -> StorageBackend:
    if kind == "sqlite":
        return SQLiteBackend(where, sweep_interval=None)
    if kind == "redis":
        return RedisBackend(REDIS_URL, key_prefix=where)
    return PostgresBackend(POSTGRES_URL, schema=where, sweep_interval=None)


def run_skewed(skew: float, kind: str, where: str, action: str, key: str) -> dict[str, object]:
    """Run the child with its clock *skew* seconds off (libfaketime), the server's left alone."""
    if LIBFAKETIME is None or shutil.which("faketime") is None:
        pytest.fail("F8 needs libfaketime: apt-get install faketime (nox -s faults installs it)")
    env = {**os.environ, "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"{skew:+.0f}",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1", "PYTHONPATH": str(Path(__file__).parent.parent)}  # fmt: skip
    started = time.time()
    out = subprocess.run([sys.executable, "-c", _CHILD, kind, where, action, key], env=env, capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    ended = time.time()
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    unskewed = float(str(result["now"])) - skew  # the child's clock, less the skew, read while it ran:
    assert started - 1 <= unskewed <= ended + 1, "faketime did not skew the child's clock"  # 1 s << the skew
    return result


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
async def test_f8_clock_skew_between_writer_and_reader_follows_the_documented_clock(kind: str, tmp_path) -> None:
    """Redis and PostgreSQL expire by the server's clock: a skewed client changes nothing. SQLite
    expires by the clock of the process that wrote the row (documented), so the skew shifts expiry."""
    where = {"sqlite": str(tmp_path / "skew.db"), "redis": f"abs-test:{uuid.uuid4().hex}:",
             "postgres": f"abs_test_{uuid.uuid4().hex[:12]}"}[kind]  # fmt: skip
    try:
        async with Storage(backend_for(kind, where)) as storage:
            elapsed = Elapsed()  # the child writes "session:ahead" after this
            run_skewed(+SKEW, kind, where, "write", "session:ahead")
            run_skewed(-SKEW, kind, where, "write", "session:behind")
            await storage.set("session:local", {"by": "local"}, ttl=60)
            ahead_read = run_skewed(+SKEW, kind, where, "read", "session:local")
            ttl_ahead, behind = await storage.ttl("session:ahead"), await storage.get("session:behind")
            if kind == "sqlite":  # stamped by the writer's clock, an hour ahead
                elapsed.check_ttl(ttl_ahead, SKEW + 60, "SQLite expires by the writer's clock")
                assert behind is None  # stamped an hour in the past: already expired here
                assert ahead_read["seen"] is None  # an hour ahead, the local row has expired
            else:
                elapsed.check_ttl(ttl_ahead, 60, "a server expires by its own clock, whatever the client's")
                assert behind == {"by": "skewed"}
                assert ahead_read["seen"] == {"by": "local"}
            await storage.clear()
    finally:
        if kind == "postgres":
            drop_pg_schema(where)
    shifted = "shifts expiry by the skew (process clock)" if kind == "sqlite" else "changes nothing (server clock)"
    record("F8", f"{kind}: writer or reader {SKEW:.0f} s ahead or behind {shifted}")
