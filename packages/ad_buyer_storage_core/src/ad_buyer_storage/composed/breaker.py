"""A circuit breaker per backend: while a store is down, calls fail at once instead of each
waiting out the command timeout; after a cool-down one call probes it; success closes it.

::

    closed --(threshold consecutive outage failures)--> open --(cool-down over)--> half-open
      ^                                                   ^                           |
      '----------------- the probe call succeeds ---------+-- the probe call fails ---'

An *outage failure* is what says the store cannot be reached: :class:`UnavailableError` and
its timeout, and :class:`OutcomeUnknownError` (the connection died mid-call). Everything else
the store answered (a version conflict, a refused value, a busy pool or a locked database,
which are load, not an outage) counts as a success: the store is there. While the breaker is
half-open, one call probes and the others keep failing fast.

The factory wraps every backend it builds (each route of the hybrid router, each side of a
mirror) in :func:`guarded`, so a Redis outage fails session calls fast while calls routed to
PostgreSQL never notice it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, cast

from ad_buyer_storage.composed.forwarding import Forwarding
from ad_buyer_storage.contract.glob import GlobPattern
from ad_buyer_storage.contract.protocol import (
    Capability,
    Check,
    Filter,
    Peer,
    PoolUsage,
    Record,
    StorageBackend,
    SupportsAtomic,
    SupportsExpiry,
    SupportsPubSub,
    SupportsQuery,
    SupportsRefresh,
    SupportsReleaseNamespace,
    SupportsRemovePrefix,
    SupportsRouting,
    SupportsTelemetry,
    SupportsTransactions,
    SupportsTurns,
    Write,
)
from ad_buyer_storage.errors import BusyError, CircuitOpenError, OutcomeUnknownError, UnavailableError

__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker", "GuardedBackend", "guarded", "unwrap"]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class BreakerPolicy:
    """Open after *threshold* consecutive outage failures; fail fast for *cooldown* seconds."""

    threshold: int = 5
    cooldown: float = 5.0

    def __post_init__(self) -> None:
        if self.threshold < 1 or not self.cooldown > 0:
            raise ValueError("a circuit breaker needs threshold >= 1 and cooldown > 0")


def is_outage(exc: BaseException) -> bool:
    """Whether *exc* says the store could not be reached (as opposed to an answer)."""
    return (isinstance(exc, UnavailableError) and not isinstance(exc, (BusyError, CircuitOpenError))) or isinstance(
        exc, OutcomeUnknownError
    )


class CircuitBreaker:
    """The state machine, for one backend. Thread-unsafe by design: one event loop uses it."""

    def __init__(self, label: str, policy: BreakerPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.policy = policy
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None  # None: closed
        self._probing = False
        self._last_error = ""
        #: How many calls were refused without reaching the store, and how often it opened.
        self.refused = 0
        self.trips = 0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() - self._opened_at >= self.policy.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def describe(self) -> dict[str, object]:
        """For ``info``/``doctor`` and metrics: the state, and until when it fails fast."""
        facts: dict[str, object] = {
            "state": self.state.value,
            "consecutive_failures": self._failures,
            "threshold": self.policy.threshold,
            "cooldown_s": self.policy.cooldown,
            "refused": self.refused,
            "trips": self.trips,
        }
        if self._opened_at is not None:
            facts["open_until"] = self._until().isoformat(timespec="milliseconds")
            facts["last_error"] = self._last_error
        return facts

    def _until(self) -> datetime:
        opened_at = self._clock() if self._opened_at is None else self._opened_at
        remaining = opened_at + self.policy.cooldown - self._clock()
        return datetime.fromtimestamp(time.time() + max(0.0, remaining), UTC)

    def _admit(self) -> bool:
        """Let a call through (True if it is the probe) or raise :class:`CircuitOpenError`."""
        opened_at = self._opened_at
        if opened_at is None:
            return False
        if not self._probing and self._clock() - opened_at >= self.policy.cooldown:
            self._probing = True
            return True
        self._refuse()

    def _refuse(self) -> NoReturn:
        self.refused += 1
        until = self._until()
        wait = (
            "a probe call is in flight"
            if self._probing
            else f"failing fast until {until:%H:%M:%S}.{until.microsecond // 1000:03d} UTC"
        )
        raise CircuitOpenError(
            f"{self.label}: circuit breaker open after {self.policy.threshold} consecutive failures "
            f"(last: {self._last_error}); {wait}, then one call probes the store"
        )

    def refuse_if_open(self) -> None:
        """Raise :class:`CircuitOpenError` while open, without taking the probe's place."""
        if self.state is BreakerState.OPEN:
            self._refuse()

    def _succeeded(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def _failed(self, exc: BaseException, probe: bool) -> None:
        self._failures += 1
        self._last_error = type(exc).__name__
        if probe or (self._opened_at is None and self._failures >= self.policy.threshold):
            if self._opened_at is None:
                self.trips += 1
            self._opened_at = self._clock()
            self._probing = False

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Around one call to the store: refuse it while open; record how it went."""
        probe = self._admit()
        try:
            yield
        except BaseException as exc:
            if is_outage(exc):
                self._failed(exc, probe)
            elif isinstance(exc, Exception):
                self._succeeded()  # the store answered, with an error: it is there
            elif probe:
                self._probing = False  # cancelled: no verdict; the next call probes
            raise
        else:
            self._succeeded()


class GuardedBackend(Forwarding):
    """*inner* behind a :class:`CircuitBreaker`: it claims *inner*'s flags, forwards the methods
    of every flag explicitly, and has each hook protocol *inner* has (see
    :mod:`~ad_buyer_storage.composed.forwarding`); *inner* itself is its one part."""

    def __init__(self, inner: StorageBackend, breaker: CircuitBreaker) -> None:
        self.inner = inner
        self.breaker = breaker
        self.name = inner.name
        self.capabilities = inner.capabilities

    @classmethod
    def _hooks_wanted(cls, inner: StorageBackend, *args: Any, **kwargs: Any) -> Iterable[type]:
        return [protocol for protocol, _ in cls.HOOKS if isinstance(inner, protocol)]

    def __repr__(self) -> str:
        return repr(self.inner)

    def parts(self) -> Iterable[tuple[str, StorageBackend]]:
        """The one backend it guards, standing for it (the empty label)."""
        return (("", self.inner),)

    async def connect(self) -> None:
        with self.breaker.guard():
            await self.inner.connect()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def ping(self) -> None:
        with self.breaker.guard():
            await self.inner.ping()

    async def info(self) -> Mapping[str, object]:
        """The backend's facts and its breaker's; only the breaker's while it is open (the
        store is not asked, so a report on an outage takes no time)."""
        facts: dict[str, object] = {}
        if self.breaker.state is not BreakerState.OPEN:
            with self.breaker.guard():
                facts.update(await self.inner.info())
        facts["breaker"] = self.breaker.describe()
        return facts

    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        with self.breaker.guard():
            return await self.inner.read(keys)

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        with self.breaker.guard():
            return await self.inner.write(writes)

    async def remove(self, keys: Sequence[str]) -> int:
        with self.breaker.guard():
            return await self.inner.remove(keys)

    async def count(self, keys: Sequence[str]) -> int:
        with self.breaker.guard():
            return await self.inner.count(keys)

    async def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        with self.breaker.guard():
            async for key in self.inner.scan(pattern, batch_size):
                yield key

    # -- the methods of the flags (called only when *inner* claims the flag) ---------------
    async def get_ttl(self, key: str) -> int:
        with self.breaker.guard():
            return await cast(SupportsExpiry, self.inner).get_ttl(key)

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        with self.breaker.guard():
            return await cast(SupportsExpiry, self.inner).set_ttl(key, ttl_ms)

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        with self.breaker.guard():
            return await cast(SupportsAtomic, self.inner).increment(key, amount, version, ttl_ms)

    async def publish(self, channel: str, message: str) -> int:
        with self.breaker.guard():
            return await cast(SupportsPubSub, self.inner).publish(channel, message)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        self.breaker.refuse_if_open()  # the subscription itself reports its own errors
        return cast(SupportsPubSub, self.inner).subscribe(channel)

    async def commit(self, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str]) -> bool:
        with self.breaker.guard():
            return await cast(SupportsTransactions, self.inner).commit(checks, writes, deletes)

    def turn(self, keys: Sequence[str]) -> AbstractAsyncContextManager[None]:
        self.breaker.refuse_if_open()
        return cast(SupportsTurns, self.inner).turn(keys)

    async def read_refresh(self, key: str, ttl_ms: int | None) -> Record | None:
        with self.breaker.guard():
            return await cast(SupportsRefresh, self.inner).read_refresh(key, ttl_ms)


# The hook protocols, each added only when the inner backend has it: ``isinstance`` checks on
# the guarded backend answer as they would on the inner one.
class _Query(GuardedBackend):
    async def query(
        self, prefix: str, where: Sequence[Filter], after: str | None, limit: int
    ) -> Sequence[tuple[str, Record]]:
        with self.breaker.guard():
            return await cast(SupportsQuery, self.inner).query(prefix, where, after, limit)


class _RemovePrefix(GuardedBackend):
    async def remove_prefix(self, prefix: str) -> int:
        with self.breaker.guard():
            return await cast(SupportsRemovePrefix, self.inner).remove_prefix(prefix)


class _ReleaseNamespace(GuardedBackend):
    async def release_namespace(self) -> None:
        with self.breaker.guard():
            await cast(SupportsReleaseNamespace, self.inner).release_namespace()


class _Routing(GuardedBackend):
    def route_of(self, key: str) -> Hashable:
        return cast(SupportsRouting, self.inner).route_of(key)

    def capabilities_for(self, key: str) -> frozenset[Capability]:
        return cast(SupportsRouting, self.inner).capabilities_for(key)


class _Telemetry(GuardedBackend):
    def peer(self) -> Peer:
        return cast(SupportsTelemetry, self.inner).peer()

    def pool_usage(self) -> PoolUsage | None:
        return cast(SupportsTelemetry, self.inner).pool_usage()


GuardedBackend.HOOKS = (
    (SupportsQuery, _Query),
    (SupportsRemovePrefix, _RemovePrefix),
    (SupportsReleaseNamespace, _ReleaseNamespace),
    (SupportsRouting, _Routing),
    (SupportsTelemetry, _Telemetry),
)


def guarded(backend: StorageBackend, policy: BreakerPolicy, label: str | None = None) -> StorageBackend:
    """*backend* behind a circuit breaker following *policy* (named *label* in its errors)."""
    return GuardedBackend(backend, CircuitBreaker(label or backend.name, policy))


def unwrap(backend: StorageBackend) -> StorageBackend:
    """The backend inside any breaker."""
    while isinstance(backend, GuardedBackend):
        backend = backend.inner
    return backend
