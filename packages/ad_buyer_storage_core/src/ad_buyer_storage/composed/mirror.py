"""Dual-write mirror for zero-downtime moves between stores.

Reads come from the primary. Every write goes to the primary, then the key's resulting state
on the primary (value, version and expiry, or its absence) is copied to the secondary by a
:class:`~ad_buyer_storage.replication.Replicator`: the copy is confirmed against the primary
after it lands, so writers racing on a key, in this process or in others with mirrors of their
own, leave the secondary with exactly the primary's state once they stop. A write returns once
its state (or a newer one) is on both stores. Changing a key's expiry through the mirror gives
it a new version, so that the copy can tell the two expiries apart.

A sample of reads (``MIRROR_SHADOW_READS``, a fraction) is also read from the secondary and
compared; mismatches are counted and logged with the key hashed, never the value. A copy the
secondary refuses never passes silently: ``MIRROR_ON_SECONDARY_FAILURE=fail`` raises it to
the caller (the primary has the write; retrying it copies it again), ``record`` appends the key
to a repair log that ``ad-buyer-storage mirror-repair`` copies again.

Runbook: README "Moving to another store".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ad_buyer_storage.client.codec import canonical
from ad_buyer_storage.composed.breaker import unwrap
from ad_buyer_storage.composed.forwarding import Forwarding
from ad_buyer_storage.composed.lifecycle import close_all, connect_all, release_all
from ad_buyer_storage.composed.replication import ABSENT, KeyState, Replicator
from ad_buyer_storage.contract.glob import GlobPattern
from ad_buyer_storage.contract.protocol import (
    Capability,
    Check,
    Condition,
    Filter,
    Peer,
    PoolUsage,
    Record,
    StorageBackend,
    SupportsAtomic,
    SupportsExpiry,
    SupportsPubSub,
    SupportsQuery,
    SupportsReleaseNamespace,
    SupportsTelemetry,
    SupportsTransactions,
    SupportsTurns,
    Write,
    new_version,
)
from ad_buyer_storage.errors import (
    ConfigurationError,
    InvalidValueError,
    PartialBatchError,
    StorageError,
    UnsupportedOperationError,
    VersionConflictError,
)

__all__ = ["DEFAULT_REPAIR_LOG", "MirrorBackend", "MirrorStats", "mirror_of"]

log = logging.getLogger("ad_buyer_storage.mirror")

DEFAULT_REPAIR_LOG = "./ad_buyer_mirror_repair.log"
_SET_TTL_ATTEMPTS = 200


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


class MirrorBackend(Forwarding):
    """Reads from *primary*; writes to *primary* then *secondary*.

    It claims what both sides offer, plus what runs on the primary alone: transactions (their
    outcome is copied like any write), turns, and pub/sub (messages are not data: nothing is
    copied); never REFRESH (a renewed expiry must be copied too: core renews as a read then an
    ``expire``). Hooks: ``query`` and telemetry where the primary has them, releasing the
    namespace where either side has it. Its parts: ``primary`` and ``secondary``."""

    name = "mirror"

    def __init__(
        self,
        primary: StorageBackend,
        secondary: StorageBackend,
        *,
        shadow_reads: float = 0.0,
        on_secondary_failure: str = "fail",
        repair_log: str | os.PathLike[str] = DEFAULT_REPAIR_LOG,
    ) -> None:
        if on_secondary_failure not in ("fail", "record"):
            raise ConfigurationError("MIRROR_ON_SECONDARY_FAILURE is 'fail' or 'record'")
        if unwrap(primary) is unwrap(secondary):
            raise ConfigurationError(
                "a mirror's primary and secondary are the same backend: every write would be applied twice "
                "to one store, and nothing would be copied anywhere"
            )
        self.primary, self.secondary = primary, secondary
        self.shadow_reads = shadow_reads
        self.on_secondary_failure = on_secondary_failure
        self.repair_log = Path(repair_log)
        self.stats = MirrorStats()
        # Every write must land on both: only what both offer, and what runs on the primary alone.
        # A transaction commits on the primary alone; its outcome is copied like any write.
        on_primary = frozenset(primary.capabilities)
        shared = on_primary & frozenset(secondary.capabilities) - _PRIMARY_ONLY - {Capability.REFRESH}
        self.capabilities = shared | (on_primary & _PRIMARY_ONLY)
        if Capability.TRANSACTIONS not in on_primary:
            self.capabilities -= {Capability.TURNS}
        self._committer = cast(SupportsTransactions, primary) if Capability.TRANSACTIONS in self.capabilities else None
        self._connected: list[StorageBackend] = []
        self._replicator = Replicator(primary, secondary)

    @classmethod
    def _hooks_wanted(cls, primary: StorageBackend, secondary: StorageBackend, **options: Any) -> Iterable[type]:
        wanted: list[type] = [p for p in (SupportsQuery, SupportsTelemetry) if isinstance(primary, p)]
        if isinstance(primary, SupportsReleaseNamespace) or isinstance(secondary, SupportsReleaseNamespace):
            wanted.append(SupportsReleaseNamespace)
        return wanted

    def __repr__(self) -> str:
        return f"MirrorBackend(primary={self.primary!r}, secondary={self.secondary!r})"

    def parts(self) -> Iterable[tuple[str, StorageBackend]]:
        return (("primary", self.primary), ("secondary", self.secondary))

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
    async def _mirror(self, states: dict[str, KeyState | None]) -> None:
        """Copy the keys' new states to the secondary; a failure raises or is recorded."""
        try:
            await self._replicator.settle(states)
            self.stats.mirrored_writes += len(states)
        except StorageError as exc:
            self.stats.secondary_failures += 1
            if self.on_secondary_failure == "fail":
                if isinstance(exc, PartialBatchError):  # the copy's batch, not the caller's: fail it whole
                    raise exc.first_error() from exc
                raise
            await self._record(list(states), exc)

    async def _record(self, keys: list[str], exc: StorageError) -> None:
        self.stats.recorded_for_repair += len(keys)
        log.warning("secondary copy failed (%s); %d key(s) recorded for repair", type(exc).__name__, len(keys))
        lines = "".join(json.dumps({"key": k}) + "\n" for k in keys)
        # One append per failure: O_APPEND keeps lines whole across processes.
        await asyncio.to_thread(_append, self.repair_log, lines)

    async def _on_primary_failure(self, keys: Sequence[str], exc: StorageError) -> None:
        """The primary may or may not have applied the write: in record mode, copy those keys
        again at the next repair (a retry by the caller copies them in fail mode)."""
        if self.on_secondary_failure == "record":
            await self._record(list(keys), exc)

    async def recopy(self, keys: Sequence[str]) -> None:
        """Copy *keys* again from the primary, in their current state (``mirror-repair``)."""
        await self._replicator.settle(dict.fromkeys(keys))

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
        partial: PartialBatchError | None = None
        try:
            outcomes: Sequence[object] = await self.primary.write(writes)
        except PartialBatchError as exc:  # copy what did apply; each caller still hears its own
            partial, outcomes = exc, exc.outcomes
            await self._on_primary_failure([w.key for w, o in zip(writes, outcomes, strict=True) if o is not True], exc)
        except StorageError as exc:
            await self._on_primary_failure([w.key for w in writes], exc)
            raise
        states: dict[str, KeyState | None] = {}
        for w, ok in zip(writes, outcomes, strict=True):
            if ok is True:
                # What the primary now holds: this write (if it kept an expiry, that is read).
                states[w.key] = KeyState(Record(w.value, w.version), w.ttl_ms, ttl_known=not w.keep_ttl)
        if states:
            await self._mirror(states)
        if partial is not None:
            raise partial
        return [bool(o) for o in outcomes]

    async def remove(self, keys: Sequence[str]) -> int:
        try:
            removed = await self.primary.remove(keys)
        except StorageError as exc:
            await self._on_primary_failure(keys, exc)
            raise
        await self._mirror(dict.fromkeys(keys, ABSENT))
        return removed

    async def commit(self, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str]) -> bool:
        committer = self._committer
        if committer is None:
            raise UnsupportedOperationError(f"the mirror's primary ({self.primary.name}) has no transactions")
        keys = [w.key for w in writes] + list(deletes)
        try:
            committed = await committer.commit(checks, writes, deletes)
        except StorageError as exc:
            await self._on_primary_failure(keys, exc)
            raise
        if committed:
            states: dict[str, KeyState | None] = {
                w.key: KeyState(Record(w.value, w.version), w.ttl_ms, ttl_known=not w.keep_ttl) for w in writes
            }
            states.update(dict.fromkeys(deletes, ABSENT))
            await self._mirror(states)
        return committed

    def turn(self, keys: Sequence[str]) -> AbstractAsyncContextManager[None]:
        """The primary's turn, where it has turns (transactions commit on the primary)."""
        if Capability.TURNS in self.capabilities:
            return cast(SupportsTurns, self.primary).turn(keys)
        return nullcontext()

    async def count(self, keys: Sequence[str]) -> int:
        return await self.primary.count(keys)

    def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        return self.primary.scan(pattern, batch_size)

    async def get_ttl(self, key: str) -> int:
        return await cast(SupportsExpiry, self.primary).get_ttl(key)

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        if Capability.ATOMIC not in self.primary.capabilities:
            changed = await cast(SupportsExpiry, self.primary).set_ttl(key, ttl_ms)
            if changed:
                await self._mirror({key: None})
            return changed
        # A new expiry is a new state: rewrite the value under a new version (if nothing else
        # wrote it meanwhile), so that a copy carrying the old expiry can be told from this one.
        for attempt in range(_SET_TTL_ATTEMPTS):
            (record,) = await self.primary.read((key,))
            if record is None:
                return False
            write = Write(key, _text(record.value), new_version(), ttl_ms, False, Condition.IF_VERSION, record.version)
            if (await self.write((write,)))[0]:
                return True
            await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2**attempt)))
        raise VersionConflictError(f"gave up changing the expiry of {key!r}: it kept changing")

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        try:
            result = await cast(SupportsAtomic, self.primary).increment(key, amount, version, ttl_ms)
        except InvalidValueError:
            raise  # refused: nothing changed
        except StorageError as exc:
            await self._on_primary_failure([key], exc)
            raise
        # Its value and version are known; the expiry it kept (or gave) is read.
        await self._mirror({key: KeyState(Record(str(result), version), ttl_known=False)})
        return result

    # -- pub/sub: through the primary only (messages are not data: nothing is copied) --------
    async def publish(self, channel: str, message: str) -> int:
        return await cast(SupportsPubSub, self.primary).publish(channel, message)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return cast(SupportsPubSub, self.primary).subscribe(channel)


