"""What the benchmark drives: our storage, the raw driver used its best idiomatic way, and the
nearest public peer (py-key-value-aio), all behind the same small async interface.

Every subject stores the same JSON document under the same keys, in its own namespace
(unique key prefix, schema or table), and removes it all in ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ad_buyer_storage import Storage
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.composed import HybridBackend, Route
from ad_buyer_storage.contract import escape_glob
from ad_buyer_storage.contract.glob import prefix_upper_bound
from ad_buyer_storage.domain.entities import default_routes

REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
#: In every PostgreSQL schema and table name of this run, so that its clean-up drops only its own
#: (another run on the same server keeps its schemas).
RUN = uuid.uuid4().hex[:6]


class Subject:
    """The operations the benchmark times. Values are dicts; keys are str."""

    label = ""

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # What a subject does not offer raises, and the runner leaves that cell empty.
    async def get(self, key: str) -> Any:
        raise NotImplementedError

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        raise NotImplementedError

    async def exists(self, key: str) -> bool:
        raise NotImplementedError

    async def delete(self, key: str) -> None:
        raise NotImplementedError

    async def get_many(self, keys: list[str]) -> Any:
        raise NotImplementedError

    async def set_many(self, items: dict[str, Any]) -> None:
        raise NotImplementedError

    async def list_prefix(self, prefix: str) -> list[str]:
        raise NotImplementedError

    async def delete_prefix(self, prefix: str) -> int:
        raise NotImplementedError

    async def incr(self, key: str) -> int:
        raise NotImplementedError


async def rate(call: Callable[[int], Awaitable[Any]], n: int, concurrency: int) -> float:
    """Calls per second of *call(0..n-1)* spread over *concurrency* tasks."""

    async def worker(w: int) -> None:
        for i in range(w, n, concurrency):
            await call(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return n / (time.perf_counter() - started)


class Ours(Subject):
    def __init__(self, backend: Any, label: str, file: str | None = None) -> None:
        self.storage = Storage(backend)
        self.label = label
        self.file = file  # a SQLite subject's database, removed with its WAL files on close

    async def open(self) -> None:
        await self.storage.connect()

    async def close(self) -> None:
        await self.storage.clear()
        await self.storage.aclose()
        for suffix in ("", "-wal", "-shm") if self.file else ():
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{self.file}{suffix}")

    async def get(self, key: str) -> Any:
        return await self.storage.get(key)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self.storage.set(key, value, ttl)

    async def exists(self, key: str) -> bool:
        return await self.storage.exists(key)

    async def delete(self, key: str) -> None:
        await self.storage.delete(key)

    async def get_many(self, keys: list[str]) -> Any:
        return await self.storage.get_many(keys)

    async def set_many(self, items: dict[str, Any]) -> None:
        await self.storage.set_many(items)

    async def list_prefix(self, prefix: str) -> list[str]:
        return await self.storage.keys(escape_glob(prefix) + "*")

    async def delete_prefix(self, prefix: str) -> int:
        return await self.storage.delete_pattern(escape_glob(prefix) + "*")

    async def incr(self, key: str) -> int:
        return await self.storage.incr(key)


def ours(backend_name: str) -> Ours:
    tag = uuid.uuid4().hex[:10]
    if backend_name == "memory":
        return Ours(MemoryBackend(), "ours")
    if backend_name == "sqlite":
        from ad_buyer_storage_sqlite import SQLiteBackend

        path = os.path.join(tempfile.gettempdir(), f"bench-{tag}.db")
        return Ours(SQLiteBackend(path, sweep_interval=None), "ours", path)
    if backend_name == "redis":
        from ad_buyer_storage_redis import RedisBackend

        return Ours(RedisBackend(REDIS_URL, key_prefix=f"bench-{tag}:", max_connections=64), "ours")
    if backend_name == "postgres":
        return Ours(_postgres(tag), "ours")
    if backend_name == "hybrid":
        from ad_buyer_storage_redis import RedisBackend

        fast, durable = RedisBackend(REDIS_URL, key_prefix=f"bench-{tag}:"), _postgres(tag)
        routes = [Route(p, fast if t == "fast" else durable, t) for p, t in default_routes("fast", "durable").items()]
        return Ours(HybridBackend(routes), "ours")
    raise ValueError(backend_name)


def _postgres(tag: str) -> Any:
    from ad_buyer_storage_postgres import PostgresBackend

    return PostgresBackend(POSTGRES_URL, schema=f"bench_{RUN}_{tag}", sweep_interval=None, pool_max=10)


async def drop_postgres_schemas() -> None:
    """Drop the schemas and tables this run made."""
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        for (name,) in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"bench_{RUN}_%"):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        for (name,) in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE $1", f"bench_peer_{RUN}_%"
        ):
            await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    finally:
        await conn.close()


# -- raw drivers, each used its best idiomatic way -------------------------------------------
class RawMemory(Subject):
    label = "raw"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> Any:
        raw = self.data.get(key)
        return None if raw is None else orjson.loads(raw)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self.data[key] = orjson.dumps(value)

    async def exists(self, key: str) -> bool:
        return key in self.data

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)

    async def get_many(self, keys: list[str]) -> Any:
        return {k: orjson.loads(v) for k in keys if (v := self.data.get(k)) is not None}

    async def set_many(self, items: dict[str, Any]) -> None:
        self.data.update({k: orjson.dumps(v) for k, v in items.items()})

    async def list_prefix(self, prefix: str) -> list[str]:
        return sorted(k for k in self.data if k.startswith(prefix))

    async def delete_prefix(self, prefix: str) -> int:
        gone = [k for k in self.data if k.startswith(prefix)]
        for k in gone:
            del self.data[k]
        return len(gone)

    async def incr(self, key: str) -> int:
        value = orjson.loads(self.data.get(key, b"0")) + 1
        self.data[key] = orjson.dumps(value)
        return int(value)


class RawSQLite(Subject):
    """aiosqlite: WAL, one statement per call (execute_fetchall: one thread hop), multi-row inserts."""

    label = "raw"

    async def open(self) -> None:
        import aiosqlite

        self.path = os.path.join(tempfile.gettempdir(), f"bench-raw-{uuid.uuid4().hex[:10]}.db")
        self.conn = await aiosqlite.connect(self.path, isolation_level=None)
        for sql in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                    "CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL, exp INTEGER)"):  # fmt: skip
            await self.conn.execute_fetchall(sql)

    async def close(self) -> None:
        await self.conn.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.remove(self.path + suffix)

    async def get(self, key: str) -> Any:
        rows = await self.conn.execute_fetchall("SELECT v FROM kv WHERE k = ?", (key,))
        return orjson.loads(rows[0][0]) if rows else None  # type: ignore[index]

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        exp = None if ttl is None else int(ttl * 1000)
        await self.conn.execute_fetchall(
            "INSERT INTO kv (k, v, exp) VALUES (?, ?, ?) "
            "ON CONFLICT(k) DO UPDATE SET v = excluded.v, exp = excluded.exp",
            (key, orjson.dumps(value).decode(), exp),
        )

    async def exists(self, key: str) -> bool:
        return bool(await self.conn.execute_fetchall("SELECT 1 FROM kv WHERE k = ?", (key,)))

    async def delete(self, key: str) -> None:
        await self.conn.execute_fetchall("DELETE FROM kv WHERE k = ?", (key,))

    async def get_many(self, keys: list[str]) -> Any:
        marks = ",".join("?" * len(keys))
        rows = await self.conn.execute_fetchall(f"SELECT k, v FROM kv WHERE k IN ({marks})", keys)
        return {k: orjson.loads(v) for k, v in rows}

    async def set_many(self, items: dict[str, Any]) -> None:
        rows = list(items.items())
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            params = [p for k, v in chunk for p in (k, orjson.dumps(v).decode())]
            values = ",".join(["(?, ?)"] * len(chunk))
            await self.conn.execute_fetchall(
                f"INSERT INTO kv (k, v) VALUES {values} ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                params,
            )

    async def list_prefix(self, prefix: str) -> list[str]:
        rows = await self.conn.execute_fetchall(
            "SELECT k FROM kv WHERE k >= ? AND k < ? ORDER BY k", (prefix, prefix_upper_bound(prefix))
        )
        return [r[0] for r in rows]

    async def delete_prefix(self, prefix: str) -> int:
        rows = await self.conn.execute_fetchall(
            "DELETE FROM kv WHERE k >= ? AND k < ? RETURNING 1", (prefix, prefix_upper_bound(prefix))
        )
        return len(list(rows))

    async def incr(self, key: str) -> int:
        rows = await self.conn.execute_fetchall(
            "INSERT INTO kv (k, v) VALUES (?, '1') ON CONFLICT(k) DO UPDATE SET v = CAST(v AS INTEGER) + 1 RETURNING v",
            (key,),
        )
        return int(next(iter(rows))[0])


class RawRedis(Subject):
    """redis.asyncio: GET/SET PX/MGET/MSET, SCAN MATCH, pipelined UNLINK, INCR."""

    label = "raw"

    async def open(self) -> None:
        import redis.asyncio as aioredis

        self.prefix = f"bench-raw-{uuid.uuid4().hex[:10]}:"
        # A blocking pool, as for ours: redis-py's default pool raises past max_connections.
        pool = aioredis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=64, timeout=10)
        self.client = aioredis.Redis(connection_pool=pool)

    async def close(self) -> None:
        await self.delete_prefix("")
        await self.client.aclose()
        await self.client.connection_pool.disconnect()

    async def get(self, key: str) -> Any:
        raw = await self.client.get(self.prefix + key)
        return None if raw is None else orjson.loads(raw)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self.client.set(self.prefix + key, orjson.dumps(value), px=None if ttl is None else int(ttl * 1000))

    async def exists(self, key: str) -> bool:
        return bool(await self.client.exists(self.prefix + key))

    async def delete(self, key: str) -> None:
        await self.client.delete(self.prefix + key)

    async def get_many(self, keys: list[str]) -> Any:
        values = await self.client.mget([self.prefix + k for k in keys])
        return {k: orjson.loads(v) for k, v in zip(keys, values, strict=True) if v is not None}

    async def set_many(self, items: dict[str, Any]) -> None:
        await self.client.mset({self.prefix + k: orjson.dumps(v) for k, v in items.items()})

    async def list_prefix(self, prefix: str) -> list[str]:
        cut = len(self.prefix)
        keys = {k async for k in self.client.scan_iter(match=self.prefix + prefix + "*", count=1000)}
        return sorted(k.decode()[cut:] for k in keys)

    async def delete_prefix(self, prefix: str) -> int:
        batch, total = [], 0
        async for key in self.client.scan_iter(match=self.prefix + prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                total += await self.client.unlink(*batch)
                batch = []
        if batch:
            total += await self.client.unlink(*batch)
        return total

    async def incr(self, key: str) -> int:
        return int(await self.client.incr(self.prefix + key))


class RawPostgres(Subject):
    """asyncpg pool, JSONB codec registered, = ANY($1) reads and unnest upserts."""

    label = "raw"

    async def open(self) -> None:
        import asyncpg

        self.table = f"bench_raw_{RUN}_{uuid.uuid4().hex[:10]}"

        async def init(conn: Any) -> None:
            await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                                      schema="pg_catalog")  # fmt: skip

        self.pool = await asyncpg.create_pool(POSTGRES_URL, min_size=2, max_size=10, init=init)
        await self.pool.execute(
            f'CREATE TABLE "{self.table}" (k text COLLATE "C" PRIMARY KEY, v jsonb NOT NULL, exp timestamptz)'
        )

    async def close(self) -> None:
        await self.pool.execute(f'DROP TABLE "{self.table}"')
        await self.pool.close()

    async def get(self, key: str) -> Any:
        return await self.pool.fetchval(f'SELECT v FROM "{self.table}" WHERE k = $1', key)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self.pool.execute(
            f'INSERT INTO "{self.table}" (k, v, exp) VALUES ($1, $2, CASE WHEN $3::float8 IS NULL THEN NULL '
            "ELSE now() + $3::float8 * interval '1 second' END) ON CONFLICT (k) DO UPDATE SET v = excluded.v, "
            "exp = excluded.exp",
            key, value, ttl,
        )  # fmt: skip

    async def exists(self, key: str) -> bool:
        return bool(await self.pool.fetchval(f'SELECT 1 FROM "{self.table}" WHERE k = $1', key))

    async def delete(self, key: str) -> None:
        await self.pool.execute(f'DELETE FROM "{self.table}" WHERE k = $1', key)

    async def get_many(self, keys: list[str]) -> Any:
        rows = await self.pool.fetch(f'SELECT k, v FROM "{self.table}" WHERE k = ANY($1::text[])', keys)
        return {k: v for k, v in rows}

    async def set_many(self, items: dict[str, Any]) -> None:
        await self.pool.execute(
            f'INSERT INTO "{self.table}" (k, v) SELECT * FROM unnest($1::text[], $2::jsonb[]) '
            "ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            list(items), list(items.values()),
        )  # fmt: skip

    async def list_prefix(self, prefix: str) -> list[str]:
        rows = await self.pool.fetch(
            f'SELECT k FROM "{self.table}" WHERE k >= $1 AND k < $2 ORDER BY k',
            prefix,
            prefix_upper_bound(prefix),
        )
        return [r[0] for r in rows]

    async def delete_prefix(self, prefix: str) -> int:
        result = await self.pool.execute(
            f'DELETE FROM "{self.table}" WHERE k >= $1 AND k < $2',
            prefix,
            prefix_upper_bound(prefix),
        )
        return int(result.split()[-1])

    async def incr(self, key: str) -> int:
        return int(await self.pool.fetchval(
            f'INSERT INTO "{self.table}" (k, v) VALUES ($1, to_jsonb(1)) ON CONFLICT (k) DO UPDATE SET '
            f'v = to_jsonb(("{self.table}".v #>> \'{{}}\')::bigint + 1) RETURNING (v #>> \'{{}}\')::bigint', key,
        ))  # fmt: skip


def raw(backend_name: str) -> Subject | None:
    return {"memory": RawMemory, "sqlite": RawSQLite, "redis": RawRedis, "postgres": RawPostgres}.get(
        backend_name, lambda: None
    )()


# -- the nearest public peer: py-key-value-aio ------------------------------------------------
class Peer(Subject):
    label = "py-key-value-aio"

    def __init__(self, backend_name: str) -> None:
        self.backend_name = backend_name

    async def open(self) -> None:
        self.collection = f"bench{uuid.uuid4().hex[:8]}"
        if self.backend_name == "memory":
            from key_value.aio.stores.memory import MemoryStore

            self.store: Any = MemoryStore()
        elif self.backend_name == "redis":
            from key_value.aio.stores.redis import RedisStore

            self.store = RedisStore(url=REDIS_URL)
        else:
            from key_value.aio.stores.postgresql import PostgreSQLStore

            self.store = PostgreSQLStore(url=POSTGRES_URL, table_name=f"bench_peer_{RUN}_{uuid.uuid4().hex[:8]}")
        if hasattr(self.store, "__aenter__"):  # the network stores own connections
            await self.store.__aenter__()
        else:
            await self.store.setup()

    async def close(self) -> None:
        keys = [k async for k in _peer_keys(self)]
        if keys:
            await self.store.delete_many(keys, collection=self.collection)
        if hasattr(self.store, "__aexit__"):
            await self.store.__aexit__(None, None, None)

    async def get(self, key: str) -> Any:
        return await self.store.get(key, collection=self.collection)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self.store.put(key, value, collection=self.collection, ttl=ttl)

    async def exists(self, key: str) -> bool:
        return bool(await self.store.get(key, collection=self.collection) is not None)

    async def delete(self, key: str) -> None:
        await self.store.delete(key, collection=self.collection)

    async def get_many(self, keys: list[str]) -> Any:
        return await self.store.get_many(keys, collection=self.collection)

    async def set_many(self, items: dict[str, Any]) -> None:
        await self.store.put_many(list(items), list(items.values()), collection=self.collection)


async def _peer_keys(peer: Peer) -> Any:
    keys = getattr(peer.store, "keys", None)
    if keys is None:
        return
    for key in await keys(collection=peer.collection, limit=1_000_000):
        yield key


def peer(backend_name: str) -> Subject | None:
    try:
        import key_value.aio  # noqa: F401
    except ImportError:
        return None
    return Peer(backend_name) if backend_name in ("memory", "redis", "postgres") else None
