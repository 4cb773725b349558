"""The backend contract: the few primitives a backend implements, and how it says what else it can do.

Everything a user calls (``get``/``set``/``keys``/``incr``/versioned writes, and on top of
them the domain helpers, locks and rate limits) is built in core by
:class:`ad_buyer_storage.Store` on these primitives.
Core validates keys, patterns and TTLs and encodes values *before* calling a backend, so a
backend receives only valid keys, JSON text, millisecond TTLs and compiled patterns, and
every backend rejects bad input identically.

A backend:

* stores, per key, the JSON text, an opaque version token (chosen by core on every write) and
  an optional expiry; an expired key is invisible to every primitive from the instant of expiry;
* makes each primitive atomic per key (a batch is a batch of atomic single-key operations);
* translates its driver's errors into :mod:`ad_buyer_storage.errors` in one place;
* declares what it can do beyond the primitives in ``capabilities``.

One way to say what a backend can do (the rule):

* **Results differ -> a flag.** An ability a user can observe in results is a
  :class:`Capability` flag, and the flag is the truth: core (``Store``, the hybrid router, the
  kit) decides by flags only (per key through a router's ``capabilities_for``). Each flag's
  methods have their shape in one protocol: EXPIRY :class:`SupportsExpiry`, ATOMIC
  :class:`SupportsAtomic`, PUBSUB :class:`SupportsPubSub`, TRANSACTIONS
  :class:`SupportsTransactions`, REFRESH :class:`SupportsRefresh`, TURNS :class:`SupportsTurns`
  (:data:`FLAG_METHODS`); DURABLE and MULTI_PROCESS have no methods. A backend implements the
  methods of the flags it claims, and only those; ``Store`` refuses (``ConfigurationError``
  naming the backend, the flag and the missing methods) a backend claiming a flag whose
  methods it lacks. Methods of a flag not claimed are never called (old stubs keep working).
* **Only speed or reports -> a hook protocol**, detected with ``isinstance``, no flag:
  :class:`SupportsQuery` (filtered, paged listing in the store), :class:`SupportsRemovePrefix`,
  :class:`SupportsReleaseNamespace`, :class:`SupportsTelemetry` (facts for OpenTelemetry),
  :class:`SupportsRouting` (which part serves a key) and :class:`SupportsParts` (what a
  backend made of backends is made of).
* **Wrappers** (breaker, mirror, hybrid router) claim what their parts give, forward the
  methods of every flag they may claim explicitly, and have a hook protocol only where their
  parts have it (:mod:`ad_buyer_storage.composed.forwarding`): no ``__getattr__`` pass-through.
"""

from __future__ import annotations

import enum
import random
from collections.abc import AsyncIterator, Hashable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import NamedTuple, Protocol, runtime_checkable

from ad_buyer_storage.contract.glob import GlobPattern

__all__ = [
    "INT64_MAX",
    "Check",
    "INT64_MIN",
    "NO_EXPIRY",
    "NO_KEY",
    "Capability",
    "FLAG_METHODS",
    "Peer",
    "PoolUsage",
    "Condition",
    "Record",
    "StorageBackend",
    "Filter",
    "SupportsAtomic",
    "SupportsExpiry",
    "SupportsParts",
    "SupportsPubSub",
    "SupportsQuery",
    "SupportsRefresh",
    "SupportsReleaseNamespace",
    "SupportsRemovePrefix",
    "SupportsRouting",
    "SupportsTelemetry",
    "SupportsTransactions",
    "SupportsTurns",
    "Write",
    "new_version",
    "new_versions",
    "unimplemented",
]

