"""Results as Markdown tables and a PNG chart."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any


def _ratio_rows(results: dict[str, Any]) -> list[tuple[str, str, dict[str, dict[str, Any]]]]:
    cells: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for m in results.get("measures", []):
        cells[(m["backend"], m["op"])][m["subject"]] = m
    return [(backend, op, by_subject) for (backend, op), by_subject in cells.items()]


def markdown(results: dict[str, Any]) -> str:
    if "measures" not in results:  # a partial run into an empty directory
        results = {"when": "-", "calls_per_measure": 0, "repetitions": 0, "measures": [], "scaling": [],
                   "routing": None, "import": None, **results}  # fmt: skip
    lines = [
        f"Run {results['when']}: {results['calls_per_measure']} calls per measure, median of "
        f"{results['repetitions']} repetitions. *time ratio* = our time per call / the raw driver's "
        "(below 1.00: faster than the raw driver). Spread = (max - min) / median of the repetitions.",
        "",
        "| backend | operation | ours ops/s | p50 us | p99 us | spread | raw ops/s | time ratio "
        "| py-key-value-aio ops/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, op, by in _ratio_rows(results):
        ours, raw, peer = by.get("ours"), by.get("raw"), by.get("py-key-value-aio")
        if ours is None:
            continue
        ratio = f"{raw['ops_per_s'] / ours['ops_per_s']:.2f}" if raw else "-"
        lines.append(
            f"| {backend} | {op} | {ours['ops_per_s']:,.0f} | {ours['p50_us']:,.0f} | {ours['p99_us']:,.0f} | "
            f"{ours['spread']:.0%} | {raw['ops_per_s']:,.0f} | {ratio} | "
            if raw
            else f"| {backend} | {op} | {ours['ops_per_s']:,.0f} | {ours['p50_us']:,.0f} | {ours['p99_us']:,.0f} | "
            f"{ours['spread']:.0%} | - | - | "
        )
        lines[-1] += f"{peer['ops_per_s']:,.0f} |" if peer else "- |"
    lines += ["", "Scaling (our storage): cost per get, scan cost per key, peak memory while counting every key.", "",
              "| backend | keys | get us | scan us/key | scan peak KiB |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for row in results.get("scaling", []):
        lines.append(f"| {row['backend']} | {row['keys']:,} | {row['get_us']:.1f} | {row['scan_us_per_key']:.2f} | "
                     f"{row['scan_peak_kib']:,.0f} |")  # fmt: skip
    if results.get("mirror"):
        lines += ["", "The mirror (SQLite primary -> PostgreSQL+Redis secondary), calls/s: the primary alone, the same "
                  "write on both stores one after the other by hand, and through the mirror (which also checks that "
                  "its copy is current). *ratio* = mirror time per call / the primary alone's.", "",
                  "| operation | primary alone | both by hand | mirror | ratio vs alone | ratio vs by hand |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for row in results["mirror"]:
            lines.append(f"| {row['op']} | {row['primary alone']:,.0f} | {row['both by hand']:,.0f} | "
                         f"{row['mirror']:,.0f} | {row['ratio']:.2f} | {row['ratio_by_hand']:.2f} |")  # fmt: skip
    if results.get("transactions"):
        lines += ["", "Transactions, per second: `storage.transaction()` (via `transact`) against the same "
                  "transaction on the raw driver (SQLite BEGIN IMMEDIATE, Redis WATCH/MULTI/EXEC, PostgreSQL "
                  "SELECT ... FOR UPDATE). "
                  "*ratio* = our time per transaction / raw.", "",
                  "| backend | workload | ours /s | raw /s | ratio |", "|---|---|---:|---:|---:|"]  # fmt: skip
        for row in results["transactions"]:
            lines.append(f"| {row['backend']} | {row['op']} | {row['ours_per_s']:,} | {row['raw_per_s']:,} | "
                         f"{row['ratio']:.2f} |")  # fmt: skip
    if results.get("transactions_fairness"):
        lines += ["", "Booking fairness: processes making 160 bookings of 10.00 in all against one 1,000.00 budget "
                  "with `book_order`'s default attempts. *per commit*: attempts per committed booking; shares "
                  "over every booking; *starved*: TransactionConflictError after the default attempts.", "",
                  "| backend | processes | per commit | 1 attempt | 2 | 3+ | most | starved | spent |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for row in results["transactions_fairness"]:
            lines.append(f"| {row['backend']} | {row['processes']} | {row['attempts_per_commit']:.2f} | "
                         f"{row['one']:.0%} | {row['two']:.0%} | {row['three_plus']:.0%} | {row['max_attempts']} | "
                         f"{row['starved']} | {row['spent']} |")  # fmt: skip
    if results.get("filters"):
        lines += ["", "Filtered lists (0.1% of the deals `paused`): median time, and as a number of single `get`s "
                  "of the same run. *selective*: every paused deal; *first 100*: `status=active`, `limit=100`; "
                  "*page walk*: the paused deals in pages of 20 with cursors.", "",
                  "| backend | deals | list | matches | ms | in gets |", "|---|---:|---|---:|---:|---:|"]  # fmt: skip
        for row in results["filters"]:
            lines.append(f"| {row['backend']} | {row['deals']:,} | {row['list']} | {row['matches']:,} | "
                         f"{row['ms']:,.2f} | {row['gets']:,.1f} |")  # fmt: skip
    if results.get("coalescing"):
        lines += ["", "Coalescing on and off: 200 calls made at once through a store with coalescing (*on*, the "
                  "default) and with `coalesce=False` (*off*), and the same 200 made one after another (*seq*), "
                  "median ms. Targets: *on/off* <= 1 everywhere; *on/seq* <= 1 for one key.", "",
                  "| backend | workload | on ms | off ms | seq ms | on/off | on/seq |",
                  "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for row in results["coalescing"]:
            lines.append(f"| {row['backend']} | {row['workload']} | {row['on_ms']:,.1f} | {row['off_ms']:,.1f} | "
                         f"{row['seq_ms']:,.1f} | {row['on_vs_off']:.2f} | {row['on_vs_seq']:.2f} |")  # fmt: skip
    if results.get("otel"):
        lines += ["", "OpenTelemetry instrumentation, calls/s: *off* (the default, without the extra: one `if` per "
                  "operation), on with the API's *no-op* providers, and on with the *SDK* recording every span "
                  "(dropped by the exporter) and metric. *ratio* = time per call / off's.", "",
                  "| backend | operation | off /s | no-op /s | ratio | SDK /s | ratio |",
                  "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for row in results["otel"]:
            lines.append(f"| {row['backend']} | {row['op']} | {row['off']:,} | {row['no-op']:,} | "
                         f"{row['no-op_ratio']:.2f} | {row['sdk']:,} | {row['sdk_ratio']:.2f} |")  # fmt: skip
    if results.get("adcp"):
        lines += ["", "AdCP SDK stores (`--sections adcp`), one caller: an idempotent request replayed through the "
                  "SDK's `IdempotencyStore`, and signature nonces claimed, on ours per backend and on the SDK's "
                  "own PostgreSQL classes on the same server.", "",
                  "| subject | replays/s | nonce claims/s |", "|---|---:|---:|"]  # fmt: skip
        for row in results["adcp"]:
            lines.append(f"| {row['subject']} | {row['replay_per_s']:,} | {row['claims_per_s']:,} |")
    if results.get("migration"):
        mig = results["migration"]
        lines += ["", f"Migration: {mig['keys']:,} keys (80% deals, 20% sessions with a TTL) SQLite -> "
                  f"PostgreSQL+Redis in **{mig['seconds']:.1f} s** ({mig['keys_per_s']:,.0f} keys/s)."]  # fmt: skip
    routing, imports = results.get("routing"), results.get("import")
    if routing is None or imports is None:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        f"Hybrid routing: {routing['hybrid_us']:.2f} us per get through the router vs {routing['direct_us']:.2f} us on "
        f"the routed backend directly: **{routing['overhead_us']:.2f} us** of routing per op (memory backends, so "
        "nothing else is measured).",
        "",
        f"Import core + resolve `sqlite`: **{imports['median_ms']:.0f} ms** (median of 5 fresh interpreters); other "
        f"drivers imported: {imports['other_drivers_imported'] or 'none'}.",
    ]
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(b, op, by) for b, op, by in _ratio_rows(results) if "ours" in by and "raw" in by]
    if not rows:
        return
    backends = sorted({b for b, _, _ in rows})
    fig, axes = plt.subplots(1, len(backends) + 1, figsize=(5 * (len(backends) + 1), 6))
    for ax, backend in zip(axes, backends, strict=False):
        mine = [(op, by["raw"]["ops_per_s"] / by["ours"]["ops_per_s"]) for b, op, by in rows if b == backend]
        colours = ["tab:green" if r <= 1.10 else "tab:orange" if r <= 1.25 else "tab:red" for _, r in mine]
        ax.barh([op for op, _ in mine], [r for _, r in mine], color=colours)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.axvline(1.10, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(f"{backend}: time per call / raw driver")
        ax.set_xscale("log")
        ticks = [0.1, 0.25, 0.5, 1, 2, 4, 8]
        ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    scale_ax = axes[-1]
    for backend in sorted({r["backend"] for r in results["scaling"]}):
        pts = [r for r in results["scaling"] if r["backend"] == backend]
        scale_ax.plot([p["keys"] for p in pts], [p["get_us"] for p in pts], marker="o", label=f"{backend} get")
    scale_ax.set_xscale("log")
    scale_ax.set_yscale("log")
    scale_ax.set_xlabel("keys stored")
    scale_ax.set_ylabel("us per get")
    scale_ax.set_title("cost per get vs keys stored")
    scale_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
