"""Redis behaviour beyond the shared contract: namespace, processes, faults, auth, pools, URLs."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ad_buyer_storage import (
    AuthenticationError,
    BackendError,
    BusyError,
    ConfigurationError,
    InvalidPatternError,
    OutcomeUnknownError,
    Storage,
    UnavailableError,
    get_storage_backend,
)
from ad_buyer_storage.composed.breaker import unwrap
from ad_buyer_storage.contract import compile_glob
from ad_buyer_storage.testing import Elapsed, increment_in_processes
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_redis.namespaces import NAMESPACES_KEY
from tests._support.connections import tcp_connections
from tests._support.proxy import FaultProxy
from tests._support.refusals import redis_refuses
from tests._support.servers import REDIS_CLI, free_port, redis_server
from tests._support.shared import REDIS_URL, drop_redis_prefix

SECRET = "Redis-S3cret-Pw"


def unique_prefix() -> str:
    return f"abs-test:{uuid.uuid4().hex}:"


@pytest.fixture
def namespace() -> Iterator[str]:
    """A key prefix of this test's own on the shared Redis, emptied afterwards whatever happens."""
    prefix = unique_prefix()
    yield prefix
    drop_redis_prefix(prefix)


def shared_cli(*args: str) -> str:
    return subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", "6379", *args], capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()  # fmt: skip


async def test_nothing_outside_the_namespace_is_read_listed_or_deleted() -> None:
    prefix = unique_prefix()
    foreign = [f"{prefix[:-1]}X:deal:1", "deal:1-" + uuid.uuid4().hex, prefix.rstrip(":")]
    for key in foreign:
        shared_cli("SET", key, "foreign")
    try:
        async with Storage(RedisBackend(REDIS_URL, key_prefix=prefix)) as storage:
            await storage.set("deal:1", {"mine": True})
            assert await storage.keys() == ["deal:1"]
            assert await storage.get("1") is None
            assert await storage.clear() == 1
        for key in foreign:
            assert shared_cli("GET", key) == "foreign"
    finally:
        shared_cli("DEL", *foreign)


def _registered(prefix: str) -> bool:
    return shared_cli("SISMEMBER", NAMESPACES_KEY, prefix) == "1"


async def test_a_namespace_nested_in_another_is_refused_both_ways(namespace: str) -> None:
    """With prefix app:, the keys of app:staging: would look like keys staging:... of app:."""
    inner = f"{namespace}staging:"
    try:
        async with Storage(RedisBackend(REDIS_URL, key_prefix=inner)) as staging:
            await staging.set("x", 1)
            for outer_first in (False, True):
                with pytest.raises(ConfigurationError) as info:
                    async with Storage(RedisBackend(REDIS_URL, key_prefix=namespace)) as app:
                        assert await app.keys() == [], "app: lists the keys of app:staging:"
                assert repr(namespace) in str(info.value)
                assert repr(inner) in str(info.value)
                assert not _registered(namespace)
                if outer_first:
                    break
            # Siblings and a second process of the same deployment are fine.
            async with Storage(RedisBackend(REDIS_URL, key_prefix=f"{namespace}prod:")) as prod:
                await prod.set("x", 2)
                await prod.clear()
            async with Storage(RedisBackend(REDIS_URL, key_prefix=inner)) as same:
                assert await same.get("x") == 1
            # clear() frees the namespace; the next write claims it again.
            assert await staging.clear() == 1
            assert not _registered(inner)
            async with Storage(RedisBackend(REDIS_URL, key_prefix=namespace)) as app:
                with pytest.raises(ConfigurationError, match="overlaps"):
                    await staging.set("y", 1)  # app: holds the Redis now
                await app.set("k", 1)
                await app.clear()
            await staging.set("y", 1)
            assert _registered(inner)
            with pytest.raises(ConfigurationError, match="overlaps"):
                async with Storage(RedisBackend(REDIS_URL, key_prefix=namespace)):
                    pass
            await staging.clear()
    finally:
        drop_redis_prefix(inner)
    assert not _registered(inner)