#: ``get_ttl`` answers for a missing key and for a key without expiry (Redis's PTTL codes).
NO_KEY = -2
NO_EXPIRY = -1
#: The range of a counter: ``increment`` works on signed 64-bit integers on every backend.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Capability(enum.StrEnum):
    """Optional abilities a backend declares, each observable in results; the flags are the
    truth (core decides by them alone) and the conformance kit tests each claim. A flag with
    methods has them in one protocol (:data:`FLAG_METHODS`)."""

    #: Keys can be given a TTL and expire (``ttl=``, ``expire``, ``ttl()``): :class:`SupportsExpiry`.
    EXPIRY = "expiry"
    #: Server-side set-if-absent, increment and version-checked writes: :class:`SupportsAtomic`.
    ATOMIC = "atomic"
    #: ``publish``/``subscribe`` (see :class:`SupportsPubSub`).
    PUBSUB = "pubsub"
    #: Several processes may use the same store at once, atomics included: on any number of
    #: hosts for a server store, on one host for a file store such as SQLite (see the backend guide).
    MULTI_PROCESS = "multi_process"
    #: Several keys change together or not at all (see :class:`SupportsTransactions`).
    TRANSACTIONS = "transactions"
    #: Data written survives closing the backend and opening a new one on the same store.
    DURABLE = "durable"
    #: A read can renew a key's expiry in the same step, to the TTL the key was written with
    #: (``get(refresh_ttl=True)``): :class:`SupportsRefresh`.
    REFRESH = "refresh"
    #: A transaction that lost a conflict waits for its turn, served first come first served
    #: across processes, instead of losing again: :class:`SupportsTurns`.
    TURNS = "turns"

    def __str__(self) -> str:
        return self.value


class Condition(enum.Enum):
    """When a :class:`Write` applies."""

    ALWAYS = "always"
    IF_ABSENT = "if_absent"  # no live (unexpired) value under the key
    IF_VERSION = "if_version"  # the live value's version equals ``Write.expected_version``


class Record(NamedTuple):
    """A live value as stored: JSON text (``str``, or UTF-8 ``bytes`` straight off a socket)
    and its version token."""

    value: str | bytes
    version: str


class Write(NamedTuple):
    """One single-key write. ``ttl_ms`` None means no expiry, unless ``keep_ttl`` keeps the live one."""

    key: str
    value: str
    version: str
    ttl_ms: int | None = None
    keep_ttl: bool = False
    condition: Condition = Condition.ALWAYS
    expected_version: str | None = None


def new_version() -> str:
    """A fresh version token: 64 random bits, so versions never repeat after delete/recreate.

    Core mints one for every write; a backend made of other backends (the mirror) may mint its own.
    ``random`` (not a syscall per token) is enough: tokens need to be unique, not secret, and
    CPython reseeds it in a forked child.
    """
    return f"{random.getrandbits(64):016x}"


def new_versions(count: int) -> list[str]:
    """*count* fresh version tokens at once (bulk writes): as :func:`new_version`, one draw."""
    text = f"{random.getrandbits(64 * count):0{16 * count}x}" if count else ""
    return [text[i : i + 16] for i in range(0, 16 * count, 16)]


@runtime_checkable
class StorageBackend(Protocol):
    """What every backend implements: the mandatory primitives. Keys, patterns, TTLs and values
    arrive validated. The methods of each flag it claims are in that flag's protocol
    (:data:`FLAG_METHODS`)."""

    #: The registry name (``"sqlite"``, ``"redis"``, a stranger's ``"dynamodb"``).
    name: str
    #: What this backend offers beyond the mandatory primitives (the truth core decides by).
    capabilities: frozenset[Capability]

    async def connect(self) -> None:
        """Open connections/pools; create schema if needed. Called once."""

    async def aclose(self) -> None:
        """Release everything. Called once, also after a failed ``connect``."""

    async def ping(self) -> None:
        """One round trip to the store; raise a translated error if it is unhealthy."""

    async def info(self) -> Mapping[str, object]:
        """Facts for ``doctor``: server version, file, pool state... never a secret."""

    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        """Live records for *keys*, in order, ``None`` where missing or expired. One round trip."""

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        """Apply *writes* in order; per write, whether its condition held and it was applied."""

    async def remove(self, keys: Sequence[str]) -> int:
        """Delete *keys*; return how many were live (expired leftovers may be dropped too)."""

    async def count(self, keys: Sequence[str]) -> int:
        """How many of *keys* (distinct) are live."""

    def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        """Stream live keys matching *pattern* (each once), a batch per round trip, any order."""


@runtime_checkable
class SupportsExpiry(Protocol):
    """The methods of :attr:`Capability.EXPIRY` (writes carry ``ttl_ms`` too)."""

    async def get_ttl(self, key: str) -> int:
        """Remaining milliseconds (> 0), :data:`NO_EXPIRY` or :data:`NO_KEY`."""

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        """Set (or with None remove) the expiry of a live key; False if it is not live."""


