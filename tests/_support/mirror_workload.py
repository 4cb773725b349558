"""A mixed workload through a mirror, for convergence tests (run in-process or in spawned children).

Every kind of write the contract has, on a small set of hot keys so that writers collide:
``set`` (with and without TTL), ``delete``, ``incr`` (int and Decimal), ``update``, versioned
writes, ``set_many``/``delete_many``, ``expire``/``persist``. ``set``/``delete``/``incr`` go
through a :class:`~tests.history.History` so the primary can be checked too.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from ad_buyer_storage import Storage
from ad_buyer_storage.composed.mirror import MirrorBackend
from ad_buyer_storage.contract.protocol import StorageBackend
from ad_buyer_storage.errors import StorageError, VersionConflictError
from ad_buyer_storage.ops.migrate import MigrationReport, migrate, verify
from ad_buyer_storage.testing.harness import load_callable
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.convergence import differences
from tests._support.history import History, Operation
from tests._support.recipes import postgres_and_redis

# 60 keys: durable ones (deal:, campaign:) and ephemeral ones (session:, rate_limit:), so a hybrid
# store sees both of its routes.
DEALS = [f"deal:{i}" for i in range(24)]
SESSIONS = [f"session:{i}" for i in range(16)]
COUNTERS = [f"rate_limit:{i}" for i in range(10)]
BUDGETS = [f"campaign:{i}" for i in range(10)]
KEYS = DEALS + SESSIONS + COUNTERS + BUDGETS


@dataclass(frozen=True)
class Stores:
    """An SQLite file and a PostgreSQL+Redis namespace: the two sides of a move."""

    path: str
    schema: str
    prefix: str

    def sqlite(self) -> SQLiteBackend:
        return SQLiteBackend(self.path, sweep_interval=None)

    def hybrid(self) -> StorageBackend:
        return postgres_and_redis(self.schema, "kv_store", self.prefix)

    def sides(self, direction: str) -> tuple[StorageBackend, StorageBackend]:
        """(primary, secondary) for ``"sqlite->hybrid"`` (the move) or ``"hybrid->sqlite"`` (after the switch)."""
        return (self.sqlite(), self.hybrid()) if direction == "sqlite->hybrid" else (self.hybrid(), self.sqlite())


def open_mirror(path: str, schema: str, prefix: str, direction: str, mode: str = "fail") -> MirrorBackend:
    """Child-process recipe: the mirror of one direction of the move."""
    return MirrorBackend(*Stores(path, schema, prefix).sides(direction), on_secondary_failure=mode)


async def assert_converged(primary: StorageBackend, secondary: StorageBackend) -> None:
    """The secondary holds exactly the primary's keys, values and expiries (and verify agrees)."""
    async with Storage(primary) as a, Storage(secondary) as b:
        found = await differences(a, b)
        assert found == [], f"{len(found)} difference(s) after quiescence: {found[:8]}"
        assert (await verify(a, b)).ok


def _touch(deal: Any) -> Any:
    return {**deal, "touched": deal.get("touched", 0) + 1} if isinstance(deal, dict) else {"touched": 1}