def test_a_prefix_that_would_hold_the_registry_is_refused() -> None:
    for prefix in ("ad_buyer_storage:", "ad_", NAMESPACES_KEY):
        with pytest.raises(ConfigurationError, match="registered"):
            RedisBackend(REDIS_URL, key_prefix=prefix)


async def test_drop_redis_prefix_leaves_no_registration(namespace: str) -> None:
    async with Storage(RedisBackend(REDIS_URL, key_prefix=namespace)) as storage:
        await storage.set("k", 1)
    assert _registered(namespace)
    drop_redis_prefix(namespace)
    assert not _registered(namespace)


async def test_an_acl_that_forbids_the_registry_skips_the_check(tmp_path, caplog) -> None:
    with redis_server(tmp_path / "r") as server:
        server.cli("ACL", "SETUSER", "app", "on", ">app-password", "~app:*", "+@all", "-@dangerous")
        url = f"redis://app:app-password@127.0.0.1:{server.port}/0"
        async with Storage(RedisBackend(url, key_prefix="app:")) as storage:
            await storage.set("k", 1)
            assert await storage.clear() == 1
    assert any("not registered" in r.getMessage() for r in caplog.records)


async def test_ttl_is_native_and_kept_in_milliseconds(namespace: str) -> None:
    prefix = namespace
    async with Storage(RedisBackend(REDIS_URL, key_prefix=prefix)) as storage:
        elapsed = Elapsed()
        await storage.set("session:s", {"n": 1}, ttl=1.5)
        pttl = int(shared_cli("PTTL", f"{prefix}session:s"))
        # Not truncated to 1 s as `ex=timedelta(seconds=1.5)` would be:
        elapsed.check_ttl(pttl / 1000, 1.5, "ttl=1.5 must be kept to the millisecond (PTTL, in ms, / 1000)")
        await storage.clear()


@pytest.mark.slow
async def test_four_processes_times_1000_increments_and_versioned_updates_are_exact(namespace: str) -> None:
    prefix = namespace
    async with Storage(RedisBackend(REDIS_URL, key_prefix=prefix)) as storage:
        await storage.set("deal:1", {"spend": 0})
        recipe = ("tests._support.recipes:redis", (REDIS_URL, prefix))
        await increment_in_processes(recipe, "counter", 1000, "deal:1")
        assert await storage.get("counter") == 4000
        assert await storage.get("deal:1") == {"spend": 4000}
        await storage.clear()


async def test_a_lost_increment_reply_is_outcome_unknown_and_never_applied_twice(tmp_path) -> None:
    with redis_server(tmp_path / "r") as server:
        async with FaultProxy(server.port) as proxy:
            url = f"redis://127.0.0.1:{proxy.port}/0"
            async with Storage(RedisBackend(url, command_timeout=2, connect_timeout=2)) as storage:
                assert await storage.incr("counter") == 1  # also loads the script on the server
                proxy.mode = "drop_replies"
                with pytest.raises(OutcomeUnknownError) as info:
                    await storage.incr("counter")
                assert "not retried" in str(info.value)
                proxy.mode = "pass"
                assert await storage.get("counter") == 2  # applied once; never sent again
                proxy.mode = "drop_replies"
                with pytest.raises(UnavailableError):
                    await storage.get("counter")  # idempotent: retried once, then a typed error
                proxy.mode = "pass"
                assert await storage.incr("counter") == 3


async def test_authentication(tmp_path) -> None:
    with redis_server(tmp_path / "r", "--requirepass", SECRET) as server:
        wrong = f"redis://:not-{SECRET}@127.0.0.1:{server.port}/0"
        with tcp_connections() as dialled, pytest.raises(AuthenticationError) as info:
            await Storage(RedisBackend(wrong)).connect()
        assert len(dialled) == 1, f"a refused password is not retried: {dialled}"
        assert SECRET not in str(info.value)
        assert "not-" not in str(info.value)
        with pytest.raises(AuthenticationError):
            await Storage(RedisBackend(server.url)).connect()  # no password at all
        right = f"redis://:{SECRET}@127.0.0.1:{server.port}/0"
        async with Storage(RedisBackend(right)) as storage:
            await storage.set("k", 1)
            assert SECRET not in repr(storage) + repr(storage.backend)
            info_text = str(await storage.info())
            assert SECRET not in info_text
            assert ":***@" in info_text


