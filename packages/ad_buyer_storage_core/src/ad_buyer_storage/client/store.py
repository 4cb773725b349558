"""``Store``: the whole generic key/value API, built on a backend's few primitives.

Validation (keys, TTLs, patterns, amounts) and encoding happen here, before any I/O, so every
backend refuses bad input identically and a backend author implements only
:class:`~ad_buyer_storage.contract.protocol.StorageBackend`. The buyer agent's domain
(deals, sessions...) is a layer on top (:class:`ad_buyer_storage.Storage`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import itertools
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from decimal import Context, Decimal
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Protocol, Self, TypeVar, cast, overload

from ad_buyer_storage.client.coalesce import Coalescer
from ad_buyer_storage.client.codec import DEFAULT_MAX_VALUE_BYTES, JsonCodec, validate_as
from ad_buyer_storage.client.combine import Increment, KeyedGroups, Update, sign_runs
from ad_buyer_storage.client.filters import matches, pushable, wanted
from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage.client.validation import (
    TTL,
    as_decimal,
    check_amount,
    check_attempts,
    check_key,
    check_keys,
    check_version,
    ttl_to_ms,
)
from ad_buyer_storage.contract.glob import compile_glob, escape_glob
from ad_buyer_storage.contract.protocol import (
    NO_EXPIRY,
    NO_KEY,
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
    SupportsReleaseNamespace,
    SupportsRemovePrefix,
    SupportsRouting,
    SupportsTransactions,
    SupportsTurns,
    Write,
    new_version,
    new_versions,
    unimplemented,
)
from ad_buyer_storage.errors import (
    ConfigurationError,
    InvalidInputError,
    InvalidPatternError,
    InvalidValueError,
    KeyNotFoundError,
    NotConnectedError,
    PartialBatchError,
    StorageClosedError,
    StorageError,
    TransactionConflictError,
    UnsupportedOperationError,
    VersionConflictError,
)
from ad_buyer_storage.kit import telemetry
from ad_buyer_storage.kit.refresh import read_refresh

__all__ = ["TTL", "Store", "Updater", "Versioned"]

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


class Store:
    """Async key/value store with TTL, atomics, versions, listing and pub/sub, on one backend.

    ``async with Store(backend) as store:`` connects and closes; ``aclose()`` is idempotent;
    any use before ``connect()`` or after ``aclose()`` raises a
    :class:`~ad_buyer_storage.errors.LifecycleError`.
    """

    #: ``update(..., default=NO_DEFAULT)``: a missing key raises KeyNotFoundError.
    NO_DEFAULT: ClassVar[Any] = _MISSING
    #: Keys per round trip while streaming a listing.
    SCAN_BATCH: ClassVar[int] = _SCAN_BATCH

    def __init__(
        self,
        backend: StorageBackend,
        *,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        describe: str | None = None,
        coalesce: bool = True,
    ) -> None:
        self._backend = backend
        self._codec = JsonCodec(max_value_bytes=max_value_bytes)
        self._caps = frozenset(backend.capabilities)
        # A router (hybrid) answers per key: its routes may differ (pub/sub on Redis only...).
        self._caps_for = backend.capabilities_for if isinstance(backend, SupportsRouting) else None
        # Hook protocols, checked once: a runtime protocol check costs tens of microseconds.
        self._routing = backend if isinstance(backend, SupportsRouting) else None
        self._prefix_remover = backend if isinstance(backend, SupportsRemovePrefix) else None
        self._querier = backend if isinstance(backend, SupportsQuery) else None
        # The methods of the flags, typed: each called only where its flag is claimed (for the
        # key, behind a router); connect() refuses a backend claiming a flag it lacks methods of.
        self._expiry = cast(SupportsExpiry, backend)
        self._atomic = cast(SupportsAtomic, backend)
        self._flagged = cast(_Flagged, backend)
        may = self._caps if self._routing is None else frozenset(Capability)  # a router: per key
        self._committer = self._flagged if Capability.TRANSACTIONS in may else None
        # transact()'s per-key locks for retries; a lock nobody holds or waits for goes away.
        self._key_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._state = _State.NEW
        self._connect_lock: asyncio.Lock | None = None
        self._describe = describe
        # Concurrent single-key reads and writes share round trips (see coalesce.py); through a
        # router, only with calls bound for the same route, so one route's outage stays its own.
        route_of = backend.route_of if isinstance(backend, SupportsRouting) else None
        self._reads: Coalescer[str, Record | None] | None = (
            Coalescer(self._read_batch, lane=route_of, kind="read") if coalesce else None
        )
        self._writes: Coalescer[Write, bool] | None = (
            Coalescer(
                backend.write,
                key=lambda w: w.key,
                lane=None if route_of is None else lambda w: route_of(w.key),
                merge=_merge_writes,
                kind="write",
            )
            if coalesce
            else None
        )
        # Concurrent updates and increments of one key combine into one round trip (combine.py).
        self._updates: KeyedGroups[Update] | None = KeyedGroups(self._apply_updates) if coalesce else None
        self._increments: KeyedGroups[Increment] | None = KeyedGroups(self._apply_increments) if coalesce else None

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

    # -- single keys -------------------------------------------------------------------------
    @overload
    async def get(
        self, key: str, default: Any = None, *, model: None = None, refresh_ttl: TTL | bool = None
    ) -> Any: ...
    @overload
    async def get(
        self, key: str, default: None = None, *, model: type[T], refresh_ttl: TTL | bool = None
    ) -> T | None: ...
    @overload
    async def get(self, key: str, default: D, *, model: type[T], refresh_ttl: TTL | bool = None) -> T | D: ...
    async def get(
        self, key: str, default: Any = None, *, model: type[Any] | None = None, refresh_ttl: TTL | bool = None
    ) -> Any:
        """The value at *key*, or *default* if missing or expired. ``model=`` restores rich types.

        ``refresh_ttl=`` renews the key's expiry with the read (a sliding TTL): to that many
        seconds, or with ``True`` to the TTL the key was last given (a key without one keeps
        none). In one atomic step where the backend offers it (SQLite, Redis, PostgreSQL,
        memory); else, for a number, a read then an ``expire``.
        """
        if telemetry.hook is not None and telemetry.hook.claim():
            found = await telemetry.hook.run(
                self, "get", key, Store.get(self, key, _MISSING, model=model, refresh_ttl=refresh_ttl), _found
            )
            return default if found is _MISSING else found
        backend = self.require_open()
        key = check_key(key)
        if refresh_ttl is None or refresh_ttl is False:
            record = await self._read_one(backend, key)
        else:
            ttl_ms = None if refresh_ttl is True else ttl_to_ms(refresh_ttl)
            self._require(Capability.EXPIRY, "expiry", key)
            refresher = self._flagged if Capability.REFRESH in self.capabilities_for(key) else None
            record = await read_refresh(backend, refresher, key, ttl_ms)
        if record is None:
            return default
        value = self._codec.decode(record.value)
        return value if model is None else validate_as(model, value)

    async def set(
        self,
        key: str,
        value: Any,
        ttl: TTL = None,
        *,
        keep_ttl: bool = False,
        if_version: str | None = None,
    ) -> str:
        """Store *value*; return its new version token.

        Without *ttl* an earlier expiry is removed, unless ``keep_ttl=True``. With
        ``if_version=`` the write applies only if the live value still has that version, else
        :class:`~ad_buyer_storage.errors.VersionConflictError`.
        """
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(
                self, "set", key, Store.set(self, key, value, ttl, keep_ttl=keep_ttl, if_version=if_version)
            )
        backend = self.require_open()
        key = check_key(key)
        ttl_ms = self._ttl_ms(ttl, key)
        if keep_ttl and ttl_ms is not None:
            raise InvalidInputError("pass either ttl= or keep_ttl=True, not both")
        text = self._codec.encode(value)
        version = new_version()
        if if_version is None:
            write = Write(key, text, version, ttl_ms, keep_ttl)
        else:
            self._require(Capability.ATOMIC, "version-checked writes", key)
            write = Write(key, text, version, ttl_ms, keep_ttl, Condition.IF_VERSION, check_version(if_version))
        if not await self._write_one(backend, write):
            raise VersionConflictError(f"{key!r} is no longer at version {if_version!r}")
        return version

    async def set_if_absent(self, key: str, value: Any, ttl: TTL = None) -> bool:
        """Store *value* only if *key* holds no live value; return whether it was stored."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "set_if_absent", key, Store.set_if_absent(self, key, value, ttl))
        backend = self.require_open()
        key = check_key(key)
        self._require(Capability.ATOMIC, "set-if-absent", key)
        ttl_ms = self._ttl_ms(ttl, key)
        write = Write(key, self._codec.encode(value), new_version(), ttl_ms, False, Condition.IF_ABSENT)
        return await self._write_one(backend, write)

    async def delete(self, key: str) -> bool:
        """Delete *key*; True if it held a live value."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "delete", key, Store.delete(self, key))
        backend = self.require_open()
        return await backend.remove((check_key(key),)) == 1

    async def exists(self, key: str) -> bool:
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "exists", key, Store.exists(self, key))
        backend = self.require_open()
        return await backend.count((check_key(key),)) == 1

    # -- versions and read-modify-write --------------------------------------------------------
    async def get_versioned(self, key: str, *, model: type[Any] | None = None) -> Versioned | None:
        """The value and its version token, or None if missing or expired."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(
                self, "get_versioned", key, Store.get_versioned(self, key, model=model), _found_versioned
            )
        backend = self.require_open()
        key = check_key(key)
        self._require(Capability.ATOMIC, "versioned reads", key)
        record = await self._read_one(backend, key)
        if record is None:
            return None
        value = self._codec.decode(record.value)
        return Versioned(value if model is None else validate_as(model, value), record.version)

    async def update(
        self,
        key: str,
        fn: Updater,
        *,
        default: Any = _MISSING,
        ttl: TTL = None,
        max_attempts: int = 200,
    ) -> Any:
        """Atomically replace the value at *key* with ``fn(current)``; return the new value.

        Optimistic concurrency: read with version, compute, write if the version still
        matches, retry with jittered backoff otherwise. *fn* may run more than once; it must
        not mutate shared state. A missing key raises :class:`KeyNotFoundError` unless
        *default* is given. The existing expiry is kept unless *ttl* is given; *ttl* also
        applies when the key is created.
        """
        check_attempts(max_attempts, "max_attempts")
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(
                self, "update", key, Store.update(self, key, fn, default=default, ttl=ttl, max_attempts=max_attempts)
            )
        self.require_open()
        key = check_key(key)
        self._require(Capability.ATOMIC, "atomic updates", key)
        return await self._update(key, fn, default, self._ttl_ms(ttl, key), False, max_attempts)

    async def _update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        default: Any,
        ttl_ms: int | None,
        ttl_on_create_only: bool,
        max_attempts: int,
    ) -> Any:
        self.require_open()
        op = Update(fn, default, ttl_ms, ttl_on_create_only, max_attempts)
        if self._updates is not None and not _holding.get():
            return await self._updates.submit(key, op)
        await self._apply_updates(key, [op])
        return await op.future

    async def _apply_updates(self, key: str, group: list[Update]) -> None:
        """One read, every function in order, one conditional write (see combine.py)."""
        backend = self.require_open()
        codec = self._codec
        token = _holding.set(True)  # an update from inside a function must not wait on any group (see _holding)
        try:
            for attempt in itertools.count():
                for op in group:  # each caller gives up after its own number of attempts
                    if attempt >= op.max_attempts:
                        _settle(op.future, error=VersionConflictError(
                            f"gave up updating {key!r} after {op.max_attempts} conflicting attempts"
                        ))  # fmt: skip
                group = [op for op in group if not op.future.done()]
                if not group:
                    return
                if attempt:  # jittered exponential backoff spreads the losers of a race over time
                    await asyncio.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** (attempt - 1))))
                if await self._update_once(backend, codec, key, group):
                    return
        finally:
            _holding.reset(token)

    async def _update_once(self, backend: StorageBackend, codec: JsonCodec, key: str, group: list[Update]) -> bool:
        """Apply *group* to the value read now; False if another write overtook it."""
        record = await self._read_one(backend, key)
        text: str | bytes | None = None if record is None else record.value
        written: str | None = None  # what the group's write will store
        write_ttl, keep = None, True  # an existing expiry is kept unless a caller sets one
        outcomes: list[tuple[Update, Any, BaseException | None]] = []
        for op in group:
            if op.future.done():  # cancelled meanwhile
                continue
            try:
                if text is None:
                    if op.default is _MISSING:
                        raise KeyNotFoundError(f"{key!r} does not exist")
                    current = codec.decode(codec.encode(op.default))  # a private copy
                else:
                    current = codec.decode(text)
                new_value = op.fn(current)
                if isinstance(new_value, Awaitable):
                    new_value = await new_value
                new_text = codec.encode(new_value)
            except Exception as exc:  # noqa: BLE001 - this caller's own error
                outcomes.append((op, None, exc))
                continue
            if text is None or (not op.ttl_on_create_only and op.ttl_ms is not None):
                write_ttl, keep = op.ttl_ms, False
            text = written = new_text
            outcomes.append((op, new_value, None))
        if written is not None:
            if record is None:
                write = Write(key, written, new_version(), write_ttl, keep, Condition.IF_ABSENT)
            else:
                write = Write(key, written, new_version(), write_ttl, keep, Condition.IF_VERSION, record.version)
            if not await self._write_one(backend, write):
                return False
        for op, value, error in outcomes:
            _settle(op.future, value, error=error)
        return True

    async def _apply_increments(self, key: str, group: list[Increment]) -> None:
        """One server-side increment per run of same-signed amounts (see combine.py)."""
        self.require_open()
        for run in sign_runs(group):
            run = [op for op in run if not op.future.done()]
            if not run:
                continue
            total = sum(op.amount for op in run)
            try:
                result = await self._atomic.increment(key, total, new_version(), run[0].ttl_ms)
            except InvalidValueError as exc:
                if len(run) == 1:
                    _settle(run[0].future, error=exc)
                    continue
                # Not an integer (each caller hears so) or the total leaves 64 bits while a
                # prefix of the run might not: one call per caller gives each its exact answer.
                for op in run:
                    if op.future.done():  # cancelled while the calls before it ran: never sent
                        continue
                    try:
                        _settle(op.future, await self._atomic.increment(key, op.amount, new_version(), op.ttl_ms))
                    except InvalidValueError as one:
                        _settle(op.future, error=one)
                continue
            running = result - total
            for op in run:
                running += op.amount
                _settle(op.future, running)

    @overload
    async def incr(self, key: str, amount: int = 1, *, ttl: TTL = None) -> int: ...
    @overload
    async def incr(self, key: str, amount: Decimal, *, ttl: TTL = None) -> Decimal: ...
    async def incr(self, key: str, amount: int | Decimal = 1, *, ttl: TTL = None) -> int | Decimal:
        """Atomically add *amount* (absent counts as 0) and return the new value.

        ``int`` amounts run on the server (64-bit). ``Decimal`` amounts are exact (money): the
        value is kept as decimal text and updated with a version check. *ttl* applies only
        when this call creates the key.
        """
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "incr", key, Store.incr(self, key, amount, ttl=ttl))
        self.require_open()
        key = check_key(key)
        self._require(Capability.ATOMIC, "atomic increments", key)
        amount = check_amount(amount)
        ttl_ms = self._ttl_ms(ttl, key)
        if isinstance(amount, Decimal):
            decimal_amount = amount

            def add(current: Any) -> str:
                return str(_DECIMAL_CONTEXT.add(as_decimal(current, key), decimal_amount))

            return Decimal(await self._update(key, add, "0", ttl_ms, True, 1000))
        if self._increments is None:
            return await self._atomic.increment(key, amount, new_version(), ttl_ms)
        return cast(int, await self._increments.submit(key, Increment(amount, ttl_ms)))

    # -- bulk --------------------------------------------------------------------------------
    @overload
    async def get_many(self, keys: Iterable[str], *, model: None = None) -> dict[str, Any]: ...
    @overload
    async def get_many(self, keys: Iterable[str], *, model: type[T]) -> dict[str, T]: ...
    async def get_many(self, keys: Iterable[str], *, model: type[Any] | None = None) -> dict[str, Any]:
        """Live values for *keys* in one round trip; missing and expired keys are left out."""
        if telemetry.hook is not None and telemetry.hook.claim():
            keys = list(keys)
            return await telemetry.hook.run(self, "get_many", keys, Store.get_many(self, keys, model=model), len)
        backend = self.require_open()
        unique = list(dict.fromkeys(check_key(k) for k in keys))
        if not unique:
            return {}
        try:
            records = await backend.read(unique)
        except PartialBatchError as exc:
            raise exc.first_error() from None
        decode = self._codec.decode
        out: dict[str, Any] = {}
        for key, record in zip(unique, records, strict=True):
            if record is not None:
                value = decode(record.value)
                out[key] = value if model is None else validate_as(model, value)
        return out

    async def set_many(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], ttl: TTL = None) -> None:
        """Store every item (all validated and encoded before any I/O), in one round trip.

        Not atomic: if the store refuses one item, the others are stored and its error is raised.
        """
        if telemetry.hook is not None and telemetry.hook.claim():
            listed = list(items.items() if isinstance(items, Mapping) else items)
            keys = [key for key, _ in listed]
            return await telemetry.hook.run(self, "set_many", keys, Store.set_many(self, listed, ttl))
        backend = self.require_open()
        ttl_ms = ttl_to_ms(ttl)
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        keys = check_keys([key for key, _ in pairs])
        encode = self._codec.encode
        staged = {key: encode(value) for key, (_, value) in zip(keys, pairs, strict=True)}  # last value wins
        if ttl_ms is not None:
            for key in staged if self._caps_for is not None else (None,):
                self._require(Capability.EXPIRY, "expiry", key)
        if staged:
            versions = new_versions(len(staged))
            try:
                await backend.write(
                    [
                        Write(k, text, version, ttl_ms)
                        for (k, text), version in zip(staged.items(), versions, strict=True)
                    ]
                )
            except PartialBatchError as exc:
                raise exc.first_error() from None

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Delete *keys* in one round trip; return how many held live values."""
        if telemetry.hook is not None and telemetry.hook.claim():
            keys = list(keys)
            return await telemetry.hook.run(self, "delete_many", keys, Store.delete_many(self, keys))
        backend = self.require_open()
        unique = list(dict.fromkeys(check_key(k) for k in keys))
        return await backend.remove(unique) if unique else 0

    # -- listing -----------------------------------------------------------------------------
    async def scan(self, pattern: str = "*", *, batch_size: int = _SCAN_BATCH) -> AsyncIterator[str]:
        """Stream live keys matching the glob *pattern*, each once, in no particular order."""
        backend = self.require_open()
        compiled = compile_glob(pattern)
        if batch_size < 1:
            raise InvalidInputError("batch_size must be >= 1")
        async for key in backend.scan(compiled, batch_size):
            yield key

    async def select(
        self, prefix: str, filters: Mapping[str, Any] | None = None, *, after: str | None = None,
        limit: int | None = None,
    ) -> Selection:  # fmt: skip
        """Records whose key starts with *prefix* and sorts after *after*, in key order, whose
        top-level fields equal *filters* (JSON equality, see :mod:`ad_buyer_storage.client.filters`),
        at most *limit*. Evaluated in the store where it can (``SupportsQuery``: an index range
        scan on SQLite and PostgreSQL); every record is checked again here, so the answer is
        the same on every backend. Pass ``after=selection.last_key`` for the next page."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(
                self, "select", prefix, Store.select(self, prefix, filters, after=after, limit=limit)
            )
        backend = self.require_open()
        if not isinstance(prefix, str):
            raise InvalidInputError(f"prefix must be a str, not {type(prefix).__name__}")
        if after is not None:
            after = check_key(after)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidInputError(f"limit must be a non-negative int or None, not {limit!r}")
        expected = wanted(filters)
        if self._querier is None:
            return await self._select_by_scan(backend, prefix, expected, after, limit)
        where = pushable(expected)
        rows: list[tuple[str, Any]] = []
        cursor = after
        while limit is None or len(rows) < limit:
            page = _SELECT_PAGE if limit is None else max(1, min(_SELECT_PAGE, limit - len(rows)))
            if len(where) < len(expected):
                page = _SELECT_PAGE  # the store cannot filter it all: fewer, larger round trips
            found = await self._querier.query(prefix, where, cursor, page)
            for key, record in found:
                value = self._codec.decode(record.value)
                cursor = key
                if not expected or matches(value, expected):
                    rows.append((key, value))
                    if limit is not None and len(rows) >= limit:
                        return Selection(rows, key)
            if len(found) < page:
                return Selection(rows, None)
        return Selection(rows, cursor)

    async def _select_by_scan(
        self, backend: StorageBackend, prefix: str, expected: dict[str, Any], after: str | None, limit: int | None
    ) -> Selection:
        """``select`` on a backend without ``SupportsQuery``: every key under *prefix* listed
        and sorted (memory and time grow with the keyspace, per page), then read in bulk."""
        if limit == 0:  # as the query path answers: nothing, and the same place to go on from
            return Selection([], after)
        keys = sorted([key async for key in backend.scan(compile_glob(escape_glob(prefix) + "*"), _SCAN_BATCH)])
        start = 0 if after is None else bisect.bisect_right(keys, after)
        rows: list[tuple[str, Any]] = []
        while start < len(keys):
            chunk = keys[start : start + _SELECT_PAGE]
            start += len(chunk)
            for key, record in zip(chunk, await backend.read(chunk), strict=True):
                if record is None:
                    continue  # expired or deleted since the listing
                value = self._codec.decode(record.value)
                if not expected or matches(value, expected):
                    rows.append((key, value))
                    if limit is not None and len(rows) >= limit:
                        return Selection(rows, key)
        return Selection(rows, None)

    async def keys(self, pattern: str = "*") -> list[str]:
        """Every live key matching *pattern*, sorted."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "keys", pattern, Store.keys(self, pattern))
        # The whole list is wanted: big pages mean few round trips.
        return sorted([key async for key in self.scan(pattern, batch_size=_LIST_BATCH)])

    async def count(self, pattern: str = "*") -> int:
        """How many live keys match *pattern*."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "count", pattern, Store.count(self, pattern))
        n = 0
        async for _ in self.scan(pattern):
            n += 1
        return n

    async def delete_pattern(self, pattern: str) -> int:
        """Delete every live key matching *pattern*; ``"*"`` (explicit) deletes the namespace."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "delete_pattern", pattern, Store.delete_pattern(self, pattern))
        if pattern == "":
            raise InvalidPatternError("refusing an empty pattern; pass '*' to delete everything")
        backend = self.require_open()
        compiled = compile_glob(pattern)
        if compiled.is_prefix_only and self._prefix_remover is not None:
            return await self._prefix_remover.remove_prefix(compiled.prefix)  # one range DELETE on SQL stores
        deleted = 0
        batch: list[str] = []
        async for key in backend.scan(compiled, _SCAN_BATCH):
            batch.append(key)
            if len(batch) >= _DELETE_BATCH:
                deleted += await backend.remove(batch)
                batch = []
        if batch:
            deleted += await backend.remove(batch)
        return deleted

    async def clear(self) -> int:
        """Delete every key of this namespace (and nothing outside it), then release it."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "clear", None, Store.clear(self))
        deleted = await self.delete_pattern("*")
        if isinstance(self._backend, SupportsReleaseNamespace):
            try:
                await self._backend.release_namespace()
            except StorageError as exc:  # the keys are gone: the claim left behind only reserves the name
                log.warning("cleared, but the namespace was not released: %s", exc)
        return deleted

    # -- expiry ------------------------------------------------------------------------------
    async def ttl(self, key: str) -> float | None:
        """Seconds left before *key* expires, None if it never does; KeyNotFoundError if missing."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "ttl", key, Store.ttl(self, key))
        backend = self.require_open()
        key = check_key(key)
        if Capability.EXPIRY not in self.capabilities_for(key):
            if await backend.count((key,)) == 0:
                raise KeyNotFoundError(f"{key!r} does not exist")
            return None
        remaining = await self._expiry.get_ttl(key)
        if remaining == NO_KEY:
            raise KeyNotFoundError(f"{key!r} does not exist")
        return None if remaining == NO_EXPIRY else remaining / 1000

    async def expire(self, key: str, ttl: TTL) -> bool:
        """Give a live *key* a new TTL; False if it does not exist."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "expire", key, Store.expire(self, key, ttl))
        self.require_open()
        key = check_key(key)
        if ttl is None:
            raise InvalidInputError("expire() needs a ttl; use persist() to remove an expiry")
        ttl_ms = self._ttl_ms(ttl, key)
        return await self._expiry.set_ttl(key, ttl_ms)

    async def persist(self, key: str) -> bool:
        """Remove the expiry of a live *key*; False if it does not exist."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "persist", key, Store.persist(self, key))
        self.require_open()
        key = check_key(key)
        self._require(Capability.EXPIRY, "expiry", key)
        return await self._expiry.set_ttl(key, None)

    # -- transactions ------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``async with store.transaction() as tx:`` reads and stages writes of several keys;
        leaving the block applies them all atomically iff no key read changed since it was read
        (else :class:`~ad_buyer_storage.errors.TransactionConflictError`, nothing applied). An
        exception leaving the block applies nothing. See :mod:`ad_buyer_storage.client.transaction`."""
        if telemetry.hook is not None and telemetry.hook.claim():
            with telemetry.hook.span(self, "transaction", None):
                async with Store.transaction(self) as tx:
                    yield tx
            return
        backend = self.require_open()
        if self._caps_for is None:  # behind a router, each key's route decides (at the call)
            self._require(Capability.TRANSACTIONS, "transactions")
        tx = Transaction(backend, self._codec, routing=self._routing, committer=self._committer)
        try:
            yield tx
        except Exception as exc:
            # An error drawn from reads that saw no one state is a conflict (transact retries).
            stale = tx.is_open and not isinstance(exc, TransactionConflictError) and not await _block_reads_hold(tx)
            tx.discard()
            if stale:
                raise TransactionConflictError(
                    "the block raised after reading keys that changed meanwhile; nothing was applied"
                ) from exc
            raise
        except BaseException:
            tx.discard()
            raise
        if tx.is_open:  # unless the block committed it itself
            await tx.commit()

    async def transact(self, fn: Callable[[Transaction], Awaitable[T]], *, attempts: int = 10) -> T:
        """Run ``fn(tx)`` in a transaction and commit; on a conflict, run it again, up to
        *attempts* times; return what *fn* returned.

        A retry first takes this store's local locks on the keys the failed attempt touched:
        tasks of one process contending for the same keys then take turns instead of failing
        each other again and again. A conflict even under those locks came from another
        process: on a store shared by processes (a backend with turns: PostgreSQL, SQLite,
        Redis) the next attempts wait for their turn on those keys: such transactions of every
        process are served one at a time, first come first served, and no other transaction
        can commit over them meanwhile, so none is starved by the others (only a plain write to
        one of its keys can still make it conflict again: that is retried after a jittered
        backoff)."""
        check_attempts(attempts)
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "transact", None, Store.transact(self, fn, attempts=attempts))
        held: tuple[str, ...] = ()
        turned: tuple[str, ...] = ()  # the keys to take the turn on (see below)
        for attempt in range(attempts):
            touched: tuple[str, ...] = ()
            turn = self._turn(turned)  # decided before the local locks mark this context as holding
            try:
                async with self._local_locks(held), turn, self.transaction() as tx:
                    try:
                        result = await fn(tx)
                    finally:
                        touched = tx.touched_keys()
                return result
            except TransactionConflictError:
                if attempt == attempts - 1:
                    raise
                if held and set(touched) <= set(held):  # lost even under this process's locks: to another process
                    if turned:  # even under its turn (a plain write overtook it): back off
                        await asyncio.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))
                    turned = held  # from now on, wait for the turn on its keys
                held = tuple(sorted(set(touched) | set(held)))
        raise AssertionError("unreachable")

    def _turn(self, keys: tuple[str, ...]) -> contextlib.AbstractAsyncContextManager[None]:
        """The backend's turn on *keys* across processes (see SupportsTurns); none for a
        transaction run from inside another's function (it must never wait: see _holding)."""
        if not keys or _holding.get() or Capability.TURNS not in self.capabilities_for(keys[0]):
            return contextlib.nullcontext()
        return self._flagged.turn(keys)

    @asynccontextmanager
    async def _local_locks(self, keys: tuple[str, ...]) -> AsyncIterator[None]:
        """This store's lock of each of *keys* (sorted: no two takers wait for each other)."""
        if _holding.get():  # called from a function run under such locks: never wait on them
            keys = ()
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                lock = self._key_locks.get(key)
                if lock is None:
                    lock = self._key_locks[key] = asyncio.Lock()
                await stack.enter_async_context(lock)
            token = _holding.set(True) if keys else None
            try:
                yield
            finally:
                if token is not None:
                    _holding.reset(token)

    # -- pub/sub -----------------------------------------------------------------------------
    def _pubsub(self, channel: str) -> SupportsPubSub:
        self.require_open()
        self._require(Capability.PUBSUB, "publish/subscribe", channel)
        return self._flagged

    async def publish(self, channel: str, message: Any) -> int:
        """Publish a JSON-encodable *message*; return how many subscribers got it (-1: unknown)."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "publish", channel, Store.publish(self, channel, message))
        channel = check_key(channel)
        backend = self._pubsub(channel)
        return await backend.publish(channel, self._codec.encode(message))

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[Any]]:
        """``async with storage.subscribe(ch) as messages: async for m in messages: ...``"""
        channel = check_key(channel)
        backend = self._pubsub(channel)
        decode = self._codec.decode
        async with backend.subscribe(channel) as raw:

            async def decoded() -> AsyncIterator[Any]:
                async for text in raw:
                    yield decode(text)

            yield decoded()

    # -- health ------------------------------------------------------------------------------
    async def ping(self) -> float:
        """One round trip; return its latency in seconds."""
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "ping", None, Store.ping(self))
        backend = self.require_open()
        start = time.perf_counter()
        await backend.ping()
        return time.perf_counter() - start

    async def info(self) -> dict[str, object]:
        """What ``doctor`` shows: backend facts (never a secret) and capabilities."""
        backend = self.require_open()
        facts = dict(await backend.info())
        facts.setdefault("backend", backend.name)
        facts["capabilities"] = sorted(c.value for c in self._caps)
        return facts


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


async def _block_reads_hold(tx: Transaction) -> bool:
    """Whether a block's reads saw one state; True when that cannot be told (the block's own
    error then stands)."""
    try:
        return await tx._reads_hold()
    except StorageError:
        return True
