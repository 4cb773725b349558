"""The sync facade: the conformance kit through a thin async shim, 16 threads, clean exit."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ad_buyer_storage import Capability, LifecycleError, Storage, StorageClosedError
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.contract import Check, GlobPattern, Record, Write
from ad_buyer_storage.domain.collections import EntityCollection
from ad_buyer_storage.sync import SyncCollection, SyncStorage
from ad_buyer_storage.testing import Harness, StorageContract
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.shared import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[1]


class ThroughTheFacade:
    """A backend whose every primitive is a blocking SyncStorage call made from a worker thread:
    the kit then proves the facade's thread and loop hops keep every semantic."""

    def __init__(self, facade: SyncStorage) -> None:
        self.facade = facade
        self.inner = facade.storage.backend
        self.name = self.inner.name
        # Flags are the truth: the shim forwards neither read_refresh nor turn, so it does not claim them.
        self.capabilities = self.inner.capabilities - {Capability.REFRESH, Capability.TURNS}

    async def _hop(self, method: str, *args: Any) -> Any:
        return await asyncio.to_thread(self.facade.run, getattr(self.inner, method), *args)

    async def connect(self) -> None:
        return None  # the facade connected it

    async def aclose(self) -> None:
        await asyncio.to_thread(self.facade.close)

    async def ping(self) -> None:
        await self._hop("ping")

    async def info(self) -> Mapping[str, object]:
        return await self._hop("info")  # type: ignore[no-any-return]

    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        return await self._hop("read", keys)  # type: ignore[no-any-return]

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        return await self._hop("write", writes)  # type: ignore[no-any-return]

    async def remove(self, keys: Sequence[str]) -> int:
        return await self._hop("remove", keys)  # type: ignore[no-any-return]

    async def count(self, keys: Sequence[str]) -> int:
        return await self._hop("count", keys)  # type: ignore[no-any-return]

    async def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        async def collect() -> list[str]:
            return [key async for key in self.inner.scan(pattern, batch_size)]

        for key in await asyncio.to_thread(self.facade.run, collect):
            yield key

    async def get_ttl(self, key: str) -> int:
        return await self._hop("get_ttl", key)  # type: ignore[no-any-return]

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        return await self._hop("set_ttl", key, ttl_ms)  # type: ignore[no-any-return]

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        return await self._hop("increment", key, amount, version, ttl_ms)  # type: ignore[no-any-return]

    async def commit(self, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str]) -> bool:
        return await self._hop("commit", checks, writes, deletes)  # type: ignore[no-any-return]


def open_through_facade(path: str) -> ThroughTheFacade:
    """Child-process recipe for the kit's multi-process test."""
    return ThroughTheFacade(_off_the_loop(lambda: SyncStorage(Storage(SQLiteBackend(path)))))


def _off_the_loop(make: Callable[[], SyncStorage]) -> SyncStorage:
    """*make()* in a thread of its own: the kit builds backends from its coroutines, and a facade
    connecting from a coroutine warns (it blocks that loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(make).result()


class TestSyncFacadeContract(StorageContract):
    @pytest.fixture
    def harness(self, tmp_path) -> Harness:
        path = str(tmp_path / "facade.db")
        return Harness(
            lambda clock: ThroughTheFacade(
                _off_the_loop(lambda: SyncStorage(Storage(SQLiteBackend(path, clock=clock))))
            ),
            child_backend=("tests.test_sync_facade:open_through_facade", (path,)),
            storage_options={"max_value_bytes": 64 * 1024},
        )


def _hammer(facade: SyncStorage, threads: int = 16, rounds: int = 50) -> None:
    facade.set_deal("d1", {"spend": 0, "bids": 0})
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(rounds):
                facade.update_deal("d1", lambda d: {**d, "spend": d["spend"] + 1})
                facade.incr("deal_bids:d1")
                facade.set_deal(f"t{n}-{i}", {"thread": n, "i": i})
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    assert not errors, errors[:3]
    deal = facade.get_deal("d1")
    assert deal is not None
    assert deal["spend"] == threads * rounds
    assert facade.get("deal_bids:d1") == threads * rounds
    assert len(facade.keys("deal:t*")) == threads * rounds


def test_sixteen_threads_on_sqlite(tmp_path) -> None:
    with SyncStorage(Storage(SQLiteBackend(str(tmp_path / "threads.db")))) as facade:
        _hammer(facade)


def test_sixteen_threads_on_postgres(pg_schema: str) -> None:
    backend = PostgresBackend(POSTGRES_URL, schema=pg_schema, pool_max=8, sweep_interval=None)
    with SyncStorage(Storage(backend)) as facade:
        _hammer(facade)


async def test_callable_from_a_running_loops_worker_threads() -> None:
    with pytest.warns(RuntimeWarning, match="blocks that event loop"):  # connecting from a coroutine
        facade = SyncStorage(Storage(MemoryBackend()))
    with facade:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, facade.set, "k", {"from": "executor"})
        assert await loop.run_in_executor(None, facade.get, "k") == {"from": "executor"}


def test_lifecycle_and_misuse() -> None:
    facade = SyncStorage(Storage(MemoryBackend()))
    facade.set("k", 1)
    with pytest.raises(LifecycleError):
        facade.run(_call_from_inside, facade)
    facade.close()
    facade.close()  # idempotent
    with pytest.raises(StorageClosedError):
        facade.get("k")
    assert not any(t.name == "ad-buyer-storage-sync" and t.is_alive() for t in threading.enumerate())


async def _call_from_inside(facade: SyncStorage) -> Any:
    return facade.get("k")  # a blocking call on the facade's own loop: refused, not a deadlock


def test_a_script_that_never_closes_exits_cleanly(tmp_path) -> None:
    script = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("error")
        from ad_buyer_storage.sync import SyncStorage
        storage = SyncStorage()   # settings: the SQLite default
        storage.set_deal("d1", {"ok": True})
        print(storage.get_deal("d1"))
        """
    )
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/s.db"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20, env=env,
                            cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'ok': True}"
    assert result.stderr == ""