async def test_a_full_pool_waits_then_raises_busy_and_recovers(tmp_path) -> None:
    with redis_server(tmp_path / "r") as server:
        backend = RedisBackend(server.url, max_connections=2, pool_timeout=0.3)
        async with Storage(backend) as storage:
            await storage.set("k", 1)
            async with storage.subscribe("a"), storage.subscribe("b"):  # each holds a connection
                started = time.monotonic()
                with pytest.raises(BusyError):
                    await storage.get("k")
                assert time.monotonic() - started > 0.25, "BusyError only once the pool_timeout (0.3 s) is out"
            assert await storage.get("k") == 1  # healthy again


async def test_pool_usage_counts_calls_holding_and_waiting_for_a_connection(namespace: str) -> None:
    """Counted by the backend itself (redis-py tells it only through private attributes)."""
    backend = RedisBackend(REDIS_URL, key_prefix=namespace, max_connections=3)
    async with Storage(backend):
        assert backend.pool_usage() == (0, 1, 3, 0), "connect's own calls opened one"
        inside, release = asyncio.Event(), asyncio.Event()
        entered = 0

        async def hold(client: object) -> None:
            nonlocal entered
            entered += 1
            if entered == 5:
                inside.set()
            await release.wait()

        calls = [asyncio.create_task(backend._call(hold, idempotent=True)) for _ in range(5)]
        await inside.wait()
        assert backend.pool_usage() == (3, 0, 3, 2), "3 calls hold the 3 connections, 2 wait"
        release.set()
        await asyncio.gather(*calls)
        assert backend.pool_usage() == (0, 3, 3, 0), "the pool keeps the 3 it opened"
    assert backend.pool_usage() is None


async def test_unix_socket_and_database_number(tmp_path) -> None:
    # A unix socket's path must fit in 107 bytes: tmp_path under a nox session's TMPDIR may not.
    short = Path(tempfile.mkdtemp(prefix="abs-", dir="/tmp"))
    sock = short / "redis.sock"
    try:
        await _unix_socket_and_database_number(tmp_path, sock)
    finally:
        shutil.rmtree(short, ignore_errors=True)


async def _unix_socket_and_database_number(tmp_path: Path, sock: Path) -> None:
    with redis_server(tmp_path / "r", "--unixsocket", str(sock), "--unixsocketperm", "700") as server:
        async with Storage(RedisBackend(f"unix://{sock}?db=2")) as storage:
            await storage.set("deal:u", 1)
        assert server.cli("-n", "2", "HGET", "ad_buyer:deal:u", "d") == "1"
        async with Storage(RedisBackend(f"redis://127.0.0.1:{server.port}/3")) as storage:
            await storage.set("deal:n", 2)
        assert server.cli("-n", "3", "HGET", "ad_buyer:deal:n", "d") == "2"


async def test_refused_port_is_unavailable_quickly() -> None:
    with tcp_connections() as dialled, pytest.raises(UnavailableError):
        await Storage(RedisBackend(f"redis://:{SECRET}@127.0.0.1:{free_port()}/0", connect_timeout=1)).connect()
    assert len(dialled) == 1, f"a refused connection is not retried: {dialled}"


async def test_settings_select_redis_and_the_cluster_class(monkeypatch) -> None:
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    storage = get_storage_backend()
    assert storage.name == "redis"
    assert type(unwrap(storage.backend)).__name__ == "RedisBackend"
    assert storage.backend is not unwrap(storage.backend)  # behind its circuit breaker
    monkeypatch.setenv("REDIS_KEY_PREFIX", "custom:")
    assert unwrap(get_storage_backend().backend).key_prefix == "custom:"  # type: ignore[attr-defined]
    monkeypatch.setenv("REDIS_URL", "redis+cluster://127.0.0.1:7000")
    assert type(unwrap(get_storage_backend().backend)).__name__ == "RedisClusterBackend"


