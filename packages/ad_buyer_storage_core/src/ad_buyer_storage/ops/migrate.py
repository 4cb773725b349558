"""Copy keys between any two stores, resumably, then prove the copy.

``migrate(source, target)`` streams the source's keys (never the whole keyspace in memory),
reads values in bulk, and writes them to the target in bulk with their remaining TTL, as
*set-if-absent* writes: running it again after an interruption finishes the job without
duplicating anything, and a value already on the target is kept unless ``overwrite=True``.
Expired keys are skipped. Values travel as the JSON text the source holds, never decoded and
re-encoded.

An application may be writing meanwhile (dual-writing through the mirror). So after each
batch lands, the source is read again: a key whose version changed since it was read
(rewritten, deleted, or with a new expiry) is copied again in its current state, with the
same settled rounds the mirror uses (:mod:`ad_buyer_storage.composed.replication`). A key the
app deletes during the copy is therefore never brought back, and one it rewrites keeps the
app's value.

``verify(source, target)`` compares, per prefix, the number of keys and an order-independent
checksum of (key, value), values compared as JSON documents (key order and number spelling
aside: :func:`~ad_buyer_storage.client.codec.canonical`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ad_buyer_storage.client.api import StoreAPI
from ad_buyer_storage.client.codec import canonical
from ad_buyer_storage.composed.replication import Replicator, read_states
from ad_buyer_storage.contract.glob import compile_glob
from ad_buyer_storage.contract.protocol import Condition, Record, StorageBackend, Write
from ad_buyer_storage.errors import InvalidInputError

__all__ = ["MAX_BATCH_SIZE", "MigrationReport", "VerifyReport", "check_batch_size", "migrate", "verify"]

#: Keys per batch at most: a batch is held in memory and written in one go.
MAX_BATCH_SIZE = 1_000_000


@dataclass
class MigrationReport:
    scanned: int = 0
    copied: int = 0
    already_present: int = 0
    kept_on_target: int = 0
    overwritten: int = 0
    expired: int = 0
    #: Keys the source changed while they were being copied, copied again in their new state.
    recopied: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    differing_keys: list[str] = field(default_factory=list)  # the first few kept values

    @property
    def rate(self) -> float:
        return self.scanned / self.seconds if self.seconds else 0.0


@dataclass
class VerifyReport:
    """Per prefix: (source count, target count, source checksum, target checksum)."""

    prefixes: dict[str, tuple[int, int, str, str]]
    missing_on_target: list[str]
    extra_on_target: list[str]
    different: list[str]

    @property
    def ok(self) -> bool:
        return all(s == t and cs == ct for s, t, cs, ct in self.prefixes.values())


async def _batches(backend: StorageBackend, pattern: str, size: int) -> AsyncIterator[list[str]]:
    batch: list[str] = []
    async for key in backend.scan(compile_glob(pattern), size):
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def check_batch_size(batch_size: object) -> int:
    """*batch_size* if it is a whole number of keys from 1 to MAX_BATCH_SIZE, else InvalidInputError."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise InvalidInputError(f"batch_size must be an int, not {type(batch_size).__name__}")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidInputError(f"batch_size must be from 1 to {MAX_BATCH_SIZE:,} keys, not {batch_size}")
    return batch_size


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode()


def _prefix_of(key: str) -> str:
    head, sep, _ = key.partition(":")
    return head + sep if sep else "(no prefix)"


