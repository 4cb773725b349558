"""The generic API, declared once: what :class:`~ad_buyer_storage.Store` implements, and what
everything built on a store is typed against (migration and verification, locks and rate
limits, the conformance kit, the domain's ``Storage``, the blocking facade's generator).

A domain holds a :class:`StoreAPI` and builds on it; it never re-declares these methods: the
buyer agent's ``Storage`` gets them from generated delegates (``tools/generate_sync.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, overload, runtime_checkable

from ad_buyer_storage.client.store import Selection, Store, Updater, Versioned
from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage.client.validation import TTL
from ad_buyer_storage.contract.protocol import Capability, StorageBackend

__all__ = ["StoreAPI"]

T = TypeVar("T")
D = TypeVar("D")


@runtime_checkable
class StoreAPI(Protocol):
    """The generic store: keys, JSON values, versions, TTLs, listings, transactions, pub/sub.

    Implemented by :class:`~ad_buyer_storage.Store`; the buyer agent's ``Storage`` offers it by
    delegation to the store it has. Type code that only needs a store against this protocol.
    """

    @property
    def backend(self) -> StorageBackend:
        """The backend doing the I/O."""
        ...

    @property
    def name(self) -> str:
        """The backend's registry name (``sqlite``, ``hybrid``...)."""
        ...

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What every key of this store may use (see :class:`~ad_buyer_storage.Capability`)."""
        ...

    def capabilities_for(self, key: str) -> frozenset[Capability]:
        """What operations on *key* may use: the route's capabilities behind a router."""
        ...

    @property
    def max_value_bytes(self) -> int:
        """The largest encoded value accepted (bytes of UTF-8 JSON)."""
        ...

    @property
    def is_open(self) -> bool:
        """Connected and not yet closed."""
        ...

    async def connect(self) -> Self:
        """Connect the backend (once; later calls return at once). Returns ``self``."""
        ...

    async def aclose(self) -> None:
        """Close the backend. Idempotent; the object cannot be reopened."""
        ...

    async def disconnect(self) -> None:
        """The same as :meth:`aclose` (the seed's name)."""
        ...

    async def __aenter__(self) -> Self:
        """Connect; ``async with`` gives the object itself."""
        ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def require_open(self) -> StorageBackend:
        """The backend, once connected; else the lifecycle error. For tools that work on the
        backend's primitives directly (migration, verification)."""
        ...

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
        memory); else, for a number, a read then an ``expire``."""
        ...

    async def set(
        self, key: str, value: Any, ttl: TTL = None, *, keep_ttl: bool = False, if_version: str | None = None
    ) -> str:
        """Store *value*; return its new version token.

        Without *ttl* an earlier expiry is removed, unless ``keep_ttl=True``. With
        ``if_version=`` the write applies only if the live value still has that version, else
        :class:`~ad_buyer_storage.errors.VersionConflictError`."""
        ...

    async def set_if_absent(self, key: str, value: Any, ttl: TTL = None) -> bool:
        """Store *value* only if *key* holds no live value; return whether it was stored."""
        ...

    async def delete(self, key: str) -> bool:
        """Delete *key*; True if it held a live value."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether *key* holds a live value."""
        ...

    async def get_versioned(self, key: str, *, model: type[Any] | None = None) -> Versioned | None:
        """The value and its version token, or None if missing or expired."""
        ...

    async def update(
        self, key: str, fn: Updater, *, default: Any = Store.NO_DEFAULT, ttl: TTL = None, max_attempts: int = 200
    ) -> Any:
        """Atomically replace the value at *key* with ``fn(current)``; return the new value.

        Optimistic concurrency: read with version, compute, write if the version still
        matches, retry with jittered backoff otherwise. *fn* may run more than once; it must
        not mutate shared state. A missing key raises :class:`KeyNotFoundError` unless
        *default* is given. The existing expiry is kept unless *ttl* is given; *ttl* also
        applies when the key is created."""
        ...

    @overload
    async def incr(self, key: str, amount: int = 1, *, ttl: TTL = None) -> int: ...

    @overload
    async def incr(self, key: str, amount: Decimal, *, ttl: TTL = None) -> Decimal: ...

    async def incr(self, key: str, amount: int | Decimal = 1, *, ttl: TTL = None) -> int | Decimal:
        """Atomically add *amount* (absent counts as 0) and return the new value.

        ``int`` amounts run on the server (64-bit). ``Decimal`` amounts are exact (money): the
        value is kept as decimal text and updated with a version check. *ttl* applies only
        when this call creates the key."""
        ...

    @overload
    async def get_many(self, keys: Iterable[str], *, model: None = None) -> dict[str, Any]: ...

    @overload
    async def get_many(self, keys: Iterable[str], *, model: type[T]) -> dict[str, T]: ...

    async def get_many(self, keys: Iterable[str], *, model: type[Any] | None = None) -> dict[str, Any]:
        """Live values for *keys* in one round trip; missing and expired keys are left out."""
        ...

    async def set_many(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], ttl: TTL = None) -> None:
        """Store every item (all validated and encoded before any I/O), in one round trip.

        Not atomic: if the store refuses one item, the others are stored and its error is raised."""
        ...

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Delete *keys* in one round trip; return how many held live values."""
        ...

    def scan(self, pattern: str = "*", *, batch_size: int = 500) -> AsyncIterator[str]:
        """Stream live keys matching the glob *pattern*, each once, in no particular order."""
        ...

    async def select(
        self,
        prefix: str,
        filters: Mapping[str, Any] | None = None,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> Selection:
        """Records whose key starts with *prefix* and sorts after *after*, in key order, whose
        top-level fields equal *filters* (JSON equality, see :mod:`ad_buyer_storage.client.filters`),
        at most *limit*. Evaluated in the store where it can (``SupportsQuery``: an index range
        scan on SQLite and PostgreSQL); every record is checked again here, so the answer is
        the same on every backend. Pass ``after=selection.last_key`` for the next page; it is None
        when nothing matches past this page (a full page included: no empty page follows)."""
        ...

    async def keys(self, pattern: str = "*") -> list[str]:
        """Every live key matching *pattern*, sorted."""
        ...

    async def count(self, pattern: str = "*") -> int:
        """How many live keys match *pattern*."""
        ...

    async def delete_pattern(self, pattern: str) -> int:
        """Delete every live key matching *pattern*; ``"*"`` (explicit) deletes the namespace."""
        ...

    async def clear(self) -> int:
        """Delete every key of this namespace (and nothing outside it), then release it."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds left before *key* expires, None if it never does; KeyNotFoundError if missing."""
        ...

    async def expire(self, key: str, ttl: TTL) -> bool:
        """Give a live *key* a new TTL; False if it does not exist."""
        ...

    async def persist(self, key: str) -> bool:
        """Remove the expiry of a live *key*; False if it does not exist."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """``async with store.transaction() as tx:`` reads and stages writes of several keys;
        leaving the block applies them all atomically iff no key read changed since it was read
        (else :class:`~ad_buyer_storage.errors.TransactionConflictError`, nothing applied). An
        exception leaving the block applies nothing. See :mod:`ad_buyer_storage.client.transaction`."""
        ...

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
        ...

    async def publish(self, channel: str, message: Any) -> int:
        """Publish a JSON-encodable *message*; return how many subscribers got it (-1: unknown)."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
        """``async with storage.subscribe(ch) as messages: async for m in messages: ...``"""
        ...

    async def ping(self) -> float:
        """One round trip; return its latency in seconds."""
        ...

    async def info(self) -> dict[str, object]:
        """What ``doctor`` shows: backend facts (never a secret) and capabilities."""
        ...


if TYPE_CHECKING:  # mypy holds Store to the declaration: a missing or changed method fails here

    def _store_implements_the_api(store: Store) -> StoreAPI:
        return store
