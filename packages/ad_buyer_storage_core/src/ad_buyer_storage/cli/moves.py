"""``migrate``, ``verify`` and ``mirror-repair``: moving data between stores."""

from __future__ import annotations

import argparse
import sys

from ad_buyer_storage.composed.mirror import MirrorBackend
from ad_buyer_storage.domain.factory import open_storage
from ad_buyer_storage.domain.storage import Storage
from ad_buyer_storage.ops.migrate import migrate as copy_keys
from ad_buyer_storage.ops.migrate import verify as compare_stores
from ad_buyer_storage.ops.progress import Progress
from ad_buyer_storage.ops.repair import repair

from .common import storage_from

__all__ = ["migrate", "mirror_repair", "verify"]


async def migrate(args: argparse.Namespace) -> int:
    async with open_storage(args.source) as source, open_storage(args.target) as target:
        bar: Progress | None = None

        def progress(done: int, total: int | None) -> None:
            nonlocal bar
            bar = bar or Progress(total)
            bar.update(done)

        report = await copy_keys(
            source, target, pattern=args.pattern, batch_size=args.batch_size, overwrite=args.overwrite,
            dry_run=args.dry_run, progress=None if args.quiet else progress,
        )  # fmt: skip
        if bar is not None:
            bar.update(report.scanned, final=True)
        verb = "would copy" if report.dry_run else "copied"
        print(
            f"{verb} {report.copied:,} of {report.scanned:,} keys in {report.seconds:.1f} s "
            f"({report.rate:,.0f} keys/s); already there: {report.already_present:,}; "
            f"kept on target (different there): {report.kept_on_target:,}; overwritten: {report.overwritten:,}; "
            f"expired, skipped: {report.expired:,}; copied again (changed meanwhile): {report.recopied:,}"
        )
        if report.differing_keys:
            print("  kept (use --overwrite to replace): " + ", ".join(map(repr, report.differing_keys)))
        if args.dry_run or args.no_verify:
            return 0
        return await _verify(source, target, args.pattern)


async def _verify(source: Storage, target: Storage, pattern: str) -> int:
    result = await compare_stores(source, target, pattern=pattern)
    print(f"verification ({pattern!r}):")
    print(f"  {'prefix':<18} {'source':>9} {'target':>9}  checksums")
    for prefix, (s_count, t_count, s_sum, t_sum) in result.prefixes.items():
        mark = "ok" if s_count == t_count and s_sum == t_sum else "MISMATCH"
        print(f"  {prefix:<18} {s_count:>9,} {t_count:>9,}  {s_sum} {t_sum}  {mark}")
    for label, found in (("missing on target", result.missing_on_target), ("only on target", result.extra_on_target),
                         ("different", result.different)):  # fmt: skip
        if found:
            print(f"  {label}: " + ", ".join(map(repr, found)))
    print("verified: source and target agree" if result.ok else "VERIFY FAILED: see the differences above")
    return 0 if result.ok else 1


async def verify(args: argparse.Namespace) -> int:
    async with open_storage(args.source) as source, open_storage(args.target) as target:
        return await _verify(source, target, args.pattern)


async def mirror_repair(args: argparse.Namespace) -> int:
    async with storage_from(args) as storage:
        mirror = storage.backend
        if not isinstance(mirror, MirrorBackend):
            print("mirror-repair needs STORAGE_TYPE=mirror (MIRROR_PRIMARY, MIRROR_SECONDARY)", file=sys.stderr)
            return 2
        repaired = await repair(mirror)
    print(f"copied {repaired} recorded key(s) again from the primary to the secondary")
    return 0
