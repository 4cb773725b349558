"""Circuit breakers: a store that stops answering fails calls fast, only its own, and recovers.

The state machine is checked on a scripted backend with a hand-driven clock; the promise users
care about (a Redis outage fails session calls at once, leaves PostgreSQL-bound calls alone,
and heals by itself) is checked through the factory on the real servers, with Redis behind a
proxy that blackholes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence

import pytest
from ad_buyer_storage_example.backend import DictStore  # type: ignore[import-untyped]

from ad_buyer_storage import (
    Capability,
    CircuitOpenError,
    InvalidValueError,
    ManualClock,
    OutcomeUnknownError,
    Storage,
    StorageTimeoutError,
    Store,
    UnavailableError,
    VersionConflictError,
    get_storage_backend,
)
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.composed import BreakerPolicy, CircuitBreaker, guarded, unwrap
from ad_buyer_storage.composed.breaker import BreakerState
from ad_buyer_storage.contract import (
    Record,
    SupportsPubSub,
    SupportsQuery,
    SupportsRemovePrefix,
    SupportsTelemetry,
    SupportsTransactions,
)
from ad_buyer_storage.errors import BusyError
from tests._support.connections import tcp_connections
from tests._support.proxy import FaultProxy
from tests._support.shared import POSTGRES_URL, REDIS_URL, drop_pg_schema, drop_redis_prefix, new_prefix, new_schema


class Flaky(MemoryBackend):
    """A memory store whose reads raise whatever the test queues (then answer normally)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[BaseException] = []
        self.reads = 0

    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        self.reads += 1
        if self.failures:
            raise self.failures.pop(0)
        return await super().read(keys)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1000.0)


def breaker_on(inner: Flaky, clock: ManualClock, threshold: int = 3, cooldown: float = 5.0) -> Storage:
    backend = guarded(inner, BreakerPolicy(threshold, cooldown), "flaky")
    backend.breaker._clock = clock  # type: ignore[attr-defined]
    return Storage(backend)


async def fail_reads(storage: Storage, inner: Flaky, errors: list[BaseException]) -> None:
    inner.failures.extend(errors)
    for error in errors:
        with pytest.raises(type(error)):
            await storage.get("deal:1")


async def test_it_opens_after_threshold_consecutive_outages_and_refuses_without_calling(clock) -> None:
    inner = Flaky()
    async with breaker_on(inner, clock) as storage:
        await fail_reads(storage, inner, [StorageTimeoutError("t"), UnavailableError("refused")])
        assert await storage.get("deal:1") is None  # a success in between: the count starts again
        await fail_reads(
            storage, inner, [StorageTimeoutError("t"), OutcomeUnknownError("reset"), UnavailableError("x")]
        )
        reads = inner.reads
        with pytest.raises(CircuitOpenError) as info:
            await storage.get("deal:1")
        assert inner.reads == reads, "an open breaker must not call the store"
        message = str(info.value)
        assert "flaky: circuit breaker open after 3 consecutive failures (last: UnavailableError)" in message
        assert "failing fast until" in message
        assert " UTC" in message
        assert isinstance(info.value, UnavailableError)  # `except UnavailableError` keeps working
        facts = await storage.info()
        assert facts["breaker"]["state"] == "open"  # type: ignore[index]
        assert facts["breaker"]["trips"] == 1  # type: ignore[index]


@pytest.mark.parametrize(
    "answer",
    [VersionConflictError("lost"), InvalidValueError("not an int"), BusyError("pool exhausted"), KeyError("x")],
    ids=lambda e: type(e).__name__,
)
async def test_answers_are_not_outages(clock, answer) -> None:
    inner = Flaky()
    async with breaker_on(inner, clock, threshold=2) as storage:
        await fail_reads(storage, inner, [StorageTimeoutError("t"), answer, StorageTimeoutError("t")])
        assert await storage.get("deal:1") is None, "an answer in between resets the count: still closed"


async def test_after_the_cooldown_one_call_probes_and_success_closes(clock) -> None:
    inner = Flaky()
    async with breaker_on(inner, clock, threshold=1, cooldown=5.0) as storage:
        backend = storage.backend
        breaker: CircuitBreaker = backend.breaker  # type: ignore[attr-defined]
        await fail_reads(storage, inner, [StorageTimeoutError("t")])
        clock.advance(4.9)
        with pytest.raises(CircuitOpenError):
            await storage.get("deal:1")
        clock.advance(0.2)
        assert breaker.state is BreakerState.HALF_OPEN
        await fail_reads(storage, inner, [StorageTimeoutError("probe fails")])  # the probe
        assert breaker.describe()["state"] == "open", "a failed probe opens the breaker for another cool-down"
        with pytest.raises(CircuitOpenError):
            await storage.get("deal:1")
        clock.advance(5.0)
        assert await storage.get("deal:1") is None  # the probe succeeds
        assert breaker.describe()["state"] == "closed"
        assert breaker.describe()["consecutive_failures"] == 0


async def test_while_the_probe_is_in_flight_the_others_fail_fast(clock) -> None:
    gate = asyncio.Event()

    class Slow(Flaky):
        async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
            await gate.wait()
            return await super().read(keys)

    inner = Slow()
    backend = guarded(inner, BreakerPolicy(1, 5.0), "slow")
    backend.breaker._clock = clock  # type: ignore[attr-defined]
    async with Store(backend, coalesce=False) as store:  # each call its own round trip
        inner.failures.append(StorageTimeoutError("t"))
        gate.set()
        with pytest.raises(StorageTimeoutError):
            await store.get("deal:1")
        gate.clear()
        clock.advance(5.0)
        probe = asyncio.create_task(store.get("deal:probe"))
        await asyncio.sleep(0)
        with pytest.raises(CircuitOpenError, match="a probe call is in flight"):
            await store.get("deal:2")
        gate.set()
        assert await probe is None
        assert await store.get("deal:2") is None


