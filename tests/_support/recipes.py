"""Backends the tests build, by name: also what child processes call (``module:function`` recipes
must be importable by a fresh interpreter, so they live here, not in test modules)."""

from __future__ import annotations

from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.composed import HybridBackend, Route
from ad_buyer_storage.contract.clock import Clock, system_clock
from ad_buyer_storage.contract.protocol import StorageBackend
from ad_buyer_storage.domain.entities import default_routes
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend, RedisClusterBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.shared import POSTGRES_URL, REDIS_URL


def sqlite_file(path: str) -> SQLiteBackend:
    return SQLiteBackend(path)


def redis(url: str, prefix: str) -> RedisBackend | RedisClusterBackend:
    backend_class = RedisClusterBackend if url.startswith("redis+cluster") else RedisBackend
    return backend_class(url, key_prefix=prefix)


def postgres(url: str, schema: str, table: str) -> PostgresBackend:
    return PostgresBackend(url, schema=schema, table=table, sweep_interval=None)


def seed_routes(fast: StorageBackend, durable: StorageBackend) -> list[Route]:
    """The seed's production routing: ephemeral keyspaces on *fast*, the rest on *durable*."""
    return [
        Route(prefix, fast if target == "fast" else durable, target)
        for prefix, target in default_routes("fast", "durable").items()
    ]


def memory_and_sqlite(path: str, clock: Clock = system_clock) -> HybridBackend:
    return HybridBackend(seed_routes(MemoryBackend(clock=clock), SQLiteBackend(path, clock=clock)))


def postgres_and_redis(schema: str, table: str, prefix: str) -> HybridBackend:
    return HybridBackend(
        seed_routes(
            RedisBackend(REDIS_URL, key_prefix=prefix),
            PostgresBackend(POSTGRES_URL, schema=schema, table=table, pool_min=1, pool_max=10, sweep_interval=None),
        )
    )
