"""Run the benchmarks: ``python -m bench.run [--quick] [--backends memory,sqlite,...] [--out DIR]``.

Every operation is timed for our storage, the raw driver (best idiomatic use) and
py-key-value-aio where it has that store, in the same process and run. Each figure is the
median of several repetitions; the spread ((max - min) / median) says how noisy it was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import contention, filters, mirror, otel, report, transactions
from bench.subjects import Ours, Subject, drop_postgres_schemas, ours, peer, raw

DOC = {
    "deal_id": "d-0001",
    "status": "active",
    "deal_type": "PMP",
    "cpm": "12.50",
    "spend": "1042.10",
    "seller": "seller-17",
    "targeting": {"geo": ["US", "CA"], "devices": ["ctv", "mobile"]},
    "flights": 3,
}


@dataclass
class Measure:
    backend: str
    subject: str
    op: str
    calls: int
    ops_per_s: float  # calls per second, median of the repetitions
    p50_us: float
    p99_us: float
    spread: float
    runs: list[float] = field(default_factory=list)


async def _timed(call: Callable[[int], Awaitable[Any]], n: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []

    async def worker(w: int) -> None:
        for i in range(w, n, concurrency):
            start = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return time.perf_counter() - start, latencies


async def measure(
    backend: str,
    subject: Subject,
    op: str,
    call: Callable[[int], Awaitable[Any]],
    n: int,
    concurrency: int,
    reps: int,
    before: Callable[[], Awaitable[Any]] | None = None,
) -> Measure:
    rates, all_latencies = [], []
    for _ in range(reps):
        if before is not None:
            await before()
        wall, latencies = await _timed(call, n, concurrency)
        rates.append(n / wall)
        all_latencies += latencies
    all_latencies.sort()
    median = statistics.median(rates)
    return Measure(
        backend, subject.label, op, n, median,
        all_latencies[len(all_latencies) // 2] * 1e6, all_latencies[int(len(all_latencies) * 0.99)] * 1e6,
        (max(rates) - min(rates)) / median if median else 0.0, rates,
    )  # fmt: skip


def _sessions(s: Subject) -> Callable[[int], Awaitable[Any]]:
    """The agent's day: 80% reads, sessions with TTL, quotes, deal updates."""

    async def step(i: int) -> None:
        r = i % 10
        if r < 8:
            await s.get(f"deal:{i % 1000}" if r < 5 else f"session:{i % 200}")
        elif r == 8:
            await s.set(f"session:{i % 200}", {"buyer": i, "step": "negotiating"}, ttl=1800)
        else:
            await s.set(f"quote:{i % 300}", {"deal": i % 1000, "cpm": "9.50"}, ttl=86400)

    return step


async def run_backend(backend: str, n: int, reps: int) -> list[Measure]:
    subjects: list[Subject] = [ours(backend)]
    for extra in (raw(backend), peer(backend)):
        if extra is not None:
            subjects.append(extra)
    out: list[Measure] = []
    for s in subjects:
        await s.open()
        try:
            out += await run_subject(backend, s, n, reps)
        finally:
            await s.close()
    return out