@runtime_checkable
class SupportsAtomic(Protocol):
    """The methods of :attr:`Capability.ATOMIC`; claiming it also promises that ``write``
    honours :attr:`Condition.IF_ABSENT` and :attr:`Condition.IF_VERSION` atomically per key."""

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        """Atomically add *amount* to a live integer (absent counts as 0) and return the result.

        *ttl_ms* applies only when this call creates the key; an existing expiry is kept.
        Raise :class:`~ad_buyer_storage.errors.InvalidValueError` if the live value is not a
        JSON integer or the result leaves the signed 64-bit range (nothing written).
        """


@runtime_checkable
class SupportsRemovePrefix(Protocol):
    """Optional: delete every live key starting with a prefix in one server call.

    ``Storage.delete_pattern`` uses it for ``prefix*`` patterns when a backend has it; it must
    return how many live keys it deleted (expired leftovers may go too) and touch nothing else.
    """

    async def remove_prefix(self, prefix: str) -> int: ...


@runtime_checkable
class SupportsParts(Protocol):
    """Optional, for backends made of backends (a breaker, the mirror, the hybrid router, a
    stranger's sharding router): what it is made of, so reports (``doctor``, OpenTelemetry's
    per-part metrics) walk any composite, whatever its class.

    A label names a part within its composite (a route's name, ``primary``...); a wrapper of
    one backend that stands for it (a circuit breaker) gives it the empty label. A router that
    has parts answers :meth:`SupportsRouting.route_of` with the label of the part serving the key.
    """

    def parts(self) -> Iterable[tuple[str, StorageBackend]]:
        """Each backend this one is made of, once, with its label; no I/O."""
        ...


@runtime_checkable
class SupportsReleaseNamespace(Protocol):
    """Optional: give up whatever claims this namespace once ``Storage.clear()`` emptied it.

    The Redis backend registers its key prefix so that no other deployment nests in it; a
    cleared namespace is released (the backend claims it again at its next write). Routers and
    mirrors pass it on to the backends they hold.
    """

    async def release_namespace(self) -> None: ...


@runtime_checkable
class SupportsRouting(Protocol):
    """Optional, for backends made of others (the hybrid router): which one serves a key.

    ``Store`` batches concurrent single-key calls only with calls of the same route, so one
    backend's failure never fails a call bound for another, and checks capabilities per key:
    a router's declared ``capabilities`` are what *every* route offers, while
    ``capabilities_for(key)`` is what the key's route offers (pub/sub on one route only...).
    """

    def route_of(self, key: str) -> Hashable: ...

    def capabilities_for(self, key: str) -> frozenset[Capability]: ...


@runtime_checkable
class SupportsPubSub(Protocol):
    """Implemented by backends that claim :attr:`Capability.PUBSUB`."""

    async def publish(self, channel: str, message: str) -> int:
        """Send JSON text *message*; return how many subscribers received it (best effort)."""

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        """Subscribe on enter; iterate JSON text messages published after that; leave to stop."""


@runtime_checkable
class SupportsRefresh(Protocol):
    """The method of :attr:`Capability.REFRESH`: read a key and renew its expiry in the same
    atomic step (sliding TTLs).

    A backend offering it also remembers, per key, the TTL the key was last given: a write's
    ``ttl_ms``, ``set_ttl``'s, ``increment``'s when it creates the key; a ``keep_ttl`` write
    and an increment of a live key keep it; a write without TTL (or ``set_ttl(None)``) forgets
    it. Without the flag core still refreshes to an explicit TTL, as a read then a
    ``set_ttl`` (two steps), and refuses "the TTL it was written with".
    """

    async def read_refresh(self, key: str, ttl_ms: int | None) -> Record | None:
        """The live record at *key*, its expiry renewed in the same atomic step to now + *ttl_ms*;
        with None, to now + the TTL it was last given (a key without one keeps no expiry)."""


#: One condition of a query: a top-level field of a JSON object, and the JSON scalar it equals
#: (``str``, ``int``, ``float``, ``bool`` or ``None``) by JSON equality: ``True`` is not ``1``,
#: ``1`` is ``1.0``, a string only the same string.
Filter = tuple[str, str | int | float | bool | None]


