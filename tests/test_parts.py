"""SupportsParts: reports walk any composite, whatever its class (issue 24, point 4a).

A stranger's composite, a tiny sharding router defined here, gets per-part metrics and route
labels from OpenTelemetry and a per-part report from ``doctor``, as the hybrid router does.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ad_buyer_storage import Capability, Storage, UnavailableError
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.cli import diagnose
from ad_buyer_storage.cli.main import main
from ad_buyer_storage.composed import BreakerPolicy, guarded
from ad_buyer_storage.composed.hybrid import HybridBackend, Route
from ad_buyer_storage.composed.mirror import mirror_of
from ad_buyer_storage.contract.glob import GlobPattern
from ad_buyer_storage.contract.protocol import (
    Peer,
    PoolUsage,
    Record,
    StorageBackend,
    SupportsParts,
    SupportsRouting,
    Write,
)
from ad_buyer_storage.otel import StorageInstrumentor

T = TypeVar("T")


class Shard(MemoryBackend):
    """A store of the stranger's own, with a pool to report."""

    def __init__(self, label: str, *, down: bool = False) -> None:
        super().__init__()
        self.label, self.down = label, down

    def peer(self) -> Peer:
        return Peer("shardstore", namespace=self.label)

    def pool_usage(self) -> PoolUsage | None:
        return PoolUsage(used=1, idle=2, max=4)

    async def connect(self) -> None:
        if self.down:
            raise UnavailableError(f"{self.label}: connection refused")


class Sharded:
    """Keys spread over shards by a hash of the key: the mandatory primitives only."""

    name = "sharded"
    capabilities: frozenset[Capability] = frozenset()

    def __init__(self, shards: Mapping[str, StorageBackend]) -> None:
        self.shards = dict(shards)
        self._labels = sorted(self.shards)

    def route_of(self, key: str) -> str:
        return self._labels[zlib.crc32(key.encode()) % len(self._labels)]

    def capabilities_for(self, key: str) -> frozenset[Capability]:
        return self.capabilities

    def parts(self) -> Iterable[tuple[str, StorageBackend]]:
        return self.shards.items()

    async def _each(self, call: Callable[[StorageBackend], Awaitable[T]]) -> list[T]:
        return list(await asyncio.gather(*(call(shard) for shard in self.shards.values())))

    async def connect(self) -> None:
        await self._each(lambda shard: shard.connect())

    async def aclose(self) -> None:
        await self._each(lambda shard: shard.aclose())

    async def ping(self) -> None:
        await self._each(lambda shard: shard.ping())

    async def info(self) -> Mapping[str, object]:
        return {"backend": self.name, "shards": len(self.shards)}

    def _by_shard(self, keys: Sequence[str]) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(self.route_of(key), []).append(i)
        return groups

    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        out: list[Record | None] = [None] * len(keys)
        for label, idx in self._by_shard(keys).items():
            for i, record in zip(idx, await self.shards[label].read([keys[i] for i in idx]), strict=True):
                out[i] = record
        return out

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        out = [False] * len(writes)
        for label, idx in self._by_shard([w.key for w in writes]).items():
            for i, applied in zip(idx, await self.shards[label].write([writes[i] for i in idx]), strict=True):
                out[i] = applied
        return out

    async def remove(self, keys: Sequence[str]) -> int:
        groups = self._by_shard(keys).items()
        return sum([await self.shards[label].remove([keys[i] for i in idx]) for label, idx in groups])

    async def count(self, keys: Sequence[str]) -> int:
        groups = self._by_shard(keys).items()
        return sum([await self.shards[label].count([keys[i] for i in idx]) for label, idx in groups])

    async def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        for shard in self.shards.values():
            async for key in shard.scan(pattern, batch_size):
                yield key


def test_the_stranger_s_router_is_a_composite_by_protocol() -> None:
    router = Sharded({"a": Shard("a"), "b": Shard("b")})
    assert isinstance(router, StorageBackend)
    assert isinstance(router, SupportsParts)
    assert isinstance(router, SupportsRouting)
    for composite in (
        guarded(MemoryBackend(), BreakerPolicy()),
        mirror_of(MemoryBackend(), MemoryBackend()),
        HybridBackend([Route("", MemoryBackend(), "m")]),
    ):
        assert isinstance(composite, SupportsParts), type(composite)


@pytest.fixture
def recorded() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentor = StorageInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield exporter, reader
    finally:
        instrumentor.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [
        point
        for resource in (data.resource_metrics if data else ())
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


async def test_a_stranger_s_composite_gets_per_part_metrics_and_route_labels(
    recorded: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    exporter, reader = recorded
    shards = {"shard-a": Shard("shard-a"), "shard-b": Shard("shard-b")}
    router = Sharded({label: guarded(shard, BreakerPolicy(), label) for label, shard in shards.items()})
    keys = [f"deal:{i}" for i in range(8)]
    assert {router.route_of(k) for k in keys} == set(shards), "both shards serve some of these keys"
    async with Storage(router, coalesce=False) as storage:
        for key in keys:
            await storage.set(key, 1)
        pools = _points(reader, "db.client.connection.count")
        breakers = _points(reader, "ad_buyer_storage.breaker.state")
    where = {(p.attributes["ad_buyer_storage.route"], p.attributes["db.namespace"]) for p in pools}
    assert where == {("shard-a", "shard-a"), ("shard-b", "shard-b")}, "one pool per part, labelled with its route"
    assert {p.attributes["ad_buyer_storage.breaker"] for p in breakers} == set(shards)
    sets = [s for s in exporter.get_finished_spans() if (s.attributes or {}).get("db.operation.name") == "set"]
    for key, span in zip(keys, sets, strict=True):  # one after the other: in order
        attributes = span.attributes or {}
        assert attributes["ad_buyer_storage.route"] == router.route_of(key)
        assert attributes["db.system.name"] == "shardstore"


def test_doctor_reports_each_part_of_a_stranger_s_composite(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    router = Sharded({"shard-a": Shard("shard-a"), "shard-b": Shard("shard-b", down=True)})
    monkeypatch.setattr(diagnose, "get_storage_backend", lambda **_: Storage(router))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "route table (keyspace -> part):" in out
    assert f"  {'deal:':<18} -> {router.route_of('deal:')}" in out
    assert "  shard-a: ok in" in out
    assert "  shard-b: UNAVAILABLE (UnavailableError: shard-b: connection refused)" in out
    assert "UNHEALTHY: shard-b unavailable:" in out

    healthy = Sharded({"shard-a": Shard("shard-a"), "shard-b": Shard("shard-b")})
    monkeypatch.setattr(diagnose, "get_storage_backend", lambda **_: Storage(healthy))
    assert main(["doctor"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("healthy")