async def run_subject(backend: str, s: Subject, n: int, reps: int) -> list[Measure]:
    out: list[Measure] = []
    await s.set_many({f"deal:{i}": {**DOC, "n": i} for i in range(1000)})
    await s.set_many({f"session:{i}": {"buyer": i} for i in range(200)})
    single: list[tuple[str, Callable[[int], Awaitable[Any]], int]] = [
        ("get", lambda i: s.get(f"deal:{i % 1000}"), 1),
        ("set", lambda i: s.set(f"deal:w{i % 2000}", DOC), 1),
        ("set+ttl", lambda i: s.set(f"session:t{i % 2000}", DOC, ttl=300), 1),
        ("exists", lambda i: s.exists(f"deal:{i % 1000}"), 1),
        ("delete", lambda i: s.delete(f"deal:w{i % 2000}"), 1),
        ("get x16", lambda i: s.get(f"deal:{i % 1000}"), 16),
        ("get x64", lambda i: s.get(f"deal:{i % 1000}"), 64),
        ("set x64", lambda i: s.set(f"deal:w{i % 2000}", DOC), 64),
        ("incr x16 one key", lambda i: s.incr("counter:hot"), 16),
        ("agent mix x16", _sessions(s), 16),
    ]
    for op, call, concurrency in single:
        if op.startswith("agent") and s.label == "py-key-value-aio":
            continue
        with contextlib.suppress(NotImplementedError):  # what a subject does not offer stays empty
            out.append(await measure(backend, s, op, call, n, concurrency, reps))
    bulk = {f"bulk:{i}": DOC for i in range(1000)}
    await s.set_many(bulk)
    keys, calls = list(bulk), max(5, n // 100)
    out.append(await measure(backend, s, "bulk get 1000", lambda i: s.get_many(keys), calls, 1, reps))
    out.append(await measure(backend, s, "bulk set 1000", lambda i: s.set_many(bulk), calls, 1, reps))
    if s.label == "py-key-value-aio":
        return out  # no prefix listing or deletion in its API
    listing = {f"list:{i:05d}": DOC for i in range(10_000)}
    await s.set_many(listing)
    out.append(await measure(backend, s, "list 10k by prefix", lambda i: s.list_prefix("list:"), 5, 1, reps))
    refill = lambda: s.set_many(listing)  # noqa: E731
    out.append(
        await measure(backend, s, "delete 10k by prefix", lambda i: s.delete_prefix("list:"), 1, 1, reps, refill)
    )
    if isinstance(s, Ours):
        out += await _ours_only(backend, s, n, reps)
    return out


async def _ours_only(backend: str, s: Ours, n: int, reps: int) -> list[Measure]:
    storage = s.storage
    await storage.set_many(
        {f"deal:f{i:05d}": {**DOC, "status": "active" if i % 4 else "paused"} for i in range(10_000)}
    )
    await storage.set("deal:hot", {"spend": 0})
    found = await storage.list_deals({"status": "paused"})
    assert len(found) == 2500, len(found)

    async def bump(i: int) -> None:
        await storage.update("deal:hot", lambda d: {**d, "spend": d["spend"] + 1})

    return [
        await measure(backend, s, "update x16 one key", bump, max(50, n // 10), 16, reps),
        await measure(
            backend, s, "list_deals(filter) 10k", lambda i: storage.list_deals({"status": "paused"}), 3, 1, reps
        ),
    ]


# -- scaling: cost per op and memory while listing, from 10^3 to 10^6 keys --------------------
async def scaling(backend: str, sizes: list[int]) -> list[dict[str, Any]]:
    s = ours(backend)
    await s.open()
    rows = []
    try:
        seeded = 0
        for size in sizes:
            for start in range(seeded, size, 5000):
                await s.set_many({f"scale:{i:08d}": {"n": i} for i in range(start, min(size, start + 5000))})
            seeded = size
            sample = [f"scale:{random.randrange(size):08d}" for _ in range(500)]
            started = time.perf_counter()
            for key in sample:
                await s.get(key)
            get_us = (time.perf_counter() - started) / len(sample) * 1e6
            started = time.perf_counter()
            counted = await s.storage.count("scale:*")
            scan_s = time.perf_counter() - started
            assert counted == size, (counted, size)
            tracemalloc.start()
            await s.storage.count("scale:*")
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rows.append({"backend": backend, "keys": size, "get_us": get_us, "scan_us_per_key": scan_s / size * 1e6,
                         "scan_peak_kib": peak / 1024})  # fmt: skip
            print(f"  scaling {backend} {size:>9,} keys: get {get_us:7.1f} us, scan {scan_s / size * 1e6:5.2f} us/key, "
                  f"peak {peak / 1024:8.1f} KiB", flush=True)  # fmt: skip
    finally:
        await s.close()
    return rows


# -- routing overhead and import time -----------------------------------------------------------
async def routing_overhead(n: int = 20_000, reps: int = 7) -> dict[str, float]:
    from ad_buyer_storage import Storage
    from ad_buyer_storage.backends.memory import MemoryBackend
    from ad_buyer_storage.composed import HybridBackend, Route
    from ad_buyer_storage.domain.entities import default_routes

    fast, durable = MemoryBackend(), MemoryBackend()
    routed = Storage(HybridBackend([Route(p, fast if t == "fast" else durable, t)
                                    for p, t in default_routes("fast", "durable").items()]))  # fmt: skip
    direct = Storage(durable)
    results: dict[str, list[float]] = {"direct": [], "hybrid": []}
    async with routed:
        await direct.connect()
        await routed.set("deal:1", DOC)
        for _ in range(reps):
            for label, storage in (("direct", direct), ("hybrid", routed)):
                started = time.perf_counter()
                for _ in range(n):
                    await storage.get("deal:1")
                results[label].append((time.perf_counter() - started) / n * 1e6)
    direct_us, hybrid_us = statistics.median(results["direct"]), statistics.median(results["hybrid"])
    return {"direct_us": direct_us, "hybrid_us": hybrid_us, "overhead_us": hybrid_us - direct_us}


def import_time(reps: int = 5) -> dict[str, Any]:
    code = (
        "import time, sys, json; t = time.perf_counter()\n"
        "from ad_buyer_storage.plugins.registry import registry\n"
        "registry.get('sqlite').load_factory()\n"
        "print(json.dumps([time.perf_counter() - t, [m for m in ('redis', 'asyncpg') if m in sys.modules]]))"
    )
    samples, others = [], []
    for _ in range(reps):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
        seconds, imported = json.loads(out.stdout)
        samples.append(seconds * 1000)
        others = imported
    return {"median_ms": statistics.median(samples), "other_drivers_imported": others}


SECTIONS = (
    "backends", "scaling", "routing", "import", "mirror", "migration", "transactions", "filters", "coalescing", "otel",
    "adcp",
)  # fmt: skip


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="memory,sqlite,redis,postgres,hybrid")
    parser.add_argument("--quick", action="store_true", help="fewer calls and repetitions, scaling to 10^5")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="what to run; a partial run replaces only its sections in results.json")  # fmt: skip
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    n, reps = (300, 3) if args.quick else (1000, 5)
    sizes = [1_000, 10_000, 100_000] + ([] if args.quick else [1_000_000])
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    out = Path(args.out)
    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    results: dict[str, Any] = dict(previous) if sections != set(SECTIONS) else {}
    try:
        if "backends" in sections:
            measures: list[Measure] = []
            for backend in backends:
                print(f"== {backend}", flush=True)
                measures += await run_backend(backend, n, reps)
            results.update({"when": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "calls_per_measure": n,
                            "repetitions": reps, "measures": [asdict(m) for m in measures]})  # fmt: skip
        if "scaling" in sections:
            scale_rows: list[dict[str, Any]] = []
            for backend in backends:
                if backend != "hybrid":
                    scale_rows += await scaling(backend, sizes)
            results["scaling"] = scale_rows
        if "mirror" in sections:
            print("== mirror (SQLite -> PostgreSQL+Redis)", flush=True)
            results["mirror"] = await mirror.mirror_overhead(reps)
        if "transactions" in sections:
            print("== transactions", flush=True)
            results["transactions"] = await transactions.transaction_costs(backends, 200 if args.quick else 500, reps)
            print("== transactions: fairness across processes", flush=True)
            results["transactions_fairness"] = await transactions.booking_fairness(backends)
        if "filters" in sections:
            print("== filtered lists", flush=True)
            results["filters"] = await filters.filtered_lists(backends, sizes[1:3] if args.quick else sizes[1:], reps)
        if "coalescing" in sections:
            print("== coalescing on and off", flush=True)
            results["coalescing"] = await contention.coalescing(backends, reps)
        if "otel" in sections:
            print("== OpenTelemetry instrumentation: off, no-op providers, SDK", flush=True)
            results["otel"] = await otel.instrumentation_overhead(backends, 1000 if args.quick else 5000, reps)
        if "adcp" in sections:
            from bench import adcp  # the AdCP SDK and psycopg: installed by `nox -s bench`

            print("== AdCP SDK stores: ours against the SDK's PostgreSQL classes", flush=True)
            results["adcp"] = await adcp.adcp_costs(backends, 300 if args.quick else 1000, reps)
        if "migration" in sections:
            print("== migration", flush=True)
            results["migration"] = await mirror.migration(10_000 if args.quick else 100_000)
    finally:
        await drop_postgres_schemas()
    if "routing" in sections:
        results["routing"] = await routing_overhead()
    if "import" in sections:
        results["import"] = import_time()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(report.markdown(results))
    report.chart(results, out / "chart.png")
    print(report.markdown(results))


if __name__ == "__main__":
    asyncio.run(main())
