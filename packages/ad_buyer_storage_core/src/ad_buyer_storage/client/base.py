"""The backbone of :class:`~ad_buyer_storage.client.store.Store`: its state, lifecycle and
identity, the helpers its parts share (one-key reads and writes through the coalescers, the
capability checks), and the values it hands out (:class:`Versioned`, :class:`Selection`).

``Store`` is made of parts by concern, each a class on this base: :mod:`.keyvalue` (single keys,
versions, read-modify-write, increments, bulk calls), :mod:`.listing` (scan, select, keys,
delete by pattern), :mod:`.transacting` (transactions and their retries); expiry, pub/sub and
health are on ``Store`` itself (:mod:`.store`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from decimal import Context
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Protocol, Self, TypeVar

from ad_buyer_storage.client.coalesce import Coalescer
from ad_buyer_storage.client.codec import JsonCodec
from ad_buyer_storage.client.combine import Increment, KeyedGroups, Update
from ad_buyer_storage.client.validation import TTL, ttl_to_ms
from ad_buyer_storage.contract.protocol import (
    Capability,
    Condition,
    Record,
    StorageBackend,
    SupportsAtomic,
    SupportsExpiry,
    SupportsParts,
    SupportsPubSub,
    SupportsQuery,
    SupportsRefresh,
    SupportsRemovePrefix,
    SupportsRouting,
    SupportsTransactions,
    SupportsTurns,
    Write,
    unimplemented,
)
from ad_buyer_storage.errors import (
    ConfigurationError,
    NotConnectedError,
    PartialBatchError,
    StorageClosedError,
    UnsupportedOperationError,
)

__all__ = ["TTL", "Selection", "StoreBase", "Updater", "Versioned", "check_claims"]

log = logging.getLogger("ad_buyer_storage")

T = TypeVar("T")
D = TypeVar("D")
#: ``update(key, fn)``: *fn* takes the current value and returns (or awaits to) the new one.
Updater = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]
_MISSING: Any = object()
_SCAN_BATCH = 500
_SELECT_PAGE = 500  # records per query round trip when listing
_LIST_BATCH = 5000
_DELETE_BATCH = 500
_DECIMAL_CONTEXT = Context(prec=200)  # wide enough that money sums are exact, never rounded


def _found(value: object) -> int:
    """Hits of a ``get`` called with ``default=_MISSING`` (for telemetry)."""
    return value is not _MISSING


def _found_versioned(value: object) -> int:
    return value is not None


class Versioned(NamedTuple):
    """A value read together with the version token a conditional write can check."""

    value: Any
    version: str


class Selection(NamedTuple):
    """What :meth:`Store.select` found: (key, value) pairs in key order, and the key to go on
    after for the next page (None: nothing is left)."""

    rows: list[tuple[str, Any]]
    last_key: str | None


#: True where a caller's function runs while this library holds something others may wait
#: for: an update group in flight for its key, or transact()'s local locks for a retry. A call
#: made from there must never wait for such a thing in turn (it might be its own, or held by a
#: task waiting for this one: waits forever either way), so it skips them: an update runs on
#: its own, uncombined, exactly as with ``coalesce=False``; a transaction retries without the
#: local locks. Only callers holding nothing wait, so no cycle of waits can form.
_holding: ContextVar[bool] = ContextVar("ad_buyer_storage_holding", default=False)


def _settle(future: asyncio.Future[Any], result: Any = None, *, error: BaseException | None = None) -> None:
    """Give a caller its outcome, unless it was cancelled meanwhile."""
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _merge_writes(earlier: Write, later: Write) -> Write | None:
    """The one write doing *earlier* then *later* (both unconditional, same key), or None."""
    if earlier.condition is not Condition.ALWAYS or later.condition is not Condition.ALWAYS:
        return None
    if later.keep_ttl:  # keeps the expiry *earlier* left
        return later._replace(ttl_ms=earlier.ttl_ms, keep_ttl=earlier.keep_ttl)
    return later


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class StoreBase:
    """What every part of :class:`~ad_buyer_storage.client.store.Store` relies on (set by its
    ``__init__``)."""

    #: ``update(..., default=NO_DEFAULT)``: a missing key raises KeyNotFoundError.
    NO_DEFAULT: ClassVar[Any] = _MISSING
    #: Keys per round trip while streaming a listing.
    SCAN_BATCH: ClassVar[int] = _SCAN_BATCH

    _backend: StorageBackend
    _codec: JsonCodec
    _caps: frozenset[Capability]
    _caps_for: Callable[[str], frozenset[Capability]] | None
    _routing: SupportsRouting | None
    _prefix_remover: SupportsRemovePrefix | None
    _querier: SupportsQuery | None
    _expiry: SupportsExpiry
    _atomic: SupportsAtomic
    _flagged: _Flagged
    _committer: _Flagged | None
    _key_locks: weakref.WeakValueDictionary[str, asyncio.Lock]
    _state: _State
    _connect_lock: asyncio.Lock | None
    _describe: str | None
    _reads: Coalescer[str, Record | None] | None
    _writes: Coalescer[Write, bool] | None
    _updates: KeyedGroups[Update] | None
    _increments: KeyedGroups[Increment] | None

    async def _read_batch(self, keys: Sequence[str]) -> Sequence[Record | None]:
        unique = list(dict.fromkeys(keys))
        if len(unique) == len(keys):
            return await self._backend.read(keys)
        try:
            found = dict(zip(unique, await self._backend.read(unique), strict=True))
        except PartialBatchError as exc:  # back to the callers' positions
            outcomes = dict(zip(unique, exc.outcomes, strict=True))
            raise PartialBatchError([outcomes[k] for k in keys]) from None
        return [found[k] for k in keys]

    async def _read_one(self, backend: StorageBackend, key: str) -> Record | None:
        if self._reads is None:
            try:
                (record,) = await backend.read((key,))
            except PartialBatchError as exc:
                raise exc.first_error() from None
            return record
        return await self._reads.submit(key)

    async def _write_one(self, backend: StorageBackend, write: Write) -> bool:
        if self._writes is None:
            try:
                (applied,) = await backend.write((write,))
            except PartialBatchError as exc:
                raise exc.first_error() from None
            return bool(applied)
        return await self._writes.submit(write)

    # -- identity ----------------------------------------------------------------------------
    @property
    def backend(self) -> StorageBackend:
        """The backend doing the I/O."""
        return self._backend

    @property
    def name(self) -> str:
        return self._backend.name

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self._caps

    def capabilities_for(self, key: str) -> frozenset[Capability]:
        """What operations on *key* may use: the route's capabilities behind a router."""
        return self._caps if self._caps_for is None else self._caps_for(key)

    @property
    def max_value_bytes(self) -> int:
        """The largest encoded value accepted (bytes of UTF-8 JSON)."""
        return self._codec.max_value_bytes

    @property
    def is_open(self) -> bool:
        return self._state is _State.OPEN

    def __repr__(self) -> str:
        where = f" {self._describe}" if self._describe else ""
        return f"<Store {self._backend.name}{where} {self._state.value}>"

    # -- lifecycle ---------------------------------------------------------------------------
    async def connect(self) -> Self:
        """Connect the backend (once; later calls return at once). Returns ``self``."""
        if self._state is _State.OPEN:
            return self
        if self._state is _State.CLOSED:
            raise StorageClosedError(f"{self!r} was closed; create a new one")
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            # The state may have changed while we waited for the lock.
            if self.is_open:
                return self
            if self._is_closed():
                raise StorageClosedError(f"{self!r} was closed while connecting")
            check_claims(self._backend)  # before any I/O
            try:
                await self._backend.connect()
            except BaseException:
                # A half-open backend (pool up, schema failed...) must not leak.
                try:
                    await self._backend.aclose()
                except Exception as close_error:  # noqa: BLE001 - the connect error is the one to report
                    log.debug("closing %s after a failed connect also failed: %r", self, close_error)
                raise
            self._state = _State.OPEN
        return self

    async def aclose(self) -> None:
        """Close the backend. Idempotent; the object cannot be reopened."""
        if self._state is _State.CLOSED:
            return
        was_open = self._state is _State.OPEN
        self._state = _State.CLOSED
        if was_open:
            try:  # batches and groups in flight finish first: each caller gets its answer
                for pending in (self._reads, self._writes, self._updates, self._increments):
                    if pending is not None:
                        await pending.drain()
            finally:
                await self._backend.aclose()

    # The seed's names.
    async def disconnect(self) -> None:
        await self.aclose()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _is_closed(self) -> bool:
        return self._state is _State.CLOSED

    def require_open(self) -> StorageBackend:
        """The backend, once connected; else the lifecycle error. For tools that work on the
        backend's primitives directly (migration, verification)."""
        if self._state is not _State.OPEN:
            if self._state is _State.NEW:
                raise NotConnectedError(f"{self!r} is not connected: use 'async with' or 'await connect()' first")
            raise StorageClosedError(f"{self!r} is closed")
        return self._backend

    def _require(self, capability: Capability, what: str, key: str | None = None) -> None:
        caps = self._caps if key is None or self._caps_for is None else self._caps_for(key)
        if capability not in caps:
            where = f" for {key!r}" if key is not None and self._caps_for is not None else ""
            raise UnsupportedOperationError(
                f"the {self._backend.name!r} backend does not support {what}{where} (capability {capability.value!r})"
            )

    def _ttl_ms(self, ttl: TTL, key: str | None = None) -> int | None:
        ttl_ms = ttl_to_ms(ttl)
        if ttl_ms is not None:
            self._require(Capability.EXPIRY, "expiry", key)
        return ttl_ms


class _Flagged(SupportsPubSub, SupportsTransactions, SupportsTurns, SupportsRefresh, Protocol):
    """The methods of the flags with methods beyond expiry and atomics, as one typed view."""


def check_claims(backend: StorageBackend) -> None:
    """Refuse (:class:`ConfigurationError`) a backend, or any backend it is made of, that claims a
    flag without the flag's methods; before any I/O. Methods of flags not claimed are not needed."""
    missing = unimplemented(backend)
    if missing:
        what = "; ".join(f"{flag.value.upper()} needs {', '.join(methods)}" for flag, methods in missing.items())
        raise ConfigurationError(
            f"the {backend.name!r} backend ({type(backend).__name__}) claims capabilities it does not implement: "
            f"{what} (implement them, or drop the flag from its capabilities)"
        )
    if isinstance(backend, SupportsParts):
        for _, part in backend.parts():
            check_claims(part)
