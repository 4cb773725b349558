"""The mirror and the backfill under load (M1, M2) and with the new store failing (M3).

M1: several processes, each with its own mirror, write the same hot keys; once they stop, the
secondary equals the primary (keys, values, expiries), with no ``mirror-repair``.
M2: ``migrate`` at full size while the app deletes and rewrites through the mirror: nothing
deleted comes back, nothing rewritten is overwritten, ``verify`` agrees.
M3: the secondary's Redis is killed and restarted mid-traffic in ``record`` mode: the app sees
no error, and ``mirror-repair`` alone brings the secondary back to the primary's state.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ad_buyer_storage import Storage
from ad_buyer_storage.composed import HybridBackend
from ad_buyer_storage.composed.mirror import MirrorBackend
from ad_buyer_storage.ops.repair import repair
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.convergence import differences
from tests._support.figures import record
from tests._support.mirror_workload import (
    Stores,
    Writers,
    assert_converged,
    backfill_racing_the_app,
    run_processes,
)
from tests._support.recipes import seed_routes
from tests._support.servers import redis_server
from tests._support.shared import POSTGRES_URL

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("direction", ["sqlite->hybrid", "hybrid->sqlite"])
async def test_m1_four_processes_through_their_own_mirrors_converge(move_stores: Stores, direction: str,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    started = time.monotonic()
    history = await run_processes(move_stores, direction, tmp_path, processes=4, operations=1000 * 8)
    seconds = time.monotonic() - started
    await assert_converged(*move_stores.sides(direction))
    report = history.check({})
    primary, secondary = direction.replace("hybrid", "PostgreSQL+Redis").replace("sqlite", "SQLite").split("->")
    record("M1", f"{primary} -> {secondary}: 4 processes x 8 tasks, each with its own mirror, {report.operations:,} "
                 f"mixed writes on 60 hot keys ({report.acknowledged:,} acknowledged, 0 errors) in {seconds:.1f} s; "
                 "after they stopped: 0 divergent keys, values, expiries (TTL within 2 s), no repair")  # fmt: skip


async def test_m2_the_full_size_backfill_never_resurrects_deleted_keys(move_stores: Stores) -> None:
    race = await backfill_racing_the_app(move_stores, sessions=20_000, deals=5_000, deletes=5_000, rewrites=1_000)
    record("M2", f"migrate of {race.report.scanned:,} keys SQLite -> PostgreSQL+Redis in {race.report.seconds:.1f} s "
                 f"while the app deleted {race.deleted:,} and rewrote {race.rewritten:,} through the mirror: "
                 f"{race.report.recopied} key(s) copied again because they changed mid-copy, 0 deleted keys back, "
                 "0 rewrites overwritten, verify ok, a second migrate copied 0")  # fmt: skip


def open_recording_mirror(path: str, redis_url: str, schema: str, repair_log: str) -> MirrorBackend:
    """Child-process recipe: SQLite mirrored to PostgreSQL + a private Redis, in record mode."""
    return MirrorBackend(SQLiteBackend(path, sweep_interval=None), _secondary(redis_url, schema),
                         on_secondary_failure="record", repair_log=repair_log)  # fmt: skip


def _secondary(redis_url: str, schema: str) -> HybridBackend:
    redis = RedisBackend(redis_url, connect_timeout=1, command_timeout=1, max_connections=16)
    postgres = PostgresBackend(POSTGRES_URL, schema=schema, pool_max=10, sweep_interval=None)
    return HybridBackend(seed_routes(redis, postgres))


async def test_m3_a_secondary_killed_mid_traffic_is_repaired_from_the_record(tmp_path: Path, pg_schema: str) -> None:
    aof = ("--appendonly", "yes", "--appendfsync", "always")  # its restart keeps what it acknowledged
    with redis_server(tmp_path / "redis", *aof) as server:
        path, repair_log = str(tmp_path / "old.db"), str(tmp_path / "repair.log")
        recipe = ("tests.test_faults_mirror:open_recording_mirror", (path, server.url, pg_schema, repair_log))
        mirror = open_recording_mirror(*recipe[1])
        async with Storage(mirror) as app:
            await app.set_many({f"deal:old{i}": {"n": i} for i in range(200)})
            writers = Writers(recipe, tmp_path, processes=3, seconds=5.0)
            await writers.started()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.kill)
            # Keys touched only during the outage: nothing but the repair copies them again.
            for i in range(100):
                await app.set(f"session:outage{i}", {"n": i}, ttl=600)
                await app.delete(f"deal:old{i}")
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.start)
            # Same-key races from this process too, while the writers go on.
            for _ in range(6):
                await asyncio.gather(*(app.incr("rate_limit:hot") for _ in range(200)))
                await asyncio.gather(*(op for i in range(200) for op in (
                    app.set(f"deal:race{i}", {"i": i}), app.delete(f"deal:race{i}"))))  # fmt: skip
            history = await writers.finished()  # record mode: no writer heard of the outage
            secondary = Storage(_secondary(server.url, pg_schema))
            async with Storage(SQLiteBackend(path, sweep_interval=None)) as primary, secondary:
                diverged = len(await differences(primary, secondary))
            assert diverged > 0, "nothing diverged: the fault did not hit the traffic"
            recorded = len((await asyncio.to_thread(Path(repair_log).read_text)).splitlines())
            repaired = await repair(mirror)
        await assert_converged(SQLiteBackend(path, sweep_interval=None), _secondary(server.url, pg_schema))
        async with Storage(_secondary(server.url, pg_schema)) as b:
            await b.clear()
    record("M3", f"secondary's Redis killed -9 and restarted 1.5 s later under 3 processes x 8 tasks of mirror traffic "
                 f"(record mode): {history.check({}).acknowledged:,} acknowledged writes, 0 errors seen by the app, "
                 f"{recorded:,} copies recorded, {diverged} keys divergent before mirror-repair, "
                 f"{repaired} keys repaired, 0 divergent after")  # fmt: skip
