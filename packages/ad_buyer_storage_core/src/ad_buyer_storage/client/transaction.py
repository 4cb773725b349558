"""Multi-key transactions, optimistic: read, compute, then validate and write in one short step.

>>> async with store.transaction() as tx:
...     campaign = await tx.get("campaign:c1")        # the version read is remembered
...     tx.set("campaign:c1", {**campaign, "spent": "10.00"})
...     tx.set("order:o1", {"amount": "10.00"})
... # leaving the block commits: every write applied atomically iff no key read changed since;
... # otherwise TransactionConflictError, and nothing is applied. An exception: nothing applied.

Nothing is held while the caller's code runs: reads are plain reads that remember the version
they saw (or that the key was absent), writes are staged in memory, and the backend's
:meth:`~ad_buyer_storage.contract.protocol.SupportsTransactions.commit` checks those versions
and applies every write in one atomic step. Reads see the transaction's own writes.

Every transaction sees one state or conflicts: a block that only read two keys or more ends
with the same check, writing nothing (its reads may straddle another commit); a block that
raised after such reads is checked too, and its error becomes a conflict if they did not hold
(it may come from a state that never was).
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Iterable, Sequence
from decimal import Context, Decimal
from typing import Any, NamedTuple, TypeVar, cast, overload

from ad_buyer_storage.client.codec import JsonCodec, validate_as
from ad_buyer_storage.client.validation import TTL, as_decimal, check_amount, check_key, check_version, ttl_to_ms
from ad_buyer_storage.contract.protocol import (
    INT64_MAX,
    INT64_MIN,
    Capability,
    Check,
    Record,
    StorageBackend,
    SupportsRouting,
    SupportsTransactions,
    Write,
    new_version,
)
from ad_buyer_storage.errors import (
    InvalidInputError,
    InvalidValueError,
    LifecycleError,
    TransactionConflictError,
    TransactionTooLargeError,
    UnsupportedOperationError,
)

__all__ = ["MAX_TRANSACTION_WRITES", "Transaction"]

#: The most writes and deletes one transaction may stage (one atomic step on every backend).
MAX_TRANSACTION_WRITES = 1000

T = TypeVar("T")
D = TypeVar("D")
_DECIMAL = Context(prec=200)


class _State(enum.Enum):
    OPEN = "open"
    DONE = "done"


class _Staged(NamedTuple):
    """A staged write (*text* set) or delete (*text* None)."""

    text: str | None
    ttl_ms: int | None = None
    keep_ttl: bool = False


class Staged:
    """What staging calls return: nothing to wait for, and awaitable, so that
    ``tx.set(k, v)`` and ``await tx.set(k, v)`` both work (``tx.get`` is a coroutine, and code
    mixing the two shapes should not fail with a bare TypeError)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return
        yield  # a generator: awaiting it returns at once

    def __repr__(self) -> str:
        return "<staged>"


STAGED = Staged()


