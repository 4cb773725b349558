"""What OpenTelemetry instrumentation costs per operation: off (the default), on with the API's
no-op providers, and on with the SDK recording every span and metric.

Per backend, in the same process and run, alternating the modes within each repetition:

* ``get`` and ``set``, one at a time;
* ``get x64``: 64 concurrent ``get``s (coalesced batches: one span per caller and one per batch).

*off* is what every user without the ``otel`` extra runs: one ``if`` per operation. With the
SDK, spans go through a ``SimpleSpanProcessor`` to an exporter that drops them (the export
itself is the application's cost, not ours) and metrics are aggregated by an in-memory reader.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider

from ad_buyer_storage import Storage
from ad_buyer_storage.otel import StorageInstrumentor
from bench.subjects import ours, rate

MODES = ("off", "no-op", "sdk")
DOC = {"deal_id": "d-0001", "status": "active", "cpm": "12.50", "targeting": {"geo": ["US", "CA"]}}


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _instrument(mode: str) -> Callable[[], None]:
    """Turn *mode* on; return what turns it off again."""
    instrumentor = StorageInstrumentor()
    if mode == "off":
        return lambda: None
    if mode == "no-op":
        instrumentor.instrument(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
        return instrumentor.uninstrument
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(_Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)

    def off() -> None:
        instrumentor.uninstrument()
        meter_provider.shutdown()
        tracer_provider.shutdown()

    return off


def _calls(storage: Storage) -> dict[str, tuple[Callable[[int], Awaitable[Any]], int]]:
    """Operation -> (one call, how many run concurrently)."""
    return {
        "get": (lambda i: storage.get(f"deal:{i % 256}"), 1),
        "set": (lambda i: storage.set(f"deal:{i % 256}", DOC), 1),
        "get x64": (lambda i: storage.get(f"deal:{i % 256}"), 64),
    }


async def instrumentation_overhead(backends: list[str], n: int, reps: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for backend in [b for b in backends if b in ("memory", "sqlite", "redis", "postgres", "hybrid")]:
        subject = ours(backend)
        await subject.open()
        try:
            await subject.storage.set_many({f"deal:{i}": DOC for i in range(256)})
            for op, (call, concurrency) in _calls(subject.storage).items():
                await rate(call, min(n, 500), concurrency)  # warm up
                rates: dict[str, list[float]] = {mode: [] for mode in MODES}
                for _ in range(reps):
                    for mode in MODES:
                        off = _instrument(mode)
                        try:
                            rates[mode].append(await rate(call, n, concurrency))
                        finally:
                            off()
                medians = {mode: statistics.median(found) for mode, found in rates.items()}
                row: dict[str, Any] = {"backend": backend, "op": op}
                for mode in MODES:
                    row[mode] = round(medians[mode])
                    row[f"{mode}_us"] = round(1e6 / medians[mode], 2)
                row["no-op_ratio"] = round(medians["off"] / medians["no-op"], 3)
                row["sdk_ratio"] = round(medians["off"] / medians["sdk"], 3)
                rows.append(row)
                print(f"  {backend:8} {op:8} " + "  ".join(f"{m} {row[m]:>8,}/s" for m in MODES), flush=True)
        finally:
            await subject.close()
    return rows
