"""Dual-write mirror for zero-downtime moves between stores.

Writes go to the primary, then the same write (same version token and expiry) to the
secondary; reads come from the primary. A sample of reads (``MIRROR_SHADOW_READS``, a
fraction) is also read from the secondary and compared; mismatches are counted and logged
with the key hashed, never the value. A write the secondary refuses never passes silently:
``MIRROR_ON_SECONDARY_FAILURE=fail`` raises it to the caller (the primary has it),
``record`` appends the key to a repair log that ``ad-buyer-storage mirror-repair`` replays.

Runbook: README "Moving to another store".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .compose import close_all, connect_all
from .errors import ConfigurationError, StorageError
from .glob import GlobPattern
from .migrate import canonical
from .protocol import NO_EXPIRY, NO_KEY, Capability, Record, StorageBackend, SupportsPubSub, Write

__all__ = ["MirrorBackend", "MirrorSettings", "MirrorStats", "create_backend", "repair"]

log = logging.getLogger("ad_buyer_storage.mirror")


class MirrorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MIRROR_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    #: Where reads come from and writes go first: a backend name or URL.
    primary: str = ""
    #: Where every write is copied: a backend name or URL.
    secondary: str = ""
    #: Fraction of reads also made on the secondary and compared (0 = none, 1 = all).
    shadow_reads: float = Field(0.0, ge=0.0, le=1.0)
    #: ``fail``: a write the secondary refuses raises; ``record``: logged for ``mirror-repair``.
    on_secondary_failure: str = Field("fail", pattern="^(fail|record)$")
    #: The repair log (one JSON line per key to copy again).
    repair_log: str = "./ad_buyer_mirror_repair.log"


@dataclass
class MirrorStats:
    mirrored_writes: int = 0
    secondary_failures: int = 0
    recorded_for_repair: int = 0
    shadow_reads: int = 0
    shadow_mismatches: int = 0


def _hashed(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _same(a: Record | None, b: Record | None) -> bool:
    if a is None or b is None:
        return a is b
    return canonical(a.value) == canonical(b.value)


class MirrorBackend:
    """Reads from *primary*; writes to *primary* then *secondary*."""

    name = "mirror"

    def __new__(cls, primary: StorageBackend, secondary: StorageBackend, **options: Any) -> MirrorBackend:
        # Offer pub/sub methods only when the primary has them (the kit checks this).
        if cls is MirrorBackend and isinstance(primary, SupportsPubSub) and Capability.PUBSUB in primary.capabilities:
            cls = _PubSubMirror
        return super().__new__(cls)

    def __init__(
        self,
        primary: StorageBackend,
        secondary: StorageBackend,
        *,
        shadow_reads: float = 0.0,
        on_secondary_failure: str = "fail",
        repair_log: str | os.PathLike[str] = "./ad_buyer_mirror_repair.log",
    ) -> None:
        if on_secondary_failure not in ("fail", "record"):
            raise ConfigurationError("MIRROR_ON_SECONDARY_FAILURE is 'fail' or 'record'")
        self.primary, self.secondary = primary, secondary
        self.shadow_reads = shadow_reads
        self.on_secondary_failure = on_secondary_failure
        self.repair_log = Path(repair_log)
        self.stats = MirrorStats()
        # Every write must land on both: only what both offer (pub/sub stays the primary's).
        shared = frozenset(primary.capabilities) & frozenset(secondary.capabilities)
        self.capabilities = shared | (frozenset(primary.capabilities) & {Capability.PUBSUB})
        self._connected: list[StorageBackend] = []

    def __repr__(self) -> str:
        return f"MirrorBackend(primary={self.primary!r}, secondary={self.secondary!r})"

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        self._connected = await connect_all([self.primary, self.secondary])

    async def aclose(self) -> None:
        connected, self._connected = self._connected, []
        await close_all(connected)

    async def ping(self) -> None:
        await asyncio.gather(self.primary.ping(), self.secondary.ping())

    async def info(self) -> Mapping[str, object]:
        return {
            "backend": "mirror",
            "primary": dict(await self.primary.info()),
            "secondary": dict(await self.secondary.info()),
            "shadow_reads": self.shadow_reads,
            "on_secondary_failure": self.on_secondary_failure,
            "repair_backlog": _backlog(self.repair_log),
            **self.stats.__dict__,
        }

    # -- the secondary's side of every write -----------------------------------------------
    async def _to_secondary(self, keys: Sequence[str], operation: Any) -> None:
        try:
            await operation
            self.stats.mirrored_writes += len(keys)
        except StorageError as exc:
            self.stats.secondary_failures += 1
            if self.on_secondary_failure == "fail":
                raise
            self.stats.recorded_for_repair += len(keys)
            log.warning("secondary write failed (%s); %d key(s) recorded for repair", type(exc).__name__, len(keys))
            lines = "".join(json.dumps({"key": k}) + "\n" for k in keys)
            # One append per failure: O_APPEND keeps lines whole across processes.
            await asyncio.to_thread(_append, self.repair_log, lines)

    async def _expiry_ms(self, key: str) -> int | None:
        remaining = await self.primary.get_ttl(key)
        return None if remaining in (NO_EXPIRY, NO_KEY) else remaining

    # -- primitives ------------------------------------------------------------------------
    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        if not self.shadow_reads or random.random() >= self.shadow_reads:
            return await self.primary.read(keys)
        mine, theirs = await asyncio.gather(self.primary.read(keys), self.secondary.read(keys), return_exceptions=True)
        if isinstance(mine, BaseException):
            raise mine
        self.stats.shadow_reads += 1
        if isinstance(theirs, BaseException):
            log.warning("shadow read failed: %s", type(theirs).__name__)
            return mine
        for key, a, b in zip(keys, mine, theirs, strict=True):
            if not _same(a, b):
                self.stats.shadow_mismatches += 1
                log.warning("shadow read mismatch for key sha256:%s", _hashed(key))
        return mine

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        applied = await self.primary.write(writes)
        mirrored: list[Write] = []
        for w, ok in zip(writes, applied, strict=True):
            if not ok:
                continue
            # The secondary gets the outcome, unconditionally: same value, version and expiry.
            ttl = await self._expiry_ms(w.key) if w.keep_ttl else w.ttl_ms
            mirrored.append(Write(w.key, w.value, w.version, ttl))
        if mirrored:
            await self._to_secondary([w.key for w in mirrored], self.secondary.write(mirrored))
        return applied

    async def remove(self, keys: Sequence[str]) -> int:
        removed = await self.primary.remove(keys)
        await self._to_secondary(keys, self.secondary.remove(keys))
        return removed

    async def count(self, keys: Sequence[str]) -> int:
        return await self.primary.count(keys)

    def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        return self.primary.scan(pattern, batch_size)

    async def get_ttl(self, key: str) -> int:
        return await self.primary.get_ttl(key)

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        changed = await self.primary.set_ttl(key, ttl_ms)
        if changed:
            await self._to_secondary([key], self.secondary.set_ttl(key, ttl_ms))
        return changed

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        result = await self.primary.increment(key, amount, version, ttl_ms)
        write = Write(key, str(result), version, await self._expiry_ms(key))
        await self._to_secondary([key], self.secondary.write([write]))
        return result


class _PubSubMirror(MirrorBackend):
    """A mirror whose primary offers pub/sub: messages go through the primary only."""

    primary: Any

    async def publish(self, channel: str, message: str) -> int:
        return int(await self.primary.publish(channel, message))

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self.primary.subscribe(channel)  # type: ignore[no-any-return]


def _append(path: Path, lines: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, lines.encode())
    finally:
        os.close(fd)


def _backlog(path: Path) -> int:
    try:
        with path.open() as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


async def repair(mirror: MirrorBackend) -> int:
    """Copy every key of the repair log again from the primary to the secondary.

    The log is renamed before it is read, so failures recorded meanwhile go to a new log and
    are not lost; it is deleted only once every key was copied. Returns the keys repaired.
    """
    log_path = mirror.repair_log
    working = log_path.with_name(log_path.name + ".repairing")
    if not working.exists():
        if not log_path.exists():
            return 0
        os.replace(log_path, working)
    keys = list(dict.fromkeys(json.loads(line)["key"] for line in working.read_text().splitlines() if line))
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        records = await mirror.primary.read(batch)
        present = [(k, r) for k, r in zip(batch, records, strict=True) if r is not None]
        gone = [k for k, r in zip(batch, records, strict=True) if r is None]
        writes = [Write(k, r.value if isinstance(r.value, str) else r.value.decode(), r.version,
                        await mirror._expiry_ms(k)) for k, r in present]  # fmt: skip
        if writes:
            await mirror.secondary.write(writes)
        if gone:
            await mirror.secondary.remove(gone)
    working.unlink()
    return len(keys)


def create_backend(settings: Any, /, **overrides: Any) -> MirrorBackend:
    """Registry factory: ``MIRROR_*`` settings (or the same names as keyword overrides)."""
    from .factory import backend_from_target
    from .settings import load_backend_settings

    options = load_backend_settings(MirrorSettings, overrides)
    if not options.primary or not options.secondary:
        raise ConfigurationError("STORAGE_TYPE=mirror needs MIRROR_PRIMARY and MIRROR_SECONDARY (names or URLs)")
    if "mirror" in (options.primary, options.secondary):
        raise ConfigurationError("a mirror cannot contain 'mirror' itself")
    return MirrorBackend(
        backend_from_target(options.primary, settings)[0],
        backend_from_target(options.secondary, settings)[0],
        shadow_reads=options.shadow_reads,
        on_secondary_failure=options.on_secondary_failure,
        repair_log=options.repair_log,
    )
