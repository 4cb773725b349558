"""What a multi-key transaction costs, against the same transaction written on the raw driver.

Three workloads per backend (SQLite, Redis, PostgreSQL), each for ``storage.transaction()``
and for the driver's own idiom in the same run:

* ``tx 2 keys``: read a campaign, write it back and write an order (a booking);
* ``tx 10 keys``: read 10 keys, write the 10 back;
* ``contention x16``: 16 tasks booking against one campaign, retrying on conflict until done.

The raw references: aiosqlite ``BEGIN IMMEDIATE`` / SELECT / UPSERTs / ``COMMIT`` on one
connection (a lock keeps other tasks out of it); redis.asyncio ``WATCH`` / GET / ``MULTI`` /
SETs / ``EXEC``, retried on ``WatchError``; asyncpg ``SELECT ... FOR UPDATE`` and upserts in a
transaction (PostgreSQL blocks instead of failing, so it never retries).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from ad_buyer_storage import Storage, Transaction
from bench.subjects import POSTGRES_URL, REDIS_URL, RUN, _postgres, rate

Workload = Callable[[int], Awaitable[None]]


class _OursTx:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def book(self, i: int, campaign: str = "campaign:c1") -> None:
        async def body(tx: Transaction) -> None:
            current = await tx.get(campaign)
            tx.set(campaign, {**current, "spent": str(Decimal(current["spent"]) + 1)})
            tx.set(f"order:{i}", {"campaign": campaign, "amount": "1"})

        await self.storage.transact(body, attempts=10_000)

    async def ten(self, i: int) -> None:
        keys = [f"deal:{(i * 10 + k) % 200}" for k in range(10)]

        async def body(tx: Transaction) -> None:
            values = await tx.get_many(keys)
            for key in keys:
                tx.set(key, {**values[key], "n": values[key]["n"] + 1})

        await self.storage.transact(body, attempts=10_000)

    async def setup(self) -> None:
        await self.storage.set("campaign:c1", {"budget": "1000000", "spent": "0"})
        await self.storage.set_many({f"deal:{k}": {"n": 0} for k in range(200)})


class _RawSQLite:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = asyncio.Lock()  # one transaction at a time on the connection, as ours

    async def open(self) -> None:
        import aiosqlite

        self.conn = await aiosqlite.connect(self.path, isolation_level=None)
        await self.conn.execute("PRAGMA journal_mode = WAL")
        await self.conn.execute("PRAGMA synchronous = NORMAL")
        await self.conn.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    async def close(self) -> None:
        await self.conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.remove(self.path + suffix)

    async def _write(self, pairs: list[tuple[str, Any]]) -> None:
        values = ", ".join(["(?, ?)"] * len(pairs))
        params = [x for key, value in pairs for x in (key, orjson.dumps(value).decode())]
        await self.conn.execute(
            f"INSERT INTO kv (key, value) VALUES {values} ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params,
        )

    async def book(self, i: int, campaign: str = "campaign:c1") -> None:
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            rows = await self.conn.execute_fetchall("SELECT value FROM kv WHERE key = ?", (campaign,))
            current = orjson.loads(next(iter(rows))[0])
            spent = str(Decimal(current["spent"]) + 1)
            await self._write([(campaign, {**current, "spent": spent}), (f"order:{i}", {"amount": "1"})])
            await self.conn.execute("COMMIT")

    async def ten(self, i: int) -> None:
        keys = [f"deal:{(i * 10 + k) % 200}" for k in range(10)]
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            marks = ", ".join("?" * len(keys))
            rows = await self.conn.execute_fetchall(f"SELECT key, value FROM kv WHERE key IN ({marks})", keys)
            current = {key: orjson.loads(value) for key, value in rows}
            await self._write([(key, {**current[key], "n": current[key]["n"] + 1}) for key in keys])
            await self.conn.execute("COMMIT")

    async def setup(self) -> None:
        await self._write([("campaign:c1", {"budget": "1000000", "spent": "0"})])
        await self._write([(f"deal:{k}", {"n": 0}) for k in range(200)])


class _RawRedis:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    async def open(self) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(REDIS_URL, max_connections=64)

    async def close(self) -> None:
        keys = [k async for k in self.client.scan_iter(match=self.prefix + "*", count=1000)]
        if keys:
            await self.client.delete(*keys)
        await self.client.aclose()

    async def _optimistic(self, keys: list[str], writes: Callable[[list[Any]], dict[str, Any]]) -> None:
        import redis.exceptions

        full = [self.prefix + k for k in keys]
        while True:
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*full)
                    current = [orjson.loads(v) for v in await pipe.mget(full) if v is not None]
                    pipe.multi()  # type: ignore[no-untyped-call]
                    for key, value in writes(current).items():
                        pipe.set(self.prefix + key, orjson.dumps(value))
                    await pipe.execute()
                    return
                except redis.exceptions.WatchError:
                    continue

    async def book(self, i: int, campaign: str = "campaign:c1") -> None:
        def writes(current: list[Any]) -> dict[str, Any]:
            spent = str(Decimal(current[0]["spent"]) + 1)
            return {campaign: {**current[0], "spent": spent}, f"order:{i}": {"amount": "1"}}

        await self._optimistic([campaign], writes)

    async def ten(self, i: int) -> None:
        keys = [f"deal:{(i * 10 + k) % 200}" for k in range(10)]
        await self._optimistic(
            keys, lambda current: {k: {**v, "n": v["n"] + 1} for k, v in zip(keys, current, strict=True)}
        )

    async def setup(self) -> None:
        values = {f"deal:{k}": {"n": 0} for k in range(200)} | {"campaign:c1": {"budget": "1000000", "spent": "0"}}
        await self.client.mset({self.prefix + k: orjson.dumps(v) for k, v in values.items()})


class _RawPostgres:
    def __init__(self, schema: str) -> None:
        self.table = f'"{schema}".kv'
        self.schema = schema

    async def open(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(POSTGRES_URL, min_size=1, max_size=10)
        await self.pool.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        await self.pool.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (key text PRIMARY KEY, value json NOT NULL)")

    async def close(self) -> None:
        await self.pool.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        await self.pool.close()

    async def _transaction(self, keys: list[str], writes: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        upsert = (
            f"INSERT INTO {self.table} (key, value) SELECT * FROM unnest($1::text[], $2::json[]) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT key, value::text FROM {self.table} WHERE key = ANY($1) ORDER BY key FOR UPDATE", keys
            )
            new = writes({key: orjson.loads(value) for key, value in rows})
            ordered = sorted(new)
            await conn.execute(upsert, ordered, [orjson.dumps(new[k]).decode() for k in ordered])

    async def book(self, i: int, campaign: str = "campaign:c1") -> None:
        def writes(current: dict[str, Any]) -> dict[str, Any]:
            spent = str(Decimal(current[campaign]["spent"]) + 1)
            return {campaign: {**current[campaign], "spent": spent}, f"order:{i}": {"amount": "1"}}

        await self._transaction([campaign], writes)

    async def ten(self, i: int) -> None:
        keys = [f"deal:{(i * 10 + k) % 200}" for k in range(10)]
        await self._transaction(keys, lambda current: {k: {**v, "n": v["n"] + 1} for k, v in current.items()})

    async def setup(self) -> None:
        async with self.pool.acquire() as conn:
            keys = ["campaign:c1", *(f"deal:{k}" for k in range(200))]
            values = ['{"budget": "1000000", "spent": "0"}', *(['{"n": 0}'] * 200)]
            await conn.execute(
                f"INSERT INTO {self.table} (key, value) SELECT * FROM unnest($1::text[], $2::json[]) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                keys,
                values,
            )


def _ours(backend: str, tag: str) -> Storage:
    if backend == "sqlite":
        from ad_buyer_storage_sqlite import SQLiteBackend

        return Storage(SQLiteBackend(os.path.join(tempfile.gettempdir(), f"bench-tx-{tag}.db"), sweep_interval=None))
    if backend == "redis":
        from ad_buyer_storage_redis import RedisBackend

        return Storage(RedisBackend(REDIS_URL, key_prefix=f"bench-tx-{tag}:", max_connections=64))
    return Storage(_postgres(f"tx_{tag}"))


def _raw(backend: str, tag: str) -> Any:
    if backend == "sqlite":
        return _RawSQLite(os.path.join(tempfile.gettempdir(), f"bench-tx-raw-{tag}.db"))
    if backend == "redis":
        return _RawRedis(f"bench-tx-raw-{tag}:")
    return _RawPostgres(f"bench_{RUN}_txraw_{tag}")


async def transaction_costs(backends: list[str], n: int = 500, reps: int = 5) -> list[dict[str, Any]]:
    """Per backend and workload: transactions per second, ours and raw, and the time ratio."""
    rows: list[dict[str, Any]] = []
    for backend in [b for b in backends if b in ("sqlite", "redis", "postgres")]:
        tag = uuid.uuid4().hex[:8]
        storage, raw = _ours(backend, tag), _raw(backend, tag)
        await storage.connect()
        await raw.open()
        ours = _OursTx(storage)
        try:
            await ours.setup()
            await raw.setup()
            workloads: list[tuple[str, Callable[[Any], Workload], int]] = [
                ("tx 2 keys", lambda s: s.book, 1),
                ("tx 10 keys", lambda s: s.ten, 1),
                ("contention x16", lambda s: s.book, 16),
            ]
            for label, pick, concurrency in workloads:
                rates: dict[str, list[float]] = {"ours": [], "raw": []}
                for _ in range(reps):
                    for name, subject in (("ours", ours), ("raw", raw)):
                        rates[name].append(await rate(pick(subject), n, concurrency))
                mine, theirs = statistics.median(rates["ours"]), statistics.median(rates["raw"])
                rows.append({"backend": backend, "op": label, "ours_per_s": round(mine), "raw_per_s": round(theirs),
                             "ratio": round(theirs / mine, 2)})  # fmt: skip
                print(f"  {backend:<9} {label:<15} ours {mine:8.0f}/s  raw {theirs:8.0f}/s  ratio {theirs / mine:.2f}")
        finally:
            await storage.clear()
            await storage.aclose()
            await raw.close()
            if backend == "sqlite":
                for suffix in ("", "-wal", "-shm"):
                    path = os.path.join(tempfile.gettempdir(), f"bench-tx-{tag}.db{suffix}")
                    if os.path.exists(path):
                        os.remove(path)
    return rows


# -- fairness: processes booking against one budget, attempts per booking ---------------------


def _open_backend(recipe: tuple[str, str]) -> Any:
    kind, where = recipe
    if kind == "sqlite":
        from ad_buyer_storage_sqlite import SQLiteBackend

        return SQLiteBackend(where, sweep_interval=None)
    if kind == "redis":
        from ad_buyer_storage_redis import RedisBackend

        return RedisBackend(REDIS_URL, key_prefix=where)
    from ad_buyer_storage_postgres import PostgresBackend

    return PostgresBackend(POSTGRES_URL, schema=where, sweep_interval=None)


class _Counting(Storage):
    """A Storage whose transact() records how many attempts each call ran."""

    attempts: list[int]

    async def transact(self, fn: Callable[[Transaction], Awaitable[Any]], *, attempts: int = 10) -> Any:
        calls = 0

        async def counted(tx: Transaction) -> Any:
            nonlocal calls
            calls += 1
            return await fn(tx)

        try:
            return await super().transact(counted, attempts=attempts)
        finally:
            self.attempts.append(calls)


def _book_child(recipe: tuple[str, str], count: int, out: str) -> None:
    """A child process: *count* bookings of 10.00 with book_order's defaults; writes, per
    booking, its attempts and outcome (booked, refused: over budget, starved: conflict)."""
    from ad_buyer_storage.errors import BudgetExceededError, TransactionConflictError

    async def main() -> list[tuple[int, str]]:
        storage = _Counting(_open_backend(recipe))
        storage.attempts = []
        outcomes: list[str] = []
        async with storage:
            for i in range(count):
                try:
                    await storage.book_order(f"{os.getpid()}-{i}", {}, campaign_id="fair", amount="10.00")
                    outcomes.append("booked")
                except BudgetExceededError:
                    outcomes.append("refused")
                except TransactionConflictError:
                    outcomes.append("starved")
        return list(zip(storage.attempts, outcomes, strict=True))

    with open(out, "wb") as f:
        f.write(orjson.dumps(asyncio.run(main())))


async def booking_fairness(
    backends: list[str], processes: tuple[int, ...] = (4, 16), bookings: int = 160
) -> list[dict[str, Any]]:
    """Per backend and number of processes: *bookings* in all, of 10.00 against one 1,000.00
    budget, each with ``book_order``'s default attempts. Attempts per commit, the share of
    bookings (booked or refused) that took 1, 2 and 3+ attempts, and how many starved
    (TransactionConflictError after the default attempts)."""
    import multiprocessing

    rows: list[dict[str, Any]] = []
    for backend in [b for b in backends if b in ("sqlite", "redis", "postgres")]:
        for count in processes:
            tag = uuid.uuid4().hex[:8]
            where = {
                "sqlite": os.path.join(tempfile.gettempdir(), f"bench-fair-{tag}.db"),
                "redis": f"bench-fair-{tag}:",
                "postgres": f"bench_{RUN}_fair_{tag}",
            }[backend]
            recipe = (backend, where)
            outs = [os.path.join(tempfile.gettempdir(), f"bench-fair-{tag}-{i}.json") for i in range(count)]
            async with Storage(_open_backend(recipe)) as storage:
                await storage.set_campaign("fair", {"budget": "1000.00", "spent": "0"})
                ctx = multiprocessing.get_context("spawn")
                children = [ctx.Process(target=_book_child, args=(recipe, bookings // count, o)) for o in outs]
                for child in children:
                    child.start()
                loop = asyncio.get_running_loop()
                for child in children:
                    await loop.run_in_executor(None, child.join)
                spent = (await storage.get_campaign("fair") or {}).get("spent")
                await storage.clear()
            results = [tuple(r) for o in outs for r in orjson.loads(Path(o).read_bytes())]
            for o in outs:
                os.remove(o)
            if backend == "sqlite":
                for suffix in ("", "-wal", "-shm", "-turns"):
                    if os.path.exists(where + suffix):
                        os.remove(where + suffix)
            attempts = [a for a, _ in results]
            committed = [a for a, outcome in results if outcome == "booked"]
            commits = len(committed)
            share = {k: sum(1 for a in attempts if (a >= 3 if k == 3 else a == k)) / len(attempts) for k in (1, 2, 3)}
            row = {"backend": backend, "processes": count, "bookings": len(results), "booked": commits,
                   "refused": sum(1 for _, o in results if o == "refused"),
                   "starved": sum(1 for _, o in results if o == "starved"),
                   "attempts_per_commit": round(sum(committed) / max(commits, 1), 2),
                   "one": round(share[1], 3), "two": round(share[2], 3), "three_plus": round(share[3], 3),
                   "max_attempts": max(attempts), "spent": spent}  # fmt: skip
            rows.append(row)
            print(f"  {backend:<9} x{count:<3} attempts/commit {row['attempts_per_commit']:5.2f}  1: {share[1]:.0%}"
                  f"  2: {share[2]:.0%}  3+: {share[3]:.0%}  max {row['max_attempts']}  starved {row['starved']}"
                  f"  spent {spent}", flush=True)  # fmt: skip
    return rows