class Transaction:
    """Reads that remember versions, writes staged until commit. Use ``store.transaction()``."""

    def __init__(
        self,
        backend: StorageBackend,
        codec: JsonCodec,
        *,
        routing: SupportsRouting | None = None,
        committer: SupportsTransactions | None = None,
    ) -> None:
        """*routing* and *committer*: *backend* as a router and as a transactional backend, when
        it is one (``Store`` passes what it found once; protocol checks are slow per call)."""
        self._backend = backend
        self._codec = codec
        self._routing = routing
        self._committer = committer
        self._read: dict[str, Record | None] = {}  # first read of each key: what the checks hold to
        self._required: dict[str, str | None] = {}
        self._staged: dict[str, _Staged] = {}
        self._route: tuple[object, str] | None = None  # a router's route every key must share
        self._state = _State.OPEN
        #: After a commit: the version each written key now has.
        self.versions: dict[str, str] = {}

    @property
    def is_open(self) -> bool:
        """Until committed (the block ended, or ``commit()``) or discarded (an exception)."""
        return self._state is _State.OPEN

    # -- reads -------------------------------------------------------------------------------
    async def _records(self, keys: Sequence[str]) -> dict[str, Record | None]:
        missing = [k for k in dict.fromkeys(keys) if k not in self._read and k not in self._staged]
        if missing:
            for key, record in zip(missing, await self._backend.read(missing), strict=True):
                self._read[key] = record
        return {k: self._read.get(k) for k in keys}

    def _value(self, key: str, record: Record | None) -> tuple[bool, Any]:
        staged = self._staged.get(key)
        if staged is not None:
            return (False, None) if staged.text is None else (True, self._codec.decode(staged.text))
        return (False, None) if record is None else (True, self._codec.decode(record.value))

    @overload
    async def get(self, key: str, default: Any = None, *, model: None = None) -> Any: ...
    @overload
    async def get(self, key: str, default: None = None, *, model: type[T]) -> T | None: ...
    @overload
    async def get(self, key: str, default: D, *, model: type[T]) -> T | D: ...
    async def get(self, key: str, default: Any = None, *, model: type[Any] | None = None) -> Any:
        """The value at *key* as this transaction sees it (its own writes included)."""
        key = self._key(key)
        found, value = self._value(key, (await self._records([key]))[key])
        if not found:
            return default
        return value if model is None else validate_as(model, value)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Live values of *keys* as this transaction sees them; missing ones left out."""
        wanted = [self._key(k) for k in keys]
        records = await self._records(wanted)
        out = {}
        for key in dict.fromkeys(wanted):
            found, value = self._value(key, records[key])
            if found:
                out[key] = value
        return out

    async def exists(self, key: str) -> bool:
        key = self._key(key)
        return self._value(key, (await self._records([key]))[key])[0]

    # -- staged writes and conditions --------------------------------------------------------
    def set(self, key: str, value: Any, ttl: TTL = None, *, keep_ttl: bool = False) -> Staged:
        """Stage a write (validated and encoded now: bad input is refused at the call). Nothing
        to wait for, but ``await tx.set(...)`` works too (as ``await tx.get(...)`` does)."""
        key = self._key(key)
        ttl_ms = ttl_to_ms(ttl)
        if ttl_ms is not None and Capability.EXPIRY not in self._capabilities(key):
            raise UnsupportedOperationError(f"the {self._backend.name!r} backend does not support expiry for {key!r}")
        if keep_ttl and ttl_ms is not None:
            raise InvalidInputError("pass either ttl= or keep_ttl=True, not both")
        self._stage(key, _Staged(self._codec.encode(value), ttl_ms, keep_ttl))
        return STAGED

    def delete(self, key: str) -> Staged:
        """Stage a delete (``await tx.delete(...)`` works too)."""
        self._stage(self._key(key), _Staged(None))
        return STAGED

    @overload
    async def incr(self, key: str, amount: int = 1, *, ttl: TTL = None) -> int: ...
    @overload
    async def incr(self, key: str, amount: Decimal, *, ttl: TTL = None) -> Decimal: ...
    async def incr(self, key: str, amount: int | Decimal = 1, *, ttl: TTL = None) -> int | Decimal:
        """Read *key* (absent counts as 0), stage it plus *amount*, return the new value.

        Like every read, it makes the commit depend on the key not changing meanwhile. ``int``
        amounts need a JSON integer and stay within 64 bits; ``Decimal`` amounts are exact and
        kept as decimal text. *ttl* applies only when the key is created; an expiry is kept.
        """
        key = self._key(key)
        amount = check_amount(amount)
        found, current = self._value(key, (await self._records([key]))[key])
        if isinstance(amount, Decimal):
            base = as_decimal(current, key) if found else Decimal(0)  # typed, as Store.incr's
            result: int | Decimal = _DECIMAL.add(base, amount)
            stored: Any = str(result)
        else:
            if found and type(current) is not int:
                raise InvalidValueError(f"the value at {key!r} is not an integer")
            result = (cast(int, current) if found else 0) + amount
            if not INT64_MIN <= result <= INT64_MAX:
                raise InvalidValueError(f"incrementing {key!r} by {amount} would overflow 64 bits")
            stored = result
        if found:
            self.set(key, stored, keep_ttl=True)
        else:
            self.set(key, stored, ttl)
        return result

    def require_absent(self, key: str) -> None:
        """Commit only if *key* holds no live value then."""
        self._require(self._key(key), None)

    def require_version(self, key: str, version: str) -> None:
        """Commit only if *key* is still at *version* then."""
        self._require(self._key(key), check_version(version))

    # -- commit ------------------------------------------------------------------------------
    async def commit(self) -> None:
        """Apply every staged write atomically iff nothing read changed; else TransactionConflictError."""
        self._open()
        self._state = _State.DONE
        if not self._staged and not self._reads_need_check():
            return  # nothing to apply, and one read (or none) is one state
        # Reads alone apply nothing, but two of them may straddle another commit: they are
        # checked like any commit's, in one atomic step that writes nothing.
        committer = self._committer
        if committer is None or any(
            Capability.TRANSACTIONS not in self._capabilities(k) for k in (*self._staged, *self._read)
        ):
            raise UnsupportedOperationError(f"the {self._backend.name!r} backend does not support transactions")
        checks = self._checks()
        writes, deletes = [], []
        for key, staged in self._staged.items():
            if staged.text is None:
                deletes.append(key)
            else:
                version = new_version()
                writes.append(Write(key, staged.text, version, staged.ttl_ms, staged.keep_ttl))
                self.versions[key] = version
        if not await committer.commit(checks, writes, deletes):
            self.versions.clear()
            raise TransactionConflictError(
                "a key this transaction read changed before it committed; nothing was applied"
            )

    async def _reads_hold(self) -> bool:
        """Whether every key read is still at the version read (and every requirement holds),
        checked in one atomic step that writes nothing: whether the reads saw one state. True
        when that cannot be told (a route without transactions). ``Store.transaction`` asks it
        of a block that raised: an error drawn from a state that never was is a conflict."""
        if not self._reads_need_check():
            return True
        committer = self._committer
        if committer is None or any(
            Capability.TRANSACTIONS not in self._capabilities(k) for k in (*self._read, *self._required)
        ):
            return True
        return await committer.commit(self._checks(), [], [])

    def _reads_need_check(self) -> bool:
        return len(self._read) > 1 or bool(self._required)

    def _checks(self) -> list[Check]:
        checks: list[Check] = [(k, None if r is None else r.version) for k, r in self._read.items()]
        return checks + [(k, v) for k, v in self._required.items() if k not in self._read]

    def touched_keys(self) -> tuple[str, ...]:
        """Every key this transaction read, required or staged."""
        return tuple(dict.fromkeys((*self._read, *self._required, *self._staged)))

    def discard(self) -> None:
        """Drop every staged write: nothing is applied."""
        self._state = _State.DONE

    # -- plumbing ----------------------------------------------------------------------------
    def _open(self) -> None:
        if self._state is not _State.OPEN:
            raise LifecycleError("this transaction is over: start another one")

    def _key(self, key: str) -> str:
        self._open()
        key = check_key(key)
        if self._routing is not None:
            route = self._routing.route_of(key)
            if self._route is None:
                self._route = (route, key)
            elif route != self._route[0]:
                raise UnsupportedOperationError(
                    f"a transaction's keys must live on one backend; {key!r} and {self._route[1]!r} are routed "
                    "to different ones (no transaction spans two stores)"
                )
        return key

    def _capabilities(self, key: str) -> frozenset[Capability]:
        return self._backend.capabilities if self._routing is None else self._routing.capabilities_for(key)

    def _stage(self, key: str, staged: _Staged) -> None:
        if key not in self._staged and len(self._staged) >= MAX_TRANSACTION_WRITES:
            raise TransactionTooLargeError(f"a transaction takes at most {MAX_TRANSACTION_WRITES} writes and deletes")
        self._staged[key] = staged

    def _require(self, key: str, version: str | None) -> None:
        if key in self._read:
            seen = self._read[key]
            if (None if seen is None else seen.version) != version:
                raise TransactionConflictError(f"{key!r} is not at the version required (it was read otherwise)")
        self._required[key] = version