# What runs on the primary alone, so the mirror offers it when the primary does.
_PRIMARY_ONLY = frozenset({Capability.PUBSUB, Capability.TRANSACTIONS, Capability.TURNS})


# The hook protocols, each only where the sides have it (see composed/forwarding.py).
class _Query(MirrorBackend):
    async def query(
        self, prefix: str, where: Sequence[Filter], after: str | None, limit: int
    ) -> list[tuple[str, Record]]:
        """Read from the primary, as every read."""
        return list(await cast(SupportsQuery, self.primary).query(prefix, where, after, limit))


class _ReleaseNamespace(MirrorBackend):
    async def release_namespace(self) -> None:
        await release_all([self.primary, self.secondary])


class _Telemetry(MirrorBackend):
    """Where reads and first writes go: the primary's facts."""

    def peer(self) -> Peer:
        return cast(SupportsTelemetry, self.primary).peer()

    def pool_usage(self) -> PoolUsage | None:
        return cast(SupportsTelemetry, self.primary).pool_usage()


MirrorBackend.HOOKS = (
    (SupportsQuery, _Query),
    (SupportsReleaseNamespace, _ReleaseNamespace),
    (SupportsTelemetry, _Telemetry),
)


def mirror_of(
    primary: StorageBackend,
    secondary: StorageBackend,
    *,
    shadow_reads: float = 0.0,
    on_secondary_failure: str = "fail",
    repair_log: str | os.PathLike[str] = DEFAULT_REPAIR_LOG,
) -> MirrorBackend:
    """The mirror of *primary* to *secondary* (pub/sub through the primary, if it has it)."""
    return MirrorBackend(
        primary, secondary, shadow_reads=shadow_reads, on_secondary_failure=on_secondary_failure, repair_log=repair_log
    )


def _append(path: Path, lines: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, lines.encode())
    finally:
        os.close(fd)


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode()


def _backlog(path: Path) -> int:
    try:
        with path.open() as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0
