"""PostgreSQL behaviour beyond the shared contract: cold starts, processes, crashes, auth, pool, plans."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from ad_buyer_storage import (
    AuthenticationError,
    BusyError,
    ConfigurationError,
    OutcomeUnknownError,
    Storage,
    UnavailableError,
    get_storage_backend,
)
from ad_buyer_storage.composed.breaker import unwrap
from ad_buyer_storage.testing import Elapsed, increment_in_processes
from ad_buyer_storage_postgres import PostgresBackend, normalise_dsn
from tests._support.connections import tcp_connections
from tests._support.proxy import FaultProxy
from tests._support.servers import free_port, postgres_server
from tests._support.shared import POSTGRES_URL

SECRET = "p@ss:w/rd#%-Pg-S3cret"


@pytest.fixture
def schema(pg_schema: str) -> str:
    return pg_schema


def backend(schema: str, **options: object) -> PostgresBackend:
    return PostgresBackend(POSTGRES_URL, schema=schema, sweep_interval=None, **options)


async def test_eight_cold_starts_at_once_all_succeed(schema: str) -> None:
    storages = [Storage(backend(schema, pool_min=1, pool_max=2)) for _ in range(8)]
    await asyncio.gather(*(s.connect() for s in storages))
    try:
        await asyncio.gather(*(s.set(f"deal:{i}", i) for i, s in enumerate(storages)))
        assert await storages[0].count("deal:*") == 8
    finally:
        await asyncio.gather(*(s.aclose() for s in storages))
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        version = await conn.fetchval(
            f'SELECT schema_version FROM "{schema}".ad_buyer_storage_schema WHERE table_name = $1', "kv_store"
        )
        column = await conn.fetchval(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = $1 AND column_name = 'value'",
            schema,
        )
    finally:
        await conn.close()
    assert version == 3
    assert column == "json"


async def test_a_version_1_table_is_upgraded_in_place_and_keeps_its_values(schema: str) -> None:
    """Tables made by the first release hold values as jsonb; the upgrade keeps every value."""
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(
            f'CREATE TABLE "{schema}".kv_store (key text COLLATE "C" PRIMARY KEY, value jsonb NOT NULL, '
            "version text NOT NULL, expires_at timestamptz)"
        )
        await conn.execute(
            f'CREATE TABLE "{schema}".ad_buyer_storage_schema (table_name text PRIMARY KEY, '
            "schema_version integer NOT NULL, updated_at timestamptz DEFAULT now())"
        )
        await conn.execute(f'INSERT INTO "{schema}".ad_buyer_storage_schema VALUES ($1, 1)', "kv_store")
        hour = Elapsed()  # before the row's now() + 1 hour
        await conn.execute(
            f'INSERT INTO "{schema}".kv_store VALUES (\'deal:1\', \'{{"b": 1, "a": [2.5, "x"]}}\', \'v1\', NULL),'
            f"('session:1', '7', 'v2', now() + interval '1 hour')"
        )
    finally:
        await conn.close()
    async with Storage(backend(schema)) as storage:
        assert await storage.get("deal:1") == {"a": [2.5, "x"], "b": 1}
        assert await storage.incr("session:1") == 8
        hour.check_ttl(await storage.ttl("session:1"), 3600, "incr() must keep the expiry of a version 1 row")
        await storage.set("deal:2", {"f": 1e23})
        assert type((await storage.get("deal:2"))["f"]) is float
        # Rows from before version 3 recorded no TTL: "the TTL it was given" leaves them be.
        assert await storage.get("session:1", refresh_ttl=True) == 8
        hour.check_ttl(await storage.ttl("session:1"), 3600, "refresh_ttl=True must leave a row without a TTL be")
        renewed = Elapsed()
        assert await storage.get("session:1", refresh_ttl=100) == 8
        renewed.check_ttl(await storage.ttl("session:1"), 100, "get(refresh_ttl=100) must renew the expiry to 100 s")
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        version = await conn.fetchval(f'SELECT schema_version FROM "{schema}".ad_buyer_storage_schema')
        columns = dict(
            await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1", schema
            )
        )
    finally:
        await conn.close()
    assert (version, columns["value"], columns["ttl_ms"]) == (3, "json", "bigint")


@pytest.mark.slow
async def test_four_processes_times_1000_increments_and_versioned_updates_are_exact(schema: str) -> None:
    async with Storage(backend(schema)) as storage:
        await storage.set("deal:1", {"spend": 0})
        recipe = ("tests._support.recipes:postgres", (POSTGRES_URL, schema, "kv_store"))
        await increment_in_processes(recipe, "counter", 1000, "deal:1", join_timeout=300)
        assert await storage.get("counter") == 4000
        assert await storage.get("deal:1") == {"spend": 4000}


async def test_a_lost_reply_is_retried_only_when_that_cannot_double_apply(schema: str) -> None:
    async with FaultProxy(5432) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        # A plain TCP proxy, not a pooler: say so, or the backend (which cannot tell) would run
        # without a statement cache, and the dropped reply below would be the Parse's, not the Execute's.
        pg = PostgresBackend(url, schema=schema, pool_min=1, pool_max=1, command_timeout=3, sweep_interval=None,
                             pooling="session")  # fmt: skip
        async with Storage(pg) as storage:
            assert (await pg.info())["statement_cache_size"] == 100
            assert await storage.incr("n") == 1
            proxy.mode = "drop_one_reply"
            assert await storage.get("n") == 1  # idempotent: the dropped connection is retried once
            # The retry opened a new connection: let it prepare the increment before the fault,
            # so the reply that goes missing is the one of a statement that did run.
            assert await storage.incr("n") == 2
            proxy.mode = "drop_one_reply"
            with pytest.raises(OutcomeUnknownError, match="may or may not"):
                await storage.incr("n")
            assert await storage.get("n") == 3  # applied once, never sent twice
            proxy.mode = "drop_one_reply"
            await storage.set("k", "v")  # an unconditional write is idempotent: retried
            assert await storage.get("k") == "v"


async def test_authentication_and_passwords_with_reserved_characters() -> None:
    with postgres_server(password=SECRET) as server:
        async with Storage(PostgresBackend(server.url(), sweep_interval=None)) as storage:  # percent-encoded
            await storage.set("k", 1)
            text = repr(storage) + repr(storage.backend) + str(await storage.info())
            assert "S3cret" not in text
        with tcp_connections() as dialled, pytest.raises(AuthenticationError) as info:
            await Storage(PostgresBackend(server.url(password="wrong-S3cret"))).connect()
        assert len(dialled) == 1, f"a refused password is not retried: {dialled}"
        assert "S3cret" not in str(info.value)
        assert "postgres" in str(info.value)


async def test_a_full_pool_raises_busy_within_the_acquire_timeout(schema: str) -> None:
    pg = backend(schema, pool_min=1, pool_max=2, acquire_timeout=0.3)
    async with Storage(pg) as storage:
        await storage.set("k", 1)
        held = [await pg._pool.acquire() for _ in range(2)]
        try:
            started = time.monotonic()
            with pytest.raises(BusyError):
                await storage.get("k")
            assert time.monotonic() - started > 0.25, "BusyError only once the acquire_timeout (0.3 s) is out"
        finally:
            for conn in held:
                await pg._pool.release(conn)
        assert await storage.get("k") == 1


async def test_turns_never_take_the_connections_their_holders_need(schema: str) -> None:
    """As many turns as the pool has connections, each holder reading and committing inside its
    turn: turns hold connections of their own, so every one completes (turns on the pool's own
    connections left the holders none: BusyError, or asyncpg's wait surfaced raw)."""
    pg = backend(schema, pool_min=1, pool_max=2, acquire_timeout=1.0)
    async with Storage(pg) as storage:
        keys = [f"t{i}" for i in range(2)]
        await storage.set_many(dict.fromkeys(keys, 0))
        inside = asyncio.Barrier(len(keys))

        async def holder(key: str) -> int:
            async with pg.turn([key]):
                await inside.wait()  # every turn held at once
                async with storage.transaction() as tx:
                    tx.set(key, await tx.get(key) + 1)
                return int(await storage.get(key))

        assert await asyncio.wait_for(asyncio.gather(*map(holder, keys)), 30) == [1, 1]


async def test_a_turn_with_no_connection_free_is_busy_not_a_raw_error(schema: str) -> None:
    pg = backend(schema, pool_min=1, pool_max=1, acquire_timeout=0.3)
    async with Storage(pg):
        turns = await pg._turns_pool()
        held = await turns.acquire()
        try:
            with pytest.raises(BusyError):
                async with pg.turn(["k"]):
                    pass
        finally:
            await turns.release(held)


async def test_prefix_listing_uses_the_primary_key(schema: str) -> None:
    pg = backend(schema)
    async with Storage(pg) as storage:
        await storage.set_many({f"deal:{i}": i for i in range(2000)})
        plan = await pg._call(
            lambda c: c.fetch("EXPLAIN " + pg._sql.scan(first=True, bounded=True), "deal:", "deal;", 100),
            idempotent=True,
        )
        text = "\n".join(row[0] for row in plan)
        assert "kv_store_pkey" in text, text
        assert "Seq Scan" not in text, text


async def test_expired_rows_are_invisible_then_swept(schema: str) -> None:
    pg = backend(schema, sweep_batch=7)
    async with Storage(pg) as storage:
        await storage.set_many({f"cache:{i}": i for i in range(20)}, ttl=0.2)
        await storage.set("keep", 1)
        await asyncio.sleep(0.3)
        assert await storage.keys() == ["keep"]
        assert await pg.purge_expired() == 20
        assert await pg.purge_expired() == 0


@pytest.mark.parametrize(
    "url",
    ["postgresql+asyncpg://postgres@127.0.0.1:5432/test", "postgres://postgres@127.0.0.1:5432/test", POSTGRES_URL],
)
async def test_url_forms(url: str, schema: str) -> None:
    async with Storage(PostgresBackend(url, schema=schema, sweep_interval=None)) as storage:
        await storage.set("k", {"url": "ok"})
        assert await storage.get("k") == {"url": "ok"}


def test_bad_urls_and_names_are_config_errors() -> None:
    with pytest.raises(ConfigurationError, match="not a PostgreSQL URL"):
        normalise_dsn(f"mysql://root:{SECRET}@h/db")
    with pytest.raises(ConfigurationError):
        PostgresBackend(POSTGRES_URL, table="kv; DROP TABLE x")
    assert normalise_dsn("postgresql+asyncpg://u@h/db") == "postgresql://u@h/db"


async def test_a_refused_port_is_unavailable_quickly() -> None:
    with tcp_connections() as dialled, pytest.raises(UnavailableError) as info:
        await Storage(
            PostgresBackend(f"postgresql://u:{SECRET}@127.0.0.1:{free_port()}/db", connect_timeout=1)
        ).connect()
    assert len(dialled) == 1, f"a refused connection is not retried: {dialled}"
    assert "S3cret" not in str(info.value)


async def test_settings_select_postgres(monkeypatch, schema: str) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("POSTGRES_SCHEMA", schema)
    monkeypatch.setenv("POSTGRES_POOL_MAX", "3")
    storage = get_storage_backend()
    assert storage.name == "postgres"
    assert unwrap(storage.backend).schema == schema  # type: ignore[attr-defined]
    assert unwrap(storage.backend)._pool_max == 3  # type: ignore[attr-defined]
    async with storage:
        await storage.set_deal("d1", {"status": "active"})
        assert await storage.list_deals({"status": "active"}) == [{"status": "active"}]


def test_demo_and_doctor_on_postgres(tmp_path: Path) -> None:
    schema = f"abs_test_{uuid.uuid4().hex[:12]}"
    seed_style_url = POSTGRES_URL.replace("postgresql", "postgresql+asyncpg")
    env = {**os.environ, "STORAGE_TYPE": "postgres", "DATABASE_URL": seed_style_url, "POSTGRES_SCHEMA": schema}
    cli = [sys.executable, "-m", "ad_buyer_storage.cli"]
    try:
        demo = subprocess.run([*cli, "demo"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
                              check=False)  # fmt: skip
        assert demo.returncode == 0, demo.stderr
        assert "ok: 250.00 expected" in demo.stdout
        assert "ok: stopped exactly at the budget" in demo.stdout
        doctor = subprocess.run([*cli, "doctor"], capture_output=True, text=True, timeout=60, env=env,
                                cwd=tmp_path, check=False)  # fmt: skip
        assert doctor.returncode == 0, doctor.stderr
        for fact in ("server_version", "pool_size", "ping:", f"{schema}.kv_store"):
            assert fact in doctor.stdout
    finally:
        subprocess.run(["psql", POSTGRES_URL, "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
                       capture_output=True, check=False)  # fmt: skip


async def test_an_unencoded_password_with_reserved_characters_works() -> None:
    with postgres_server(password=SECRET) as server:
        raw = f"postgresql://postgres:{SECRET}@127.0.0.1:{server.port}/postgres"  # not percent-encoded
        async with Storage(PostgresBackend(raw, sweep_interval=None)) as storage:
            await storage.set("k", 1)
            assert await storage.get("k") == 1


async def test_batches_sharing_keys_in_opposite_orders_never_deadlock(schema: str) -> None:
    """Two processes' bulk writes and deletes over the same keys, listed in opposite orders."""
    keys = [f"deal:{i:03d}" for i in range(60)]
    async with Storage(backend(schema), coalesce=False) as one, Storage(backend(schema), coalesce=False) as two:
        for round_ in range(30):
            await asyncio.gather(
                one.set_many({k: round_ for k in keys}),
                two.set_many({k: -round_ for k in reversed(keys)}),
                one.delete_many(keys[::2]),
                two.delete_many(list(reversed(keys))[::3]),
            )


async def test_a_statement_chosen_as_deadlock_victim_is_sent_again(schema: str) -> None:
    """A deadlock made on purpose: our batch holds deal:a and waits for deal:b, which another
    transaction holds while it waits for deal:a. The server rolls our statement back; it is sent
    again (it cannot have applied) and succeeds once the other transaction is done."""
    async with Storage(backend(schema)) as storage:
        await storage.set_many({"deal:a": 0, "deal:b": 0})
        other = await asyncpg.connect(POSTGRES_URL)
        try:
            transaction = other.transaction()
            await transaction.start()
            await other.execute(f'UPDATE "{schema}".kv_store SET version = $1 WHERE key = $2', "x", "deal:b")
            ours = asyncio.create_task(storage.set_many({"deal:a": 1, "deal:b": 1}))
            await asyncio.sleep(0.2)  # ours has deal:a and waits for deal:b
            await other.execute(f'UPDATE "{schema}".kv_store SET version = $1 WHERE key = $2', "x", "deal:a")
            await transaction.commit()
            await asyncio.wait_for(ours, timeout=30)
        finally:
            await other.close()
        assert await storage.get_many(["deal:a", "deal:b"]) == {"deal:a": 1, "deal:b": 1}