async def one_operation(storage: Storage, history: History, who: str, rng: random.Random) -> None:
    roll = rng.random()
    deal, session = rng.choice(DEALS), rng.choice(SESSIONS)
    if roll < 0.18:
        await history.set(storage, who, deal, {"who": who, "n": rng.randrange(10**6)})
    elif roll < 0.28:
        await history.delete(storage, who, deal)
    elif roll < 0.40:
        await history.incr(storage, who, rng.choice(COUNTERS))
    elif roll < 0.48:
        await history.incr(storage, who, rng.choice(BUDGETS), Decimal("0.10"))
    elif roll < 0.56:
        await history.update(storage, who, deal, _touch, default={})
    elif roll < 0.62:
        held = await storage.get_versioned(deal)
        if held is not None:
            value = {"versioned_by": who, "n": rng.randrange(10**6)}
            op = Operation(who, "set", deal, value, time.monotonic())
            try:
                await history._run(op, lambda: storage.set(deal, value, if_version=held.version, keep_ttl=True))
            except VersionConflictError:
                history.operations.remove(op)  # refused: it wrote nothing
    elif roll < 0.70:
        await history.set_many(storage, who, {k: {"bulk": who, "n": rng.randrange(100)} for k in rng.sample(DEALS, 3)})
    elif roll < 0.75:
        await history.delete_many(storage, who, rng.sample(DEALS, 3))
    elif roll < 0.86:
        await storage.set(session, {"buyer": who}, ttl=rng.choice([60, 300, 3600]))
    elif roll < 0.90:
        await storage.expire(session, rng.choice([120, 900]))
    elif roll < 0.93:
        await storage.persist(session)
    elif roll < 0.97:
        await storage.delete(session)
    else:
        await storage.expire(deal, 600)


async def run_workload(storage: Storage, history: History, who: str, *, operations: int, tasks: int,
                       seed: int, until: float | None = None) -> list[str]:  # fmt: skip
    """*tasks* concurrent tasks doing *operations* in all, or until the wall clock reads *until*;
    returns the errors met (type: message)."""
    errors: list[str] = []

    async def task(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        done = 0
        while time.time() < until if until is not None else done < operations // tasks:
            done += 1
            try:
                await one_operation(storage, history, f"{who}.{n}", rng)
            except StorageError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(task(n) for n in range(tasks)))
    return errors


def child(recipe: tuple[str, tuple[Any, ...]], who: str, seed: int, operations: int, tasks: int, out: str,
          start_at: float, until: float | None) -> None:  # fmt: skip
    """Spawned child: open the mirror from *recipe*, wait for *start_at* (wall clock, shared by the
    children), run the workload, dump history and errors to *out*."""

    async def main() -> dict[str, Any]:
        history = History()
        async with Storage(load_callable(recipe[0])(*recipe[1])) as storage:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            started = time.monotonic()
            errors = await run_workload(storage, history, who, operations=operations, tasks=tasks, seed=seed,
                                        until=until)  # fmt: skip
            elapsed = time.monotonic() - started
        return {"errors": errors, "seconds": elapsed, "operations": [op.__dict__ for op in history.operations]}

    Path(out).write_text(json.dumps(asyncio.run(main()), default=str))


def load_history(paths: list[Path]) -> tuple[History, list[str], float]:
    """Merge the children's histories (CLOCK_MONOTONIC is shared by every process of the host)."""
    history, errors, slowest = History(), [], 0.0
    for path in paths:
        data = json.loads(path.read_text())
        errors += data["errors"]
        slowest = max(slowest, data["seconds"])
        for op in data["operations"]:
            if op["kind"] == "incr" and isinstance(op["value"], str):
                op["value"] = Decimal(op["value"])  # sent as text: Decimal is not JSON
            history.operations.append(Operation(**op))
    return history, errors, slowest


class Writers:
    """Spawned writer processes, each with the backend a recipe builds, starting at one instant."""

    def __init__(self, recipe: tuple[str, tuple[Any, ...]], tmp: Path, *, processes: int, operations: int = 0,
                 seconds: float | None = None, tasks: int = 8) -> None:  # fmt: skip
        self.outputs = [tmp / f"writer{n}.json" for n in range(processes)]
        self.start_at = time.time() + 4  # after every child's imports
        until = None if seconds is None else self.start_at + seconds
        ctx = multiprocessing.get_context("spawn")
        self.children = [
            ctx.Process(target=child, args=(recipe, f"p{n}", n, operations, tasks, str(out), self.start_at, until))
            for n, out in enumerate(self.outputs)
        ]
        for proc in self.children:
            proc.start()

    async def started(self) -> None:
        await asyncio.sleep(max(0.0, self.start_at - time.time()))

    async def finished(self) -> History:
        """Wait for every writer; fail unless each exited cleanly and every write went through."""
        loop = asyncio.get_running_loop()
        for proc in self.children:
            await loop.run_in_executor(None, proc.join, 300)
            assert proc.exitcode == 0, f"a writer process ended with exit code {proc.exitcode}"
        history, errors, _ = load_history(self.outputs)
        assert errors == [], errors[:5]  # no deadlock, no "database is locked", no outage seen
        return history


