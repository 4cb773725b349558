"""Migration between stores, the dual-write mirror, and the README runbook end to end."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ad_buyer_storage import ManualClock, Storage, UnavailableError, get_storage_backend
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.client.codec import canonical
from ad_buyer_storage.composed.mirror import MirrorBackend
from ad_buyer_storage.ops.migrate import migrate, verify
from ad_buyer_storage.ops.repair import repair
from ad_buyer_storage.testing import Elapsed, Harness, StorageContract
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.recipes import postgres_and_redis
from tests._support.refusals import sqlite_refuses
from tests._support.shared import REDIS_URL, drop_pg_schema


class TestMirrorContract(StorageContract):
    @pytest.fixture
    def harness(self, tmp_path) -> Harness:
        path = str(tmp_path / "primary.db")
        secondary = MemoryBackend()  # kept across reopen, like a second server

        def make(clock: ManualClock) -> MirrorBackend:
            secondary._clock = clock
            return MirrorBackend(SQLiteBackend(path, clock=clock), secondary, shadow_reads=1.0)

        return Harness(
            make,
            storage_options={"max_value_bytes": 64 * 1024},
            fail_writes_to=lambda key: sqlite_refuses(path, key),  # the primary refuses it
        )


def test_canonical_json_ignores_key_order_and_number_spelling() -> None:
    assert canonical('{"b":1e16,"a":[1.50,-0.0]}') == canonical('{"a": [1.5, 0.0], "b": 10000000000000000}')
    assert canonical('{"a":1}') != canonical('{"a":"1"}')


async def test_migrate_copies_values_and_ttls_skips_expired_and_is_idempotent(tmp_path) -> None:
    clock = ManualClock()
    async with (
        Storage(MemoryBackend(clock=clock)) as source,
        Storage(SQLiteBackend(str(tmp_path / "t.db"), clock=clock)) as target,
    ):
        await source.set_many({f"deal:{i}": {"n": i} for i in range(2500)})
        await source.set_many({f"session:{i}": {"s": i} for i in range(300)}, ttl=100)
        await source.set("cache:gone", 1, ttl=1)
        clock.advance(2)
        elapsed = Elapsed(clock)  # the stores keep time by this clock alone: the copy's TTL is exact
        report = await migrate(source, target, batch_size=400)
        assert (report.scanned, report.copied, report.expired) == (2800, 2800, 0)  # expired ones aren't even listed
        assert await target.get("deal:2499") == {"n": 2499}
        assert not await target.exists("cache:gone")
        elapsed.check_ttl(await target.ttl("session:7"), 98, "migrate() must copy the remaining TTL (100 s less 2)")
        again = await migrate(source, target)
        assert (again.copied, again.already_present, again.kept_on_target) == (0, 2800, 0)
        result = await verify(source, target)
        assert result.ok
        assert result.prefixes["deal:"][:2] == (2500, 2500)


async def test_migrate_never_overwrites_a_different_target_value_unless_told(tmp_path) -> None:
    async with Storage(MemoryBackend()) as source, Storage(MemoryBackend()) as target:
        await source.set_many({"deal:1": {"v": "old"}, "deal:2": {"v": 2}})
        await target.set("deal:1", {"v": "newer"})
        report = await migrate(source, target)
        assert (report.copied, report.kept_on_target, report.differing_keys) == (1, 1, ["deal:1"])
        assert await target.get("deal:1") == {"v": "newer"}
        failed = await verify(source, target)
        assert not failed.ok
        assert failed.different == ["deal:1"]
        forced = await migrate(source, target, overwrite=True)
        assert forced.overwritten == 1
        assert await target.get("deal:1") == {"v": "old"}
        assert (await verify(source, target)).ok


async def test_an_interrupted_migration_resumes(tmp_path) -> None:
    async with Storage(MemoryBackend()) as source, Storage(SQLiteBackend(str(tmp_path / "r.db"))) as target:
        await source.set_many({f"order:{i:05d}": i for i in range(5000)})

        def stop_after_two_batches(done: int, total: int | None) -> None:
            if done >= 2000:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            await migrate(source, target, batch_size=1000, progress=stop_after_two_batches)
        assert 0 < await target.count() < 5000
        report = await migrate(source, target, batch_size=1000)
        assert report.copied + report.already_present == 5000
        assert await target.count() == 5000
        assert (await verify(source, target)).ok


async def test_dry_run_and_verify_report_differences(tmp_path) -> None:
    async with Storage(MemoryBackend()) as source, Storage(MemoryBackend()) as target:
        await source.set_many({"deal:1": 1, "deal:2": 2, "campaign:1": 1})
        await target.set("extra:1", 1)
        report = await migrate(source, target, dry_run=True)
        assert report.copied == 3
        assert await target.keys() == ["extra:1"]
        result = await verify(source, target)
        assert sorted(result.missing_on_target) == ["campaign:1", "deal:1", "deal:2"]
        assert result.extra_on_target == ["extra:1"]
        assert not result.ok


async def test_a_dry_run_reports_what_the_real_run_does() -> None:
    """Same value on the target: already present; a different one: kept (or overwritten)."""
    async with Storage(MemoryBackend()) as source, Storage(MemoryBackend()) as target:
        await source.set_many({"deal:1": 1, "deal:2": 2, "deal:3": 3, "deal:4": 4})
        await target.set_many({"deal:2": 2, "deal:3": "theirs", "deal:4": "theirs too"})
        for overwrite in (False, True):
            dry = await migrate(source, target, dry_run=True, overwrite=overwrite)
            assert await target.get_many(["deal:1", "deal:3"]) == {"deal:3": "theirs"}, "a dry run writes nothing"
            assert (dry.copied, dry.already_present) == (1, 1)
            assert (dry.kept_on_target, dry.overwritten) == ((0, 2) if overwrite else (2, 0))
            assert sorted(dry.differing_keys) == ([] if overwrite else ["deal:3", "deal:4"])
        real = await migrate(source, target)
        assert (real.copied, real.already_present, real.kept_on_target, real.overwritten) == (1, 1, 2, 0)


async def test_verify_counts_every_difference_while_it_lists_20() -> None:
    async with Storage(MemoryBackend()) as source, Storage(MemoryBackend()) as target:
        await target.set_many({f"extra:{i:02d}": i for i in range(39)})
        await source.set_many({f"deal:{i:02d}": i for i in range(25)})
        result = await verify(source, target)
        assert (len(result.extra_on_target), result.extra_count) == (20, 39)
        assert (len(result.missing_on_target), result.missing_count) == (20, 25)
        assert result.different_count == 0


def test_cli_migrate_and_verify(tmp_path: Path) -> None:
    source, target = f"sqlite:///{tmp_path}/src.db", f"sqlite:///{tmp_path}/dst.db"
    cli = [sys.executable, "-m", "ad_buyer_storage.cli"]
    seed = "import asyncio\nfrom ad_buyer_storage import open_storage\n" + (
        "async def main():\n"
        f"    async with open_storage({source!r}) as s:\n"
        "        await s.set_many({f'deal:{i}': {'n': i} for i in range(300)})\n"
        "        await s.set_many({f'session:{i}': {'n': i} for i in range(50)}, ttl=600)\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", seed], check=True, cwd=tmp_path, timeout=60)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)

    moved = run("migrate", "--from", source, "--to", target)
    assert moved.returncode == 0, moved.stderr
    assert "copied 350 of 350 keys" in moved.stdout
    assert "verified: source and target agree" in moved.stdout
    assert "deal:" in moved.stdout
    assert "session:" in moved.stdout
    assert "350/350" in moved.stderr or "350 keys" in moved.stderr  # progress lines (not a terminal here)
    subprocess.run([*cli, "--database-url", target, "delete", "deal:7"], cwd=tmp_path, timeout=60, check=True,
                   capture_output=True)  # fmt: skip
    checked = run("verify", "--from", source, "--to", target)
    assert checked.returncode == 1
    assert "missing on target: 'deal:7'" in checked.stdout
    assert "MISMATCH" in checked.stdout


async def test_mirror_writes_both_reads_primary_and_counts_shadow_mismatches(caplog) -> None:
    primary, secondary = MemoryBackend(), MemoryBackend()
    mirror = MirrorBackend(primary, secondary, shadow_reads=1.0)
    async with Storage(mirror) as storage:
        elapsed = Elapsed()
        await storage.set("deal:1", {"spend": "1.00"}, ttl=60)
        await storage.incr("counter", ttl=60)
        await storage.update("deal:1", lambda d: {**d, "spend": "2.00"})
        assert secondary._data["deal:1"].value == primary._data["deal:1"].value
        assert secondary._data["deal:1"].version == primary._data["deal:1"].version
        # The kept TTL is mirrored as "remaining ms": the copy's expiry is later than the original's by
        # at most the time between reading the primary's TTL and writing the copy.
        mirrored, original = secondary._data["deal:1"].expires_at_ms, primary._data["deal:1"].expires_at_ms
        assert mirrored is not None
        assert original is not None
        elapsed.check_lag((mirrored - original) / 1000, "the mirrored expiry must follow the primary's")
        assert secondary._data["counter"].value == "1"
        secondary._data["deal:1"] = secondary._data["deal:1"]._replace(value='{"spend":"tampered-secret"}')
        with caplog.at_level(logging.WARNING, logger="ad_buyer_storage.mirror"):
            assert await storage.get("deal:1") == {"spend": "2.00"}  # the primary answers
        assert mirror.stats.shadow_mismatches == 1
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert "sha256:" in logged
        assert "deal:1" not in logged
        assert "tampered-secret" not in logged
        assert await storage.delete("deal:1")
        assert "deal:1" not in secondary._data


async def test_secondary_failures_fail_or_are_recorded_and_repaired(tmp_path) -> None:
    class Flaky(MemoryBackend):
        down = False

        async def write(self, writes):
            if self.down:
                raise UnavailableError("secondary down")
            return await super().write(writes)

    primary, secondary = MemoryBackend(), Flaky()
    async with Storage(MirrorBackend(primary, secondary, on_secondary_failure="fail")) as storage:
        secondary.down = True
        with pytest.raises(UnavailableError):
            await storage.set("deal:1", 1)  # never silent: the caller hears of it
        assert await storage.get("deal:1") == 1  # (the primary has it)
    log_path = tmp_path / "repair.log"
    mirror = MirrorBackend(primary, secondary, on_secondary_failure="record", repair_log=log_path)
    async with Storage(mirror) as storage:
        await storage.set("deal:2", 2, ttl=300)
        await storage.set_many({"deal:3": 3, "deal:4": 4})
        assert mirror.stats.recorded_for_repair == 3
        assert [json.loads(line)["key"] for line in log_path.read_text().splitlines()] == ["deal:2", "deal:3", "deal:4"]
        assert (await storage.info())["repair_backlog"] == 3
        secondary.down = False
        assert await repair(mirror) == 3
        assert not log_path.exists()
        assert {k: secondary._data[k].value for k in ("deal:2", "deal:3", "deal:4")} == {
            "deal:2": "2", "deal:3": "3", "deal:4": "4"
        }  # fmt: skip
        assert secondary._data["deal:2"].expires_at_ms is not None


@pytest.mark.slow
async def test_the_runbook_sqlite_to_hybrid_with_real_servers(tmp_path) -> None:
    """Seed SQLite (with TTLs); mirror; migrate; verify; cut over; nothing lost, TTLs kept."""
    schema, table, prefix = f"abs_test_{uuid.uuid4().hex[:12]}", "kv_store", f"abs-test:{uuid.uuid4().hex}:"
    old = str(tmp_path / "ad_buyer.db")
    try:
        # 0. Today: everything in SQLite, some of it expiring.
        async with Storage(SQLiteBackend(old)) as before:
            await before.set_many({f"deal:{i}": {"n": i} for i in range(3000)})
            sessions_written = Elapsed()
            await before.set_many({f"session:{i}": {"n": i} for i in range(500)}, ttl=600)
            await before.set_many({f"quote:{i}": {"n": i} for i in range(200)}, ttl=3600)
        # 1. Enable the mirror: the app keeps running, writing to both.
        mirror = MirrorBackend(SQLiteBackend(old), postgres_and_redis(schema, table, prefix), shadow_reads=0.1)
        async with Storage(mirror) as app:
            writer_done = asyncio.Event()

            async def app_traffic() -> None:
                for i in range(300):
                    await app.set(f"deal:new{i}", {"n": i})
                    await app.update("deal:5", lambda d: {**d, "touched": d.get("touched", 0) + 1})
                writer_done.set()

            # 2. Backfill while the app writes.
            async with Storage(SQLiteBackend(old)) as src, Storage(postgres_and_redis(schema, table, prefix)) as dst:
                traffic = asyncio.create_task(app_traffic())
                report = await migrate(src, dst, batch_size=500)
                await traffic
                # Only a key the app changed while the copy ran may be "kept": the target's value
                # is newer than the copy's snapshot (the mirror wrote it), so it must not be overwritten.
                assert set(report.differing_keys) <= {"deal:5"}
                # 3. Verify: zero differences.
                result = await verify(src, dst)
                assert result.ok, (result.missing_on_target, result.different, result.extra_on_target)
                assert result.prefixes["deal:"][0] == 3300
            # During the backfill, shadow reads may meet keys the new store does not have yet;
            # once it is done, every read must agree (the runbook's "mismatches reach zero").
            mirror.shadow_reads, mirror.stats.shadow_mismatches = 1.0, 0
            for i in range(0, 3000, 10):
                await app.get(f"deal:{i}")
            await app.get("deal:5")
            assert mirror.stats.shadow_mismatches == 0
            assert mirror.stats.shadow_reads >= 300
        # 4. Cut over: the new store is the primary (the old one still mirrored, as a way back).
        new_store = postgres_and_redis(schema, table, prefix)
        async with Storage(MirrorBackend(new_store, SQLiteBackend(old))) as app:
            assert await app.count("deal:*") == 3300
            assert (await app.get("deal:5"))["touched"] == 300
            sessions_written.check_ttl(
                await app.ttl("session:42"), 600, "a session's TTL must survive the migration and the cut-over"
            )
            assert new_store.route_for("session:42").label == "fast"
        # 5. Drop the old store: the new one alone has everything.
        async with Storage(postgres_and_redis(schema, table, prefix)) as after:
            assert await after.count() == 3000 + 300 + 500 + 200
            await after.clear()
    finally:  # even when an assertion failed: leave nothing on the shared servers
        async with Storage(RedisBackend(REDIS_URL, key_prefix=prefix)) as redis:
            await redis.clear()
        drop_pg_schema(schema)


def test_mirror_is_selectable_by_settings(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("STORAGE_TYPE", "mirror")
    monkeypatch.setenv("MIRROR_PRIMARY", f"sqlite:///{tmp_path}/a.db")
    monkeypatch.setenv("MIRROR_SECONDARY", "memory")
    monkeypatch.setenv("MIRROR_ON_SECONDARY_FAILURE", "record")
    backend = get_storage_backend().backend
    assert isinstance(backend, MirrorBackend)
    assert backend.on_secondary_failure == "record"
    assert os.fspath(backend.repair_log).endswith("ad_buyer_mirror_repair.log")
