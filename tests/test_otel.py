"""OpenTelemetry: spans and metrics recorded with the SDK's in-memory exporter and reader, on
every backend (memory, SQLite, Redis, PostgreSQL, the hybrid router); nothing secret recorded;
nothing of OpenTelemetry imported, nor paid for, until something instruments us."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import pytest

from ad_buyer_storage import Storage, Store, get_storage_backend
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.client import telemetry
from ad_buyer_storage.composed import BreakerPolicy, guarded
from ad_buyer_storage.contract import Record
from ad_buyer_storage.errors import CircuitOpenError, KeyNotFoundError, UnavailableError
from ad_buyer_storage.sync import SyncStorage
from tests._support.shared import POSTGRES_URL, REDIS_URL, drop_pg_schema, drop_redis_prefix, new_prefix, new_schema

HAVE_SDK = find_spec("opentelemetry") is not None and find_spec("opentelemetry.sdk") is not None
needs_sdk = pytest.mark.skipif(not HAVE_SDK, reason="opentelemetry-sdk is not installed (the dev extra installs it)")

if HAVE_SDK:
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    from ad_buyer_storage.otel import DURATION_BUCKETS, StorageInstrumentor

BACKENDS = ["memory", "sqlite", "redis", "postgres", "hybrid"]
SYSTEM = {"memory": "memory", "sqlite": "sqlite", "redis": "redis", "postgres": "postgresql", "hybrid": "postgresql"}
PASSWORD = "Pw-" + uuid.uuid4().hex[:10]  # PostgreSQL trusts the test client: any password connects


class Recorded(NamedTuple):
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self) -> dict[str, list[Any]]:
        """Metric name -> its data points (a fresh collection)."""
        out: dict[str, list[Any]] = {}
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentor = StorageInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Recorded(exporter, reader)
    finally:
        instrumentor.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()


@pytest.fixture
def storage_of(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """``storage_of(backend)``: a Storage on that backend, isolated; cleaned up afterwards."""
    schemas: list[str] = []
    prefixes: list[str] = []

    def make(backend: str) -> Storage:
        if backend in ("postgres", "hybrid"):
            schemas.append(new_schema())
            monkeypatch.setenv("DATABASE_URL", POSTGRES_URL.replace("postgres@", f"postgres:{PASSWORD}@", 1))
            monkeypatch.setenv("POSTGRES_SCHEMA", schemas[-1])
        if backend in ("redis", "hybrid"):
            prefixes.append(new_prefix())
            monkeypatch.setenv("REDIS_URL", REDIS_URL)
            monkeypatch.setenv("REDIS_KEY_PREFIX", prefixes[-1])
        if backend == "sqlite":
            return get_storage_backend("sqlite", database_url=f"sqlite:///{tmp_path}/otel.db")
        return get_storage_backend(backend)

    yield make
    for schema in schemas:
        drop_pg_schema(schema)
    for prefix in prefixes:
        drop_redis_prefix(prefix)


@pytest.fixture
async def storage(request: pytest.FixtureRequest, storage_of: Any) -> AsyncIterator[Storage]:
    store: Storage = storage_of(request.param)
    async with store:
        yield store
        await store.clear()


def attrs(span: ReadableSpan) -> Mapping[str, Any]:
    return span.attributes or {}


def pattrs(point: Any) -> Mapping[str, Any]:
    found: Mapping[str, Any] | None = point.attributes
    return found or {}


def by_operation(spans: list[ReadableSpan], operation: str) -> list[ReadableSpan]:
    return [s for s in spans if attrs(s).get("db.operation.name") == operation]


# -- spans -------------------------------------------------------------------------------------
@needs_sdk
@pytest.mark.parametrize("storage", BACKENDS, indirect=True)
async def test_one_client_span_per_operation_with_the_conventions_attributes(
    storage: Storage, recorded: Recorded, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["storage"]
    recorded.spans.clear()
    await storage.set_deal("d1", {"status": "active"})
    assert await storage.get_deal("d1") == {"status": "active"}
    assert await storage.get("deal:nope") is None
    await storage.set_many({"deal:a": 1, "deal:b": 2, "deal:c": 3})
    assert await storage.get_many(["deal:a", "deal:b", "deal:zz"]) == {"deal:a": 1, "deal:b": 2}
    await storage.incr("pacing:p1", 5)

    spans = recorded.finished()
    assert [attrs(s)["db.operation.name"] for s in spans] == ["set", "get", "get", "set_many", "get_many", "incr"]
    for span in spans:
        assert span.kind is SpanKind.CLIENT
        assert attrs(span)["db.system.name"] == SYSTEM[backend], span.name
        assert span.parent is None  # each a logical operation of its own, not a child of another
    get = by_operation(spans, "get")[0]
    assert get.name == "get deal"
    assert attrs(get)["db.collection.name"] == "deal"
    assert "db.operation.batch.size" not in attrs(get)
    assert attrs(by_operation(spans, "set_many")[0])["db.operation.batch.size"] == 3
    assert attrs(by_operation(spans, "get_many")[0])["db.operation.batch.size"] == 3
    assert attrs(by_operation(spans, "incr")[0])["db.collection.name"] == "pacing"
    if backend in ("postgres", "hybrid"):
        assert attrs(get)["server.address"] == "127.0.0.1"
        assert attrs(get)["server.port"] == 5432
        assert attrs(get)["db.namespace"] == f"test.{os.environ['POSTGRES_SCHEMA']}"
    if backend == "redis":
        assert (attrs(get)["server.address"], attrs(get)["server.port"], attrs(get)["db.namespace"]) == (
            "127.0.0.1",
            6379,
            "0",
        )
    if backend == "sqlite":
        assert str(attrs(get)["db.namespace"]).endswith("otel.db")
        assert "server.address" not in attrs(get)
    if backend == "hybrid":
        assert attrs(get)["ad_buyer_storage.route"] == "postgres"


@needs_sdk
@pytest.mark.parametrize("storage", BACKENDS, indirect=True)
async def test_metrics_duration_reads_pools_and_breakers(
    storage: Storage, recorded: Recorded, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["storage"]
    await storage.set_deal("d1", {"status": "active"})
    await storage.get_deal("d1")
    await storage.get_deal("missing")
    await storage.get_many(["deal:d1", "deal:x", "deal:y"])
    points = recorded.points()

    durations = [p for p in points["db.client.operation.duration"] if isinstance(p, HistogramDataPoint)]
    operations = {pattrs(p)["db.operation.name"] for p in durations}
    assert {"set", "get", "get_many"} <= operations
    assert all(tuple(p.explicit_bounds) == DURATION_BUCKETS for p in durations)
    assert all(pattrs(p)["db.system.name"] == SYSTEM[backend] for p in durations if "deal" in str(pattrs(p)))

    reads: dict[bool, int] = {}
    for p in points["ad_buyer_storage.client.reads"]:
        assert isinstance(p, NumberDataPoint)
        assert pattrs(p)["db.collection.name"] == "deal"
        reads[bool(pattrs(p)["ad_buyer_storage.read.hit"])] = int(p.value)
    assert reads == {True: 2, False: 3}  # get d1, d1 in the bulk read; missing, x, y

    breakers = points.get("ad_buyer_storage.breaker.state", [])
    assert breakers, "every backend the factory builds has a breaker"
    assert all(p.value == 0 for p in breakers), "closed"
    pools = points.get("db.client.connection.count", [])
    if backend == "memory":
        assert not pools
        return
    states = {(pattrs(p)["db.system.name"], pattrs(p)["db.client.connection.state"]) for p in pools}
    systems = {"hybrid": {"postgresql", "redis"}}.get(backend, {SYSTEM[backend]})
    assert states == {(s, state) for s in systems for state in ("idle", "used")}
    names = {pattrs(p)["db.system.name"]: pattrs(p)["db.client.connection.pool.name"] for p in pools}
    if "sqlite" in names:
        assert str(names["sqlite"]).endswith("otel.db")
        assert not str(names["sqlite"]).startswith("//")
    if "postgresql" in names:
        assert names["postgresql"] == f"127.0.0.1:5432/test.{os.environ['POSTGRES_SCHEMA']}"
    if "redis" in names:
        assert names["redis"] == "127.0.0.1:6379/0"
    pending = {pattrs(p)["db.system.name"]: p.value for p in points.get("db.client.connection.pending_requests", [])}
    assert pending == {s: 0 for s in systems if s != "sqlite"}, "nothing waits for a connection here"
    maxima = {pattrs(p)["db.system.name"]: p.value for p in points["db.client.connection.max"]}
    assert maxima == {s: {"sqlite": 1, "postgresql": 10, "redis": 50}[s] for s in systems}
    if backend == "hybrid":
        routes = {pattrs(p).get("ad_buyer_storage.route") for p in pools}
        assert routes == {"postgres", "redis"}


@needs_sdk
@pytest.mark.parametrize("storage", ["memory", "hybrid"], indirect=True)
async def test_errors_record_their_class_name_and_nothing_of_their_message(
    storage: Storage, recorded: Recorded
) -> None:
    with pytest.raises(KeyNotFoundError):
        await storage.ttl("deal:absent-key")
    (span,) = by_operation(recorded.finished(), "ttl")
    assert attrs(span)["error.type"] == "KeyNotFoundError"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "KeyNotFoundError"
    assert not span.events, "an exception event would carry its message, which quotes the key"
    failed = [p for p in recorded.points()["db.client.operation.duration"] if pattrs(p).get("error.type")]
    assert [pattrs(p)["error.type"] for p in failed] == ["KeyNotFoundError"]


@needs_sdk
@pytest.mark.parametrize("backend", ["postgres", "hybrid", "redis", "sqlite"])
async def test_keys_values_and_credentials_are_never_recorded(
    backend: str, storage_of: Any, recorded: Recorded
) -> None:
    secret_key = "k" + uuid.uuid4().hex
    secret_value = "v" + uuid.uuid4().hex
    store: Storage = storage_of(backend)
    async with store:
        await store.set(f"deal:{secret_key}", {"note": secret_value})
        await store.get(f"deal:{secret_key}")
        await store.get(secret_key)  # a key without a keyspace: not even a collection is recorded
        await store.set_many({f"session:{secret_key}": secret_value, f"deal:{secret_key}2": secret_value})
        await store.get_many([f"deal:{secret_key}", f"session:{secret_key}"])
        await store.update(f"deal:{secret_key}", lambda d: {**d, "n": secret_value})
        await store.keys(f"deal:{secret_key}*")
        with pytest.raises(KeyNotFoundError):
            await store.ttl(f"deal:{secret_key}-gone")
        await asyncio.gather(*(store.get(f"deal:{secret_key}{i}") for i in range(8)))
        await store.clear()
    points = recorded.points()
    spans = recorded.finished()
    assert len(spans) >= 10
    assert points
    texts: list[str] = []
    for span in spans:
        texts += [span.name, repr(span.attributes), repr(span.status.description), repr(span.resource.attributes)]
        texts += [f"{e.name} {e.attributes!r}" for e in span.events]
        texts += [repr(link.attributes) for link in span.links]
    texts += [f"{name} {p.attributes!r}" for name, found in points.items() for p in found]
    blob = "\n".join(texts)
    for secret in (secret_key, secret_value, PASSWORD):
        assert secret not in blob
    assert "deal" in blob  # the sweep did see what was recorded


# -- coalescing, retries, nesting --------------------------------------------------------------
@needs_sdk
@pytest.mark.parametrize("storage", ["sqlite", "redis", "postgres"], indirect=True)  # memory never waits: no batch
async def test_coalesced_callers_keep_a_span_each_linked_to_their_batch(storage: Storage, recorded: Recorded) -> None:
    await storage.set_many({f"deal:{i}": i for i in range(32)})
    recorded.spans.clear()
    found = await asyncio.gather(*(storage.get(f"deal:{i}") for i in range(32)))
    assert found == list(range(32))
    spans = recorded.finished()
    gets = by_operation(spans, "get")
    batches = by_operation(spans, "BATCH read")
    assert len(gets) == 32, "one span per caller"
    assert batches, "concurrent gets were sent in batches"
    batch_ids = {b.context.span_id for b in batches}
    linked = [g for g in gets if any(link.context.span_id in batch_ids for link in g.links)]
    assert len(linked) == sum(int(attrs(b).get("db.operation.batch.size", 1)) for b in batches)
    assert len(linked) >= 2
    for batch in batches:
        assert batch.parent is None
        assert batch.kind is SpanKind.CLIENT
        assert {link.context.span_id for link in batch.links} <= {g.context.span_id for g in gets}
        assert attrs(batch)["db.system.name"] == attrs(gets[0])["db.system.name"]
    direct = [g for g in gets if not g.links]
    assert direct, "the first caller went at once, without a batch"


@needs_sdk
@pytest.mark.parametrize("storage", ["memory"], indirect=True)
async def test_retries_stay_inside_their_operations_span(storage: Storage, recorded: Recorded) -> None:
    await storage.set("pacing:spend", 0)
    recorded.spans.clear()

    runs = 0

    async def overtaken_once(n: int) -> int:
        nonlocal runs
        runs += 1
        if runs == 1:
            await storage.set("pacing:spend", 100)  # another writer: the first attempt conflicts
        return n + 1

    assert await storage.update("pacing:spend", overtaken_once) == 101
    assert runs == 2, "the update conflicted once and retried"
    updates = by_operation(recorded.finished(), "update")
    assert len(updates) == 1, "one span per update, however many attempts it took"

    recorded.spans.clear()
    attempts = 0

    async def conflicting(tx: Any) -> None:
        nonlocal attempts
        attempts += 1
        await tx.get("pacing:spend")
        if attempts == 1:
            await storage.set("pacing:spend", 100)  # another writer: the first commit conflicts
        tx.set("pacing:spend", 1)

    await storage.transact(conflicting)
    spans = recorded.finished()
    (transact,) = by_operation(spans, "transact")
    transactions = by_operation(spans, "transaction")
    assert attempts == 2
    assert len(transactions) == 2
    assert all(t.parent is not None and t.parent.span_id == transact.context.span_id for t in transactions)
    assert attrs(transactions[0])["error.type"] == "TransactionConflictError"
    assert "error.type" not in attrs(transact)


@needs_sdk
@pytest.mark.parametrize("storage", ["hybrid"], indirect=True)
async def test_the_hybrid_router_labels_spans_and_metrics_with_the_route(storage: Storage, recorded: Recorded) -> None:
    await storage.set_session("s1", {"user": "u"})
    await storage.set_deal("d1", {"status": "active"})
    await storage.set_many({"session:a": 1, "deal:a": 2})  # two routes: no single route to name
    spans = recorded.finished()
    session, deal, both = spans[-3:]
    assert (attrs(session)["ad_buyer_storage.route"], attrs(session)["db.system.name"]) == ("redis", "redis")
    assert (attrs(deal)["ad_buyer_storage.route"], attrs(deal)["db.system.name"]) == ("postgres", "postgresql")
    assert "ad_buyer_storage.route" not in attrs(both)
    assert attrs(both)["db.system.name"] == "hybrid"
    await storage.keys("session:*")
    await storage.keys("*")  # every route: none named
    by_pattern, everywhere = recorded.finished()[-2:]
    assert attrs(by_pattern)["ad_buyer_storage.route"] == "redis"
    assert "ad_buyer_storage.route" not in attrs(everywhere)
    routes = {pattrs(p).get("ad_buyer_storage.route") for p in recorded.points()["db.client.operation.duration"]}
    assert {"redis", "postgres"} <= routes


@needs_sdk
async def test_an_open_breaker_shows_in_its_gauge(recorded: Recorded) -> None:
    class Down(MemoryBackend):
        async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
            raise UnavailableError("connection refused")

    storage = Storage(guarded(Down(), BreakerPolicy(threshold=1, cooldown=60), "down"))
    async with storage:
        with pytest.raises(UnavailableError):
            await storage.get("deal:1")
        (gauge,) = recorded.points()["ad_buyer_storage.breaker.state"]
        assert gauge.value == 2
        assert pattrs(gauge)["ad_buyer_storage.breaker"] == "down"
        with pytest.raises(CircuitOpenError):
            await storage.get("deal:1")
        (span,) = by_operation(recorded.finished(), "get")[-1:]
        assert attrs(span)["error.type"] == "CircuitOpenError"


@needs_sdk
def test_the_sync_facades_calls_are_children_of_the_callers_span(recorded: Recorded) -> None:
    caller = TracerProvider().get_tracer("app")  # another provider: only ours go to the exporter
    storage = SyncStorage(get_storage_backend("memory"))
    try:
        with caller.start_as_current_span("request") as request:
            storage.set("deal:1", 1)
            assert storage.get("deal:1") == 1
    finally:
        storage.close()
    spans = [s for s in recorded.finished() if attrs(s).get("db.operation.name") in ("set", "get")]
    assert len(spans) == 2
    assert all(s.parent is not None and s.parent.span_id == request.get_span_context().span_id for s in spans)


@needs_sdk
async def test_a_store_subclass_override_runs_once_per_call(recorded: Recorded) -> None:
    class Counting(Store):
        calls = 0

        async def get(self, key: str, default: Any = None, **options: Any) -> Any:
            Counting.calls += 1
            return await super().get(key, default, **options)

    async with Counting(MemoryBackend()) as store:
        await store.set("deal:1", 1)
        assert await store.get("deal:1") == 1
    assert Counting.calls == 1, "the operation re-enters Store.get itself, not the override"
    assert [attrs(s)["db.operation.name"] for s in recorded.finished()] == ["set", "get"]


@needs_sdk
async def test_a_mirror_reports_its_primary_and_both_sides_pools_and_breakers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, recorded: Recorded
) -> None:
    monkeypatch.setenv("MIRROR_PRIMARY", f"sqlite:///{tmp_path}/primary.db")
    monkeypatch.setenv("MIRROR_SECONDARY", "memory")
    async with get_storage_backend("mirror") as storage:
        await storage.set_deal("d1", {"status": "active"})
        assert await storage.get_deal("d1") == {"status": "active"}
        (get,) = by_operation(recorded.finished(), "get")
        assert attrs(get)["db.system.name"] == "sqlite", "reads come from the primary"
        points = recorded.points()
        sides = {
            (pattrs(p)["ad_buyer_storage.route"], pattrs(p)["db.system.name"])
            for p in points["ad_buyer_storage.breaker.state"]
        }
        assert sides == {("primary", "sqlite"), ("secondary", "memory")}
        pools = {pattrs(p)["ad_buyer_storage.route"] for p in points["db.client.connection.count"]}
        assert pools == {"primary"}, "the memory side has no pool"
        await storage.clear()


@needs_sdk
async def test_a_failing_tracer_never_fails_or_strands_an_operation(storage_of: Any) -> None:
    class Broken(trace.Tracer):
        def start_span(self, *args: Any, **kwargs: Any) -> NoReturn:
            raise RuntimeError("a broken tracer")

        def start_as_current_span(self, *args: Any, **kwargs: Any) -> NoReturn:
            raise RuntimeError("a broken tracer")

    class BrokenProvider(trace.TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
            return Broken()

    instrumentor = StorageInstrumentor()
    instrumentor.instrument(tracer_provider=BrokenProvider(), meter_provider=MeterProvider())
    try:
        store: Storage = storage_of("sqlite")
        async with store:
            await store.set_many({f"deal:{i}": i for i in range(32)})
            found = await asyncio.gather(*(store.get(f"deal:{i}") for i in range(32)))  # batches too
            assert found == list(range(32))
            async with store.transaction() as tx:
                tx.set("deal:x", 1)
            assert await store.get("deal:x") == 1
            await store.clear()
    finally:
        instrumentor.uninstrument()


# -- turning it on and off ---------------------------------------------------------------------
@needs_sdk
async def test_instrument_and_uninstrument_are_idempotent(storage_of: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    first, second = StorageInstrumentor(), StorageInstrumentor()
    assert telemetry.hook is None
    assert not first.is_instrumented_by_opentelemetry
    first.instrument(tracer_provider=provider, meter_provider=MeterProvider())
    hook = telemetry.hook
    second.instrument(tracer_provider=TracerProvider())  # already on: nothing changes
    assert telemetry.hook is hook
    assert second.is_instrumented_by_opentelemetry
    store: Storage = storage_of("memory")
    async with store:
        await store.set("deal:1", 1)
        assert len(exporter.get_finished_spans()) == 1
        second.uninstrument()
        first.uninstrument()
        assert telemetry.hook is None
        await store.set("deal:1", 2)
        assert await store.get("deal:1") == 2
    assert len(exporter.get_finished_spans()) == 1, "nothing recorded once uninstrumented"
    provider.shutdown()


@needs_sdk
def test_registered_for_opentelemetry_instrument() -> None:
    (entry,) = [
        e for e in importlib.metadata.entry_points(group="opentelemetry_instrumentor") if e.name == "ad_buyer_storage"
    ]
    assert entry.load() is StorageInstrumentor
    assert StorageInstrumentor().instrumentation_dependencies() == ()


@needs_sdk
def test_opentelemetry_instrument_turns_it_on_with_no_code_change(tmp_path: Path) -> None:
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    if not launcher.exists():
        pytest.skip("opentelemetry-instrumentation is not installed (the dev extra installs it)")
    app = tmp_path / "app.py"
    app.write_text(
        textwrap.dedent(
            """
            import asyncio
            from ad_buyer_storage import open_storage
            from ad_buyer_storage.client import telemetry

            async def main():
                async with open_storage("memory") as storage:
                    await storage.set("deal:1", 1)
                print(type(telemetry.hook).__name__)

            asyncio.run(main())
            """
        )
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    instrumented = subprocess.run(
        [str(launcher), sys.executable, str(app)], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert instrumented.returncode == 0, instrumented.stderr
    assert instrumented.stdout.strip() == "_Hook"
    plain = subprocess.run([sys.executable, str(app)], capture_output=True, text=True, timeout=60, check=False)
    assert plain.stdout.strip() == "NoneType"


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )


def test_without_instrumentation_nothing_imports_opentelemetry() -> None:
    result = _run(
        """
        import asyncio, sys
        import ad_buyer_storage
        from ad_buyer_storage import open_storage

        async def main():
            async with open_storage("memory") as storage:
                await storage.set_deal("d1", {"status": "active"})
                assert await storage.get_deal("d1") == {"status": "active"}
                await asyncio.gather(*(storage.get(f"deal:{i}") for i in range(20)))
                async with storage.transaction() as tx:
                    tx.set("deal:2", 2)
                await storage.clear()

        asyncio.run(main())
        assert "opentelemetry" not in sys.modules, sorted(m for m in sys.modules if "opentelemetry" in m)
        assert "ad_buyer_storage.otel" not in sys.modules
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_without_the_extra_the_store_works_and_the_instrumentor_says_what_to_install() -> None:
    result = _run(
        """
        import asyncio, sys

        class NoOpenTelemetry:  # as if the otel extra were not installed
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())
        from ad_buyer_storage import open_storage

        async def main():
            async with open_storage("memory") as storage:
                await storage.set("deal:1", 1)
                assert await storage.get("deal:1") == 1

        asyncio.run(main())
        try:
            from ad_buyer_storage import StorageInstrumentor
        except ModuleNotFoundError as exc:
            print("missing", exc.name)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "missing opentelemetry"
