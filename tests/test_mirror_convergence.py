"""The mirror converges under concurrency, and the backfill never brings deleted keys back.

Once writers stop, the secondary holds exactly the primary's keys, values and expiries, with
writers in one process and in several processes (each with its own mirror), in both directions
of a move (SQLite -> PostgreSQL+Redis and back), without running ``mirror-repair``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ad_buyer_storage import BackendError, Storage, UnavailableError
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.composed.mirror import MirrorBackend
from ad_buyer_storage.kit.batches import results_or_raise
from tests._support import mirror_workload
from tests._support.convergence import differences
from tests._support.history import History
from tests._support.mirror_workload import Stores, assert_converged, backfill_racing_the_app, open_mirror, run_processes

DIRECTIONS = ["sqlite->hybrid", "hybrid->sqlite"]


@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_concurrent_writers_of_one_process_converge(move_stores: Stores, direction: str) -> None:
    mirror = open_mirror(move_stores.path, move_stores.schema, move_stores.prefix, direction)
    history = History()
    async with Storage(mirror) as storage:
        # The two races of the report: 200 increments of one counter, 200 sets racing 200 deletes.
        for _ in range(3):
            await asyncio.gather(*(storage.incr("rate_limit:hot") for _ in range(200)))
            await asyncio.gather(*(op for i in range(200) for op in (
                storage.set(f"deal:race{i}", {"i": i}), storage.delete(f"deal:race{i}"))))  # fmt: skip
        errors = await mirror_workload.run_workload(storage, history, "solo", operations=1200, tasks=16, seed=1)
        assert errors == []
        assert await storage.get("rate_limit:hot") == 600
        report = history.check(await history.final_state(storage))
        assert report.problems == [], report.problems[:5]
    await assert_converged(*move_stores.sides(direction))


@pytest.mark.slow
@pytest.mark.parametrize("direction", DIRECTIONS)
async def test_processes_with_their_own_mirrors_converge(move_stores: Stores, direction: str, tmp_path: Path) -> None:
    """3 processes x 8 tasks x 500 mixed writes on 60 keys, each process with its own mirror."""
    history = await run_processes(move_stores, direction, tmp_path, processes=3, operations=500 * 8)
    assert history.check({}).acknowledged > 3000
    await assert_converged(*move_stores.sides(direction))


@pytest.mark.slow
async def test_the_backfill_never_resurrects_what_the_app_deletes(move_stores: Stores) -> None:
    """The app deletes and writes through the mirror while ``migrate`` copies the old store."""
    race = await backfill_racing_the_app(move_stores, sessions=6000, deals=2000, deletes=1600, rewrites=300)
    assert race.report.scanned >= 8000 - 1600  # what the app deleted before the copy reached it is not seen


class _Flaky(MemoryBackend):
    down = False

    async def write(self, writes: Any) -> Any:
        if self.down:
            raise UnavailableError("secondary down")
        return await super().write(writes)

    async def remove(self, keys: Any) -> int:
        if self.down:
            raise UnavailableError("secondary down")
        return await super().remove(keys)


async def test_in_fail_mode_the_caller_hears_and_a_retry_converges() -> None:
    primary, secondary = MemoryBackend(), _Flaky()
    async with Storage(MirrorBackend(primary, secondary)) as storage:
        await storage.set("deal:1", {"v": 1})
        secondary.down = True
        with pytest.raises(UnavailableError):
            await storage.set("deal:1", {"v": 2})
        with pytest.raises(UnavailableError):
            await storage.delete("deal:1")
        secondary.down = False
        await storage.delete("deal:1")  # the retry
        await storage.set("deal:2", {"v": 2})
        async with Storage(primary) as a, Storage(secondary) as b:
            assert await differences(a, b) == []


class _Gated(MemoryBackend):
    """A secondary whose first write is held until released: an old copy that lands last."""

    def __init__(self) -> None:
        super().__init__()
        self.gate, self.held = asyncio.Event(), asyncio.Event()
        self.writes = 0

    async def write(self, writes: Any) -> Any:
        self.writes += 1
        if self.writes == 1:
            self.held.set()
            await self.gate.wait()
        return await super().write(writes)


@pytest.mark.parametrize("second", ["set", "delete", "expire"])
async def test_an_older_copy_landing_last_is_corrected(second: str) -> None:
    """Two mirrors on the same two stores (two processes, in effect): A's copy of its write is
    delayed until after B wrote the same key and copied it. The secondary must end with B's state."""
    primary, secondary = MemoryBackend(), _Gated()
    async with Storage(MirrorBackend(primary, secondary)) as a, Storage(MirrorBackend(primary, secondary)) as b:
        if second == "expire":
            secondary.writes = 1  # the gate is for A's second write
            await a.set("deal:1", {"by": "a"})
            secondary.writes = 0
        first = asyncio.create_task(a.set("deal:1", {"by": "a"}))
        await secondary.held.wait()  # A's copy is in flight, held
        if second == "set":
            await b.set("deal:1", {"by": "b"})
        elif second == "delete":
            await b.delete("deal:1")
        else:
            await b.expire("deal:1", 30)
        secondary.gate.set()  # A's older copy lands now, after B's
        await first
        async with Storage(primary) as left, Storage(secondary) as right:
            assert await differences(left, right) == []


class _Refusing(MemoryBackend):
    """Refuses the writes of some keys, item by item (as a store refusing one row does)."""

    def __init__(self, *refused: str) -> None:
        super().__init__()
        self.refused = set(refused)

    async def write(self, writes: Any) -> Any:
        outcomes: list[object] = []
        for w in writes:
            if w.key in self.refused:
                outcomes.append(BackendError(f"{w.key} refused"))
            else:
                outcomes += await super().write([w])
        return results_or_raise(outcomes)


async def test_a_secondary_refusing_part_of_a_copy_fails_the_batch_it_came_from() -> None:
    """The secondary's partial failure concerns the copy's batch, not the callers': they hear an
    error (fail mode) instead of waiting for ever on answers that never come."""
    primary, secondary = _Refusing("deal:p"), _Refusing("deal:s")
    async with Storage(MirrorBackend(primary, secondary)) as storage:
        first = asyncio.create_task(storage.set("deal:x", 0))  # in flight alone: the rest share a batch
        await asyncio.sleep(0)
        batch = [storage.set(key, 1) for key in ("deal:a", "deal:p", "deal:s")]
        outcomes = await asyncio.wait_for(asyncio.gather(first, *batch, return_exceptions=True), 5)
        assert isinstance(outcomes[0], str)
        assert all(isinstance(o, BackendError) for o in outcomes[1:]), outcomes
        secondary.refused.clear()
        await storage.set("deal:s", 1)  # the retry
        await storage.set("deal:a", 1)
        assert await secondary.read(["deal:a", "deal:s"]) == await primary.read(["deal:a", "deal:s"])