# The lifecycle is the facade's own (built connected, closed by close() or at exit).
_OWN_LIFECYCLE = {"connect", "aclose", "disconnect", "require_open"}


def _public(cls: type) -> dict[str, Any]:
    return {name: value for name, value in vars(cls).items() if not name.startswith("_")}


@pytest.mark.parametrize(("async_cls", "sync_cls"), [(Storage, SyncStorage), (EntityCollection, SyncCollection)])
def test_every_public_method_has_a_blocking_twin(async_cls: type, sync_cls: type) -> None:
    """Walks the async API: each method exists on the facade with the same parameters, and
    nothing it returns is async (iterators and context managers included)."""
    missing, different = [], []
    for name, member in _public(async_cls).items():
        if name in _OWN_LIFECYCLE:
            continue
        twin = getattr(sync_cls, name, None)
        if twin is None:
            missing.append(name)
            continue
        if isinstance(member, property):
            continue
        assert not inspect.iscoroutinefunction(twin), f"SyncStorage.{name} is a coroutine function"
        if list(inspect.signature(member).parameters) != list(inspect.signature(twin).parameters):
            different.append(name)
    assert not missing, f"without a blocking twin: {missing}"
    assert not different, f"with other parameters than the async method: {different}"


def test_the_facade_is_what_the_generator_writes() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "generate_sync.py"), "--check"],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_iterators_collections_and_subscriptions_are_plain(tmp_path) -> None:
    with SyncStorage(Storage(MemoryBackend())) as facade:
        facade.set_many({f"deal:{i}": {"n": i, "even": i % 2 == 0} for i in range(7)})
        scanned = facade.scan("deal:*", batch_size=2)
        assert not isinstance(scanned, AsyncIterator)
        assert sorted(scanned) == [f"deal:{i}" for i in range(7)]
        deals = facade.collection("deal")
        assert [d["n"] for d in deals.list({"even": True})] == [0, 2, 4, 6]
        assert deals.ids() == [str(i) for i in range(7)]
        deals.set("9", {"n": 9})
        assert deals.update("9", lambda d: {**d, "seen": True}) == {"n": 9, "seen": True}
        with facade.subscribe("pubsub:deals") as messages:
            facade.publish("pubsub:deals", {"hello": 1})
            assert next(iter(messages)) == {"hello": 1}


async def test_the_applications_own_connected_storage_is_shared_never_closed() -> None:
    """async agent code and a sync tool in one process: the facade runs its calls on the loop
    the storage was connected on, and leaves the storage open when it closes."""
    storage = Storage(MemoryBackend())
    await storage.connect()
    try:
        facade = SyncStorage(storage)  # nothing blocks here: no connect, no thread
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, facade.set, "k", {"from": "tool"})
        assert await storage.get("k") == {"from": "tool"}  # the app sees it at once: one store
        assert await loop.run_in_executor(None, facade.get, "k") == {"from": "tool"}
        with pytest.raises(LifecycleError, match="own event loop"):
            facade.get("k")  # from the storage's own loop: refused, not a deadlock
        await loop.run_in_executor(None, facade.close)
        assert storage.is_open, "a facade never closes what it did not open"
        assert await storage.get("k") == {"from": "tool"}
        assert not any(t.name == "ad-buyer-storage-sync" and t.is_alive() for t in threading.enumerate())
    finally:
        await storage.aclose()


def test_a_storage_connected_on_a_loop_that_stopped_is_refused_saying_what_to_do() -> None:
    storage = Storage(MemoryBackend())
    asyncio.run(storage.connect())
    with pytest.raises(LifecycleError, match="give SyncStorage an unconnected storage"):
        SyncStorage(storage)


async def test_a_blocking_call_from_a_coroutine_warns() -> None:
    loop = asyncio.get_running_loop()
    facade = await loop.run_in_executor(None, lambda: SyncStorage(Storage(MemoryBackend())))
    try:
        with pytest.warns(RuntimeWarning, match="SyncStorage called from a coroutine"):
            facade.set("k", 1)
    finally:
        await loop.run_in_executor(None, facade.close)