async def migrate(
    source: StoreAPI,
    target: StoreAPI,
    *,
    pattern: str = "*",
    batch_size: int = 1000,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
) -> MigrationReport:
    """Copy every live key matching *pattern* from *source* to *target* (see module doc)."""
    check_batch_size(batch_size)
    src, dst = source.require_open(), target.require_open()
    replicator = Replicator(src, dst)
    report = MigrationReport(dry_run=dry_run)
    started = time.monotonic()
    total = await source.count(pattern) if progress else None
    async for keys in _batches(src, pattern, batch_size):
        states = await read_states(src, keys)
        live: list[tuple[str, Record, int | None]] = []
        for key in keys:
            report.scanned += 1
            state = states[key]
            if state.record is None:
                report.expired += 1
            else:
                live.append((key, state.record, state.ttl_ms))
        if live and not dry_run:
            writes = [Write(k, _text(r.value), r.version, t, False, Condition.IF_ABSENT) for k, r, t in live]
            applied = await dst.write(writes)
            report.copied += sum(applied)
            # Changed on the source since it was read: the copy just made may be stale.
            now = await src.read([k for k, _, _ in live])
            changed = {k for (k, r, _), n in zip(live, now, strict=True) if n is None or n.version != r.version}
            if changed:
                await replicator.settle(dict.fromkeys(sorted(changed)))
                report.recopied += len(changed)
            steady = [(item, ok) for item, ok in zip(live, applied, strict=True) if item[0] not in changed]
            await _reconcile(dst, [item for item, _ in steady], [ok for _, ok in steady], overwrite, report)
        elif live:
            present = await dst.read([k for k, _, _ in live])
            report.copied += sum(1 for p in present if p is None)
            report.already_present += sum(1 for p in present if p is not None)
        if progress:
            progress(report.scanned, total)
    report.seconds = time.monotonic() - started
    return report


async def _reconcile(
    dst: StorageBackend,
    live: list[tuple[str, Record, int | None]],
    applied: Any,
    overwrite: bool,
    report: MigrationReport,
) -> None:
    """Keys the target already had: same value (a re-run), or a different one (kept unless told)."""
    skipped = [item for item, ok in zip(live, applied, strict=True) if not ok]
    if not skipped:
        return
    current = await dst.read([k for k, _, _ in skipped])
    replace: list[Write] = []
    for (key, record, ttl), there in zip(skipped, current, strict=True):
        if there is not None and canonical(there.value) == canonical(record.value):
            report.already_present += 1
        elif overwrite:
            replace.append(Write(key, _text(record.value), record.version, ttl))
        else:
            report.kept_on_target += 1
            if len(report.differing_keys) < 20:
                report.differing_keys.append(key)
    if replace:
        await dst.write(replace)
        report.overwritten += len(replace)


async def verify(source: StoreAPI, target: StoreAPI, *, pattern: str = "*", batch_size: int = 1000) -> VerifyReport:
    """Counts and checksums per prefix on both sides, and the keys that differ (first 20 each)."""
    check_batch_size(batch_size)
    src, dst = source.require_open(), target.require_open()
    sums: dict[str, list[int]] = {}
    missing: list[str] = []
    different: list[str] = []
    modulus = 2**256

    def add(side: int, key: str, value: str | bytes) -> None:
        digest = hashlib.sha256(f"{key}\x00{canonical(value)}".encode()).digest()
        entry = sums.setdefault(_prefix_of(key), [0, 0, 0, 0])
        entry[side] += 1
        entry[2 + side] = (entry[2 + side] + int.from_bytes(digest, "big")) % modulus

    async for keys in _batches(src, pattern, batch_size):
        mine, theirs = await asyncio.gather(src.read(keys), dst.read(keys))
        for key, a, b in zip(keys, mine, theirs, strict=True):
            if a is None:
                continue  # expired while we looked
            add(0, key, a.value)
            if b is None:
                if len(missing) < 20:
                    missing.append(key)
                continue
            if canonical(a.value) != canonical(b.value) and len(different) < 20:
                different.append(key)
    extra: list[str] = []
    async for keys in _batches(dst, pattern, batch_size):
        for key, record in zip(keys, await dst.read(keys), strict=True):
            if record is not None:
                add(1, key, record.value)
        if len(extra) < 20:
            present = await src.read(keys)
            extra += [k for k, p in zip(keys, present, strict=True) if p is None][: 20 - len(extra)]
    prefixes = {p: (v[0], v[1], f"{v[2]:064x}"[:16], f"{v[3]:064x}"[:16]) for p, v in sorted(sums.items())}
    return VerifyReport(prefixes, missing, extra, different)