@runtime_checkable
class SupportsQuery(Protocol):
    """Optional: list records by key range and field values inside the store (an index can
    serve them), instead of core reading every record and filtering it."""

    async def query(
        self, prefix: str, where: Sequence[Filter], after: str | None, limit: int
    ) -> Sequence[tuple[str, Record]]:
        """Live records whose key starts with *prefix* and sorts after *after* (by code point;
        None: from the first), in key order, at most *limit*. Every record matching every
        filter of *where* must be among them; others may be too (core checks each record
        again, so a backend filters what it can and may ignore a filter it cannot evaluate)."""


#: What a transaction checks at commit: *key* still at *version* (None: still absent).
Check = tuple[str, str | None]


@runtime_checkable
class SupportsTransactions(Protocol):
    """Implemented by backends that claim :attr:`Capability.TRANSACTIONS`."""

    async def commit(self, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str]) -> bool:
        """Atomically: if every *check* holds (the key's live version is the one given, or it is
        absent where None is given), apply every write (unconditional; ``keep_ttl`` honoured)
        and every delete, and return True; else apply nothing and return False. Keys of
        *writes* and *deletes* are distinct. Nothing of it is visible to others before all of it."""


@runtime_checkable
class SupportsTurns(Protocol):
    """The method of :attr:`Capability.TURNS`, for transactional backends shared by several
    processes: how a transaction that lost a conflict gets its turn instead of losing again
    (``Store.transact`` retries)."""

    def turn(self, keys: Sequence[str]) -> AbstractAsyncContextManager[None]:
        """Wait for, then hold until the block exits, the turn on *keys*: takers of a turn on
        any of them, from any process, are served one at a time in the order they asked; and
        while it is held, a :meth:`SupportsTransactions.commit` that checks, writes or deletes
        any of them fails (returns False) unless it runs in the holder's context (its task,
        and what that awaits). So a transaction run under its turn cannot be overtaken by
        another transaction. Plain writes are not held back."""


class Peer(NamedTuple):
    """Where a backend's data lives, in OpenTelemetry's database terms; never a secret (no
    password, no user, no key)."""

    #: ``db.system.name``: ``sqlite``, ``postgresql``, ``redis``, or a plugin's own name.
    system: str
    #: ``db.namespace``: the database (SQLite: the file; PostgreSQL: ``database.schema``;
    #: Redis: the database index).
    namespace: str | None = None
    #: ``server.address`` and ``server.port``, from the URL.
    address: str | None = None
    port: int | None = None


class PoolUsage(NamedTuple):
    """A connection pool as it stands: connections in use and idle, its limit, and the calls
    waiting for one (None: the pool does not tell)."""

    used: int
    idle: int
    max: int
    pending: int | None = None


@runtime_checkable
class SupportsTelemetry(Protocol):
    """Facts for instrumentation, read without I/O (metrics callbacks call them)."""

    def peer(self) -> Peer:
        """The system and server this backend talks to."""
        ...

    def pool_usage(self) -> PoolUsage | None:
        """Its connection pool now, or None (not connected, or no pool)."""
        ...


#: The methods each flag promises (:class:`SupportsExpiry`...); DURABLE and MULTI_PROCESS have none.
FLAG_METHODS: Mapping[Capability, tuple[str, ...]] = {
    Capability.EXPIRY: ("get_ttl", "set_ttl"),
    Capability.ATOMIC: ("increment",),
    Capability.PUBSUB: ("publish", "subscribe"),
    Capability.TRANSACTIONS: ("commit",),
    Capability.REFRESH: ("read_refresh",),
    Capability.TURNS: ("turn",),
}


def unimplemented(backend: StorageBackend) -> dict[Capability, list[str]]:
    """Per flag *backend* claims, the methods of it that *backend* lacks (empty: honest)."""
    missing: dict[Capability, list[str]] = {}
    for flag in sorted(backend.capabilities, key=str):
        lacking = [m for m in FLAG_METHODS.get(flag, ()) if not callable(getattr(backend, m, None))]
        if lacking:
            missing[flag] = lacking
    return missing
