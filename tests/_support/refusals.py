"""Make a real store refuse every write to one key, server-side (the kit's
``Harness.fail_writes_to``): a trigger on SQLite and PostgreSQL, a foreign value on Redis."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster


def _sqlite_trigger(path: str, table: str, key: str) -> None:
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:  # closed, not only committed
        for event in ("INSERT", "UPDATE"):
            conn.execute(
                f'CREATE TRIGGER {name}_{event.lower()} BEFORE {event} ON "{table}" WHEN NEW.key = ? '
                "BEGIN SELECT RAISE(ABORT, 'this key is refused by a trigger'); END".replace("?", _quote(key))
            )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def sqlite_refuses(path: str, key: str, table: str = "kv_store") -> None:
    await asyncio.to_thread(_sqlite_trigger, path, table, key)


async def postgres_refuses(url: str, schema: str, table: str, key: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        name = f"refuse_{uuid.uuid4().hex[:8]}"
        await conn.execute(
            f'CREATE FUNCTION "{schema}".{name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
            f"IF NEW.key = {_quote(key)} THEN RAISE EXCEPTION 'this key is refused by a trigger'; END IF; "
            "RETURN NEW; END $$"
        )
        await conn.execute(
            f'CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON "{schema}"."{table}" '
            f'FOR EACH ROW EXECUTE FUNCTION "{schema}".{name}()'
        )
    finally:
        await conn.close()


async def redis_refuses(url: str, prefix: str, key: str) -> None:
    """Another program's plain string where our hash would go: every command on it is WRONGTYPE."""
    cluster = url.startswith("redis+cluster://")
    client: aioredis.Redis | RedisCluster = (
        RedisCluster.from_url(url.replace("+cluster", "", 1)) if cluster else aioredis.Redis.from_url(url)
    )
    try:
        await client.set(prefix + key, "not ours")
    finally:
        await client.aclose()