async def run_processes(stores: Stores, direction: str, tmp: Path, *, processes: int, operations: int) -> History:
    """*processes* writers, each with its own mirror; the primary checked against their history."""
    async with Storage(open_mirror(stores.path, stores.schema, stores.prefix, direction)):
        pass  # create the tables once, as a deployed app would have
    recipe = ("tests._support.mirror_workload:open_mirror", (stores.path, stores.schema, stores.prefix, direction))
    history = await Writers(recipe, tmp, processes=processes, operations=operations).finished()
    async with Storage(stores.sides(direction)[0]) as primary:
        report = history.check(await history.final_state(primary))
        assert report.problems == [], report.problems[:5]
    return history


@dataclass
class BackfillRace:
    report: MigrationReport
    deleted: int
    rewritten: int
    seconds: float


async def backfill_racing_the_app(stores: Stores, *, sessions: int, deals: int, deletes: int,
                                  rewrites: int) -> BackfillRace:  # fmt: skip
    """Seed SQLite, then run ``migrate`` to PostgreSQL+Redis while the app deletes *deletes* keys
    and rewrites *rewrites* deals through the mirror. Asserts nothing deleted came back, rewritten
    keys kept the app's value, verify agrees, and a second migrate is a no-op."""
    async with Storage(stores.sqlite()) as old:
        await old.set_many({f"session:{i}": {"buyer": i} for i in range(sessions)}, ttl=3600)
        await old.set_many({f"deal:{i}": {"n": i} for i in range(deals)})
    rng = random.Random(12)
    share = deletes * sessions // (sessions + deals)
    doomed = rng.sample([f"session:{i}" for i in range(sessions)], share)
    doomed += rng.sample([f"deal:{i}" for i in range(deals)], deletes - share)
    spared = sorted(set(f"deal:{i}" for i in range(deals)) - set(doomed))
    rewritten = rng.sample(spared, rewrites)
    async with Storage(open_mirror(stores.path, stores.schema, stores.prefix, "sqlite->hybrid")) as app:
        copying = asyncio.Event()

        async def app_traffic() -> None:
            await copying.wait()
            rounds = -(-len(doomed) // 8)
            per_round = -(-rewrites // rounds)
            for n, start in enumerate(range(0, len(doomed), 8)):
                await asyncio.gather(*(app.delete(k) for k in doomed[start : start + 8]))
                batch = rewritten[n * per_round : (n + 1) * per_round]
                await asyncio.gather(*(app.set(k, {"rewritten": True}) for k in batch))

        async with Storage(stores.sqlite()) as source, Storage(stores.hybrid()) as target:

            def started(done: int, total: int | None) -> None:
                copying.set()

            began = time.monotonic()
            traffic = asyncio.create_task(app_traffic())
            report = await migrate(source, target, batch_size=250, progress=started)
            await traffic
            seconds = time.monotonic() - began
            back = [k for k in doomed if await target.exists(k)]
            assert back == [], f"{len(back)} deleted key(s) came back on the target: {back[:5]}"
            kept = await target.get_many(rewritten)
            assert all(v == {"rewritten": True} for v in kept.values())
            assert len(kept) == len(rewritten)
            result = await verify(source, target)
            assert result.ok, (result.missing_on_target[:5], result.extra_on_target[:5], result.different[:5])
            again = await migrate(source, target, batch_size=1000)
            assert (again.copied, again.kept_on_target) == (0, 0)  # idempotent
    await assert_converged(stores.sqlite(), stores.hybrid())
    return BackfillRace(report, len(doomed), len(rewritten), seconds)