def test_demo_and_doctor_on_redis(tmp_path: Path) -> None:
    env = {**os.environ, "STORAGE_TYPE": "redis", "REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": unique_prefix()}
    cli = [sys.executable, "-m", "ad_buyer_storage.cli"]
    try:
        demo = subprocess.run([*cli, "demo"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
                              check=False)  # fmt: skip
        assert demo.returncode == 0, demo.stderr
        assert "backend: redis" in demo.stdout
        assert "ok: 250.00 expected" in demo.stdout
        assert "ok: stopped exactly at the budget" in demo.stdout
        doctor = subprocess.run([*cli, "doctor"], capture_output=True, text=True, timeout=60, env=env,
                                cwd=tmp_path, check=False)  # fmt: skip
        assert doctor.returncode == 0, doctor.stderr
        for fact in ("redis_version", "ping:", env["REDIS_KEY_PREFIX"]):
            assert fact in doctor.stdout
    finally:
        drop_redis_prefix(env["REDIS_KEY_PREFIX"])


async def test_an_unencoded_password_with_reserved_characters_works(tmp_path) -> None:
    secret = "p@ss:w/rd#%x"
    with redis_server(tmp_path / "r", "--requirepass", secret) as server:
        async with Storage(RedisBackend(f"redis://:{secret}@127.0.0.1:{server.port}/0")) as storage:
            await storage.set("k", 1)
            assert secret not in repr(storage.backend)
        with pytest.raises(AuthenticationError) as info:
            await Storage(RedisBackend(f"redis://:{secret}-wrong@127.0.0.1:{server.port}/0")).connect()
        assert "w/rd" not in str(info.value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=st.lists(st.text(alphabet="ab:_%*?[]^!-\\'", min_size=1, max_size=5), min_size=1, max_size=12, unique=True),
    pattern=st.text(alphabet="ab:_%*?[]^!-\\", min_size=1, max_size=6),
)
def test_the_glob_grammar_is_redis_s_own(namespace: str, keys: list[str], pattern: str) -> None:
    """An independent oracle: Redis's SCAN MATCH decides, our matcher must agree (ASCII keys)."""
    try:
        ours = compile_glob(pattern)
    except InvalidPatternError:
        return  # we refuse malformed patterns outright; Redis guesses
    client = sync_redis.Redis.from_url(REDIS_URL)
    try:
        with client.pipeline() as pipe:
            for key in keys:
                pipe.set(f"{namespace}{key}", 1)
            pipe.execute()
        # Redis matches the whole name, so the namespace is spelled out literally in the pattern.
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in namespace)
        found = {k.decode()[len(namespace) :] for k in client.scan_iter(match=escaped + pattern, count=1000)}
        assert sorted(found) == sorted(k for k in keys if ours.matches(k)), (pattern, keys)
    finally:
        client.delete(*(f"{namespace}{key}" for key in keys))
        client.close()


async def test_a_key_the_server_refuses_to_read_fails_alone(namespace: str) -> None:
    """Another program's string in our namespace: reading it is WRONGTYPE, for that key only."""
    async with Storage(RedisBackend(REDIS_URL, key_prefix=namespace)) as storage:
        await storage.set_many({"deal:a": 1, "deal:c": 3})
        await redis_refuses(REDIS_URL, namespace, "deal:b")
        # The first read goes alone; the two behind it share one round trip (one script call).
        outcomes = await asyncio.gather(
            storage.get("deal:a"), storage.get("deal:b"), storage.get("deal:c"), return_exceptions=True
        )
        assert outcomes[0] == 1
        assert outcomes[2] == 3
        assert isinstance(outcomes[1], BackendError)
        assert "WRONGTYPE" in str(outcomes[1])