async def test_a_cancelled_probe_gives_its_place_to_the_next_call(clock) -> None:
    gate = asyncio.Event()

    class Hanging(Flaky):
        async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
            if not self.failures:
                await gate.wait()
            return await super().read(keys)

    inner = Hanging()
    async with breaker_on(inner, clock, threshold=1) as storage:
        await fail_reads(storage, inner, [StorageTimeoutError("t")])
        clock.advance(5.0)
        probe = asyncio.create_task(storage.store.get("deal:probe"))
        await asyncio.sleep(0)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        gate.set()
        assert await storage.get("deal:next") is None, "after a cancelled probe, the next call probes"


def test_the_guarded_backend_answers_isinstance_as_its_backend_does() -> None:
    policy = BreakerPolicy()
    memory = guarded(MemoryBackend(), policy)
    assert isinstance(memory, SupportsPubSub)
    assert isinstance(memory, SupportsTransactions)
    assert not isinstance(memory, SupportsRemovePrefix)
    assert isinstance(memory, SupportsTelemetry)  # a hook the memory backend has (on 3.11 to 3.13 alike)
    plain = guarded(DictStore(), policy)
    assert plain.capabilities == {Capability.EXPIRY}  # flags: the inner's, the truth
    assert not isinstance(plain, SupportsTelemetry)
    assert not isinstance(plain, SupportsQuery)
    assert unwrap(memory).name == "memory"
    assert repr(memory) == repr(unwrap(memory))
    assert not hasattr(plain, "_rows"), "no read-through: the backend's own attributes are on unwrap(backend)"


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        BreakerPolicy(0, 1.0)
    with pytest.raises(ValueError, match="cooldown"):
        BreakerPolicy(1, 0.0)


# -- the real thing: Redis blackholed behind the hybrid router ---------------------------------


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    schema, prefix = new_schema(), new_prefix()
    yield schema, prefix
    drop_pg_schema(schema)
    drop_redis_prefix(prefix)


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    async with FaultProxy(port) as running:
        yield running


async def timed(call: Awaitable[object]) -> tuple[float, BaseException | None]:
    started = time.perf_counter()
    try:
        await call
    except Exception as exc:  # the outcome is what the test looks at
        return time.perf_counter() - started, exc
    return time.perf_counter() - started, None


async def test_a_redis_outage_fails_session_calls_fast_leaves_postgres_alone_and_heals(
    monkeypatch, namespaces, proxy, clock
) -> None:
    schema, prefix = namespaces
    monkeypatch.setenv("DATABASE_URL", POSTGRES_URL)
    monkeypatch.setenv("POSTGRES_SCHEMA", schema)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{proxy.port}/0")
    monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
    storage = get_storage_backend(
        "hybrid", storage_command_timeout=0.5, storage_breaker_threshold=3, storage_breaker_cooldown=1.5
    )
    async with storage:
        await storage.set_session("s1", {"user": "u"})
        await storage.set_deal("d1", {"status": "active"})
        # The cool-down runs on the test's clock: however slow the machine, it ends when told.
        storage.backend.route_for("session:s1").backend.breaker._clock = clock  # type: ignore[attr-defined]

        proxy.mode = "blackhole"
        proxy.cut_all()
        waits = []
        for _ in range(3):  # each waits out the command timeout, then the breaker opens
            elapsed, error = await timed(storage.get_session("s1"))
            assert isinstance(error, UnavailableError), error
            assert not isinstance(error, CircuitOpenError), "the breaker opens after 3 failures, not before"
            waits.append(elapsed)
        with tcp_connections() as dialled:
            for _ in range(20):
                _, error = await timed(storage.get_session("s1"))
                assert isinstance(error, CircuitOpenError), error
            to_redis = [d for d in dialled if d[1] == proxy.port]
            assert to_redis == [], f"once open, calls fail at once, without trying Redis: {to_redis}"
            for _ in range(20):
                _, error = await timed(storage.get_deal("d1"))
                assert error is None, "a Redis outage must not fail calls routed to PostgreSQL"
            to_redis = [d for d in dialled if d[1] == proxy.port]
            assert to_redis == [], f"PostgreSQL-bound calls are not slowed: they never wait on Redis: {to_redis}"
        assert min(waits) >= 0.4, f"before the breaker opens a call waits out its timeout: {waits}"
        facts = await storage.info()
        redis_facts = next(v for k, v in facts.items() if k.startswith("redis"))
        assert redis_facts["breaker"]["state"] == "open"  # type: ignore[index]

        proxy.mode = "pass"
        clock.advance(1.6)  # the cool-down, after which one call probes
        assert await storage.get_session("s1") == {"user": "u"}, "the breaker recovers by itself"
        assert [await storage.get_session("s1") for _ in range(3)] == [{"user": "u"}] * 3
        await storage.clear()


async def test_breakers_are_off_with_threshold_zero(monkeypatch) -> None:
    monkeypatch.setenv("STORAGE_BREAKER_THRESHOLD", "0")
    storage = get_storage_backend("memory")
    assert storage.backend is unwrap(storage.backend)
    monkeypatch.setenv("STORAGE_BREAKER_THRESHOLD", "4")
    guarded_storage = get_storage_backend("memory")
    assert guarded_storage.backend is not unwrap(guarded_storage.backend)
    assert guarded_storage.backend.breaker.policy == BreakerPolicy(4, 5.0)  # type: ignore[attr-defined]
