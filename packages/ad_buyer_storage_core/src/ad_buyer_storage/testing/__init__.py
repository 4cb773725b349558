"""The conformance kit: every rule of the storage contract as a test, for any backend's author.

This docstring is the kit's guide; it needs nothing outside this package.

Certifying a backend
====================

Install core with the ``testing`` extra (pytest, pytest-asyncio) and write one test file::

    import pytest
    from ad_buyer_storage.testing import BackendContract, Harness
    from my_backend import MyBackend

    class TestMyBackendContract(BackendContract):
        @pytest.fixture
        def harness(self, tmp_path):
            return Harness(lambda clock: MyBackend(tmp_path / "db", clock=clock))

Run ``pytest`` on it. No pytest configuration is needed: the kit marks its tests for
pytest-asyncio itself. At the end of the run the kit prints a certification report, per test
class and per area::

    ==================== ad-buyer-storage conformance ====================
    ad-buyer-storage conformance: TestMyBackendContract [mybackend (expiry)]  CERTIFIED
      lifecycle      3/3 passed
      kv             53/53 passed, 1 skipped (the harness gives no way to make the store refuse a key ...)
      listing        10/10 passed
      ttl            26/26 passed
      atomic         refusal 1/1 passed, 21 skipped (not claimed: ATOMIC)
      transactions   refusal 1/1 passed, 12 skipped (not claimed: TRANSACTIONS, MULTI_PROCESS)
      pubsub         refusal 1/1 passed, 1 skipped (not claimed: PUBSUB)
      multi_process  skipped (not claimed: MULTI_PROCESS, ATOMIC)
      durable        skipped (not claimed: DURABLE)
      domain         6/6 passed, 2 skipped (not claimed: ATOMIC)
      coordination   skipped (not claimed: ATOMIC, MULTI_PROCESS)

``CERTIFIED`` means no kit test failed; a failing one is named under its area, and its
assertion message says which rule it broke. "refusal 1/1 passed" is an unclaimed capability
whose refusal was checked.

The :class:`Harness`
--------------------

``make_backend(clock)`` returns a new, unconnected backend on the *same* store each time it is
called within one test (the kit reopens the store to check durability), and a store of its own
for each test (a temp file, a unique key prefix or schema...). The kit clears the store and
closes the backend after each test. Optional fields:

* ``uses_clock`` (default True): the backend keeps time with the clock it is given (a callable
  returning seconds, like ``time.time``), so TTL tests move the kit's :class:`~ad_buyer_storage.ManualClock`
  instead of sleeping, and the kit can stand on the exact expiry millisecond. Pass False for
  a store that keeps time on its server: the kit then sleeps briefly, and skips the
  millisecond-boundary test.
* ``child_backend=("package.module:function", args)``: for backends claiming MULTI_PROCESS, a
  picklable recipe a child process calls to open the same store.
* ``storage_options``: keyword arguments for the :class:`~ad_buyer_storage.Store` the kit wraps
  the backend in (``max_value_bytes``...).
* ``fail_writes_to(key)``: an awaitable that makes the store itself refuse every write to *key*
  (a trigger, a value of another type). With it the kit checks that a write the server refuses
  fails alone, never the writes sharing its round trip; without it that test is skipped.

The parts of the kit
====================

:class:`BackendContract` is every part of the generic store at once; :class:`StorageContract`
adds the opt-in ``domain`` area (the buyer agent's ``Storage`` helpers, imported only then).
Each part is a class a test can also subclass alone (or a few of them), with the same
``harness`` fixture, e.g. a plain key-value store certified without listings or atomics:
``class TestMyKV(LifecycleContract, KeyValueContract, ListingContract, TTLContract): ...``

* :class:`LifecycleContract`, areas ``lifecycle`` and ``durable``: the protocol is implemented;
  connect, close, ping and info behave; with DURABLE, data survives closing and reopening.
* :class:`KeyValueContract`, area ``kv``: the key and value rules, get/set/delete/exists, bulk
  calls, and one bad or refused write failing alone among concurrent ones.
* :class:`ListingContract`, area ``listing``: ``keys``/``count``/``scan``/``delete_pattern`` by
  glob, exactly as the reference matcher.
* :class:`TTLContract`, area ``ttl``: TTL validation (every backend); with EXPIRY, expiry to the
  millisecond, boundary included; without it, the refusal of TTLs.
* :class:`AtomicContract`, area ``atomic``: with ATOMIC, set-if-absent, increments, versioned
  writes and ``update`` under contention; without it, their refusal.
* :class:`TransactionsContract`, area ``transactions``: with TRANSACTIONS, a transaction
  commits every write and delete together, only if no key it read changed (deleted and
  written again included), never after an exception; concurrent transfers keep their total;
  bookings (an order and a campaign's spend in one transaction) never overspend from many
  tasks (and, with MULTI_PROCESS, four processes);
  without it, the refusal.
* :class:`PubSubContract`, area ``pubsub``: with PUBSUB, a subscriber receives what is published;
  without it, the refusal.
* :class:`MultiProcessContract`, area ``multi_process``: with MULTI_PROCESS (and ATOMIC), four
  processes incrementing one store lose nothing.
* :class:`DomainContract`, area ``domain`` (opt-in: part of :class:`StorageContract`, not of
  :class:`BackendContract`): the buyer-agent helpers on ``Storage`` (deals, ``book_order``,
  sliding sessions,
  filters, sessions, every entity) on this backend. Sessions expire by default, which needs
  EXPIRY: without it, the kit uses them with no default TTL, as a deployment on such a store
  would.
* :class:`CoordinationContract`, area ``coordination``: with ATOMIC and EXPIRY, lease locks'
  fencing tokens strictly increase (across a lease expiry too) and a paused holder's late
  fenced write is refused; the sliding-window limiter never admits more than its limit in any
  window, from tasks and (with MULTI_PROCESS) from four processes attacking a window's edge.

Claims
------

A backend declares ``capabilities``, a frozenset of :class:`~ad_buyer_storage.Capability`.
Each kit test is marked with the area it certifies and the capabilities it needs
(``@certifies("ttl", Capability.EXPIRY)``). A test needing a capability the backend does not
claim is *skipped*, with a reason naming the capability; a test checking the *refusal* of a
capability (``certifies(..., absent=Capability.ATOMIC)``) runs instead: a backend without
ATOMIC must have ``incr`` refused, not half-done. Behind a router that answers per key
(:class:`~ad_buyer_storage.SupportsRouting`), PUBSUB counts on the route of the channel used.
A claim is a promise the kit checks; claim nothing you are not sure of. The flags are the
truth: a backend implements the methods of each flag it claims (EXPIRY ``get_ttl`` and
``set_ttl``, ATOMIC ``increment``, PUBSUB ``publish`` and ``subscribe``, TRANSACTIONS
``commit``, REFRESH ``read_refresh``, TURNS ``turn``) and no others; a flag claimed without
its methods fails ``connect()`` and the kit's lifecycle test.

Coalescing off
--------------
A ``Store`` coalesces concurrent calls: writes of one key share a batch, concurrent
increments and updates of one key are combined into one call. So through it, concurrent
calls on one key never reach the backend together, and a backend whose ``increment`` or
conditional write reads, awaits, then writes (what a network store without a script or a
transaction does) would look atomic. The kit's tests that contend on one key (areas
``atomic``, ``transactions`` and ``coordination``) therefore run twice, ``[coalesced]`` and
``[uncoalesced]``: the second with ``Store(backend, coalesce=False)``, where every call is
its own round trip and such a race fails, its message naming it ("100 concurrent increments
of one key gave 1: increment is not atomic"). Mark a test of your own the same way with
``@also_uncoalesced`` (it receives the setting as the ``coalesce`` fixture).

The rules
=========

What core does for every backend, and what a backend must do. A backend implements the
primitives of :class:`~ad_buyer_storage.StorageBackend` (``read``, ``write``, ``remove``,
``count``, ``scan``, and the lifecycle) and the methods of the flags it claims; everything a
user calls is built on them in core, which validates input before calling the backend.

Keys
----
* A key is a ``str`` of 1 to 1,024 bytes of UTF-8, without NUL and without lone surrogates.
  Anything else is refused before any I/O: :class:`~ad_buyer_storage.errors.KeyTypeError` (a
  ``TypeError``) for a non-str, :class:`~ad_buyer_storage.errors.InvalidKeyError` (a
  ``ValueError``) otherwise. A bulk call with one bad key writes nothing.
* Keys are stored verbatim and compared exactly: case, spaces, CR/LF, quotes, ``%``, ``_``,
  ``*``, ``[``, ``\\`` and non-ASCII characters are ordinary characters. ``keys()`` lists them
  sorted by code point.

Values
------
* The backend stores JSON text core encoded, with an opaque version token, and gives back
  that JSON (text, or UTF-8 bytes) unchanged in meaning: plain JSON reads back equal with the
  same types and float bits (``1`` stays an int, ``1.0`` a float, ``-0.0`` keeps its sign,
  ``1e23`` its exact bits), and a falsy value (``{}``, ``[]``, ``0``, ``""``, ``false``,
  ``null``) is a value like any other: stored, listed, counted.
* Core encodes rich types by fixed rules: ``Decimal`` as its exact text (``"1500.10"``),
  ``datetime``/``date``/``time`` as ISO 8601 text (timezone kept, naive stays naive), ``UUID``
  as text, an ``Enum`` as its value, dataclasses and pydantic models as objects, tuples and
  sets as lists. Reads with ``model=`` restore them.
* Refused before any I/O with :class:`~ad_buyer_storage.errors.InvalidValueError`: NaN and
  infinities, NUL inside a string or a dict key, lone surrogates, integers outside signed 64
  bits, containers nested deeper than 254 levels, encoded values larger than
  ``max_value_bytes`` (8 MiB by default; a value of exactly the cap is accepted). A text
  holding the six characters ``\\u0000`` is text, not a NUL.

TTL and expiry
--------------
* A TTL is seconds (``int``, ``float`` or ``timedelta``), greater than 0 and at most 100
  years; ``None`` means no expiry. Anything else (0, negatives, booleans, NaN, text...) is
  refused with :class:`~ad_buyer_storage.errors.InvalidTTLError` before any I/O, whatever the
  backend claims. Core rounds it up to whole milliseconds and gives the backend ``ttl_ms``.
* A backend that does not claim EXPIRY never receives a TTL: core refuses ``ttl=``,
  ``expire`` and ``persist`` with :class:`~ad_buyer_storage.errors.UnsupportedOperationError`,
  and ``ttl(key)`` of a live key is ``None``.
* With EXPIRY, a key written with a TTL expires at ``expires_at = now + ttl_ms``, and is
  invisible **from that very millisecond** (``expires_at <= now``) to every primitive:
  ``read``, ``count``, ``scan``, ``get_ttl`` (``NO_KEY``), ``set_ttl`` (False), ``remove``
  (not counted as live), and conditional writes (an expired key is absent). One millisecond
  before, it is fully visible.
* ``get_ttl`` answers the remaining milliseconds (> 0), ``NO_EXPIRY`` (-1) or ``NO_KEY`` (-2).
  A write without a TTL removes the key's expiry, unless ``keep_ttl`` keeps the live one
  (``keep_ttl`` on a missing key: no expiry). ``increment`` keeps an existing expiry and
  applies its ``ttl_ms`` only when it creates the key. An expired key can be written again and
  inherits nothing.

Patterns
--------
* ``keys``, ``count``, ``scan`` and ``delete_pattern`` take a glob with Redis's grammar, matched
  per code point and case-sensitively: ``*`` any run, ``?`` one character, ``[abc]``, ``[^a]``,
  ``[a-z]``, ``\\x`` the literal ``x``. A ``[`` without its ``]``, a trailing lone ``\\``, NUL or a
  lone surrogate is refused with :class:`~ad_buyer_storage.errors.InvalidPatternError` before
  any I/O; ``delete_pattern("")`` is refused too, never "delete everything".
* The backend's ``scan`` receives a compiled :class:`~ad_buyer_storage.GlobPattern`: its literal
  ``prefix`` (for an index range scan) and ``matches(key)``, the reference matcher. It yields
  each live matching key exactly once, any order, a batch per round trip. Never use a store's
  own matcher where it differs (SQL ``LIKE`` folds case and treats ``_`` and ``%`` as
  wildcards; Redis matches bytes, not characters) without checking with ``matches``.

Atomicity
---------
* Each primitive is atomic per key. A batch (``write`` of several writes, ``read`` of several
  keys) is a batch of single-key operations, not a transaction: an item the server refuses
  fails alone (raise :class:`~ad_buyer_storage.errors.PartialBatchError` with per-item
  outcomes), and concurrent calls that core coalesced into one round trip do not fail with it.
* ``write`` honours each write's condition against the *live* value: ``IF_ABSENT`` (no live
  value) or ``IF_VERSION`` (the live value's version equals ``expected_version``) and answers
  per write whether it applied. Version tokens come from core, new on every write, so a key
  deleted and written again never matches an old token.
* ATOMIC promises set-if-absent with exactly one winner, increments on signed 64-bit integers
  that lose nothing under concurrency and fail (writing nothing) on overflow or a non-integer
  value, exact ``Decimal`` increments, and version-checked writes; ``update`` is built on them.
  Each is one atomic step per key whatever else is in flight on it, never a read, an await,
  then a write: the kit runs its contended tests with coalescing off too (see "Coalescing
  off" above). MULTI_PROCESS promises the same across processes sharing the store: on any
  number of hosts for a server store, on one host for a file store (the kit checks processes
  of one machine).
* TRANSACTIONS promises :meth:`~ad_buyer_storage.SupportsTransactions.commit`: given checks
  (key, version or None for "absent"), writes and deletes, apply all of it in one atomic step
  iff every check holds against the *live* state (an expired key is absent), else nothing, and
  say which. Nobody may see part of it. Core does the rest: reads that remember versions,
  staged writes, retries (``transact``), at most 1,000 writes and deletes per commit.

Lifecycle
---------
* ``connect`` is called once (open pools, create the schema); ``aclose`` once, also after a
  failed ``connect``. A ``Store`` used before ``connect`` raises
  :class:`~ad_buyer_storage.errors.NotConnectedError`, after ``aclose``
  :class:`~ad_buyer_storage.errors.StorageClosedError`; closing twice is a no-op, and a closed
  storage does not reopen.
* ``ping`` is one round trip; ``info`` gives facts for diagnostics, never a secret.
* DURABLE promises that data written survives closing the backend and opening a new one on
  the same store.

Errors
------
* Every error is an :class:`~ad_buyer_storage.errors.StorageError`. A backend translates its
  driver's errors in one place into :class:`~ad_buyer_storage.errors.BackendError` or the
  subclass that says what happened (``UnavailableError``, ``StorageTimeoutError``,
  ``BusyError``, ``AuthenticationError``, ``TLSError``, ``OutcomeUnknownError``,
  ``StorageFullError``, ``ReadOnlyError``); a server's refusal of one row is a plain
  ``BackendError``. Messages never carry a password or token.
* Input errors (keys, values, TTLs, patterns, amounts) are raised by core before any I/O and
  are ``ValueError``/``TypeError`` subclasses; a capability not claimed raises
  ``UnsupportedOperationError`` (a ``NotImplementedError``).

Your own tests
==============

``certifies(area, *needs, absent=None, key=None)`` marks a test the way the kit's are, so it
is skipped the same way and counted in the report; ``also_uncoalesced`` runs it with the
store's coalescing on and off; ``fails_with(error, awaitable, rule)`` checks an error and says
which rule broke when it is not raised. The ``subject`` fixture gives a :class:`Subject`: the
connected ``storage`` (``coalesce`` says whether it coalesces), its ``clock``,
``elapse(seconds)``, ``move_clock_to(instant)``, ``reopen()`` and ``claims(capability)``.

Never bound a remaining TTL by a fixed slack (``25 < ttl() <= 30`` fails on a machine that
stalls for five seconds): ``elapsed = Elapsed.of(subject)`` just before the write that set the
expiry (for a ``keep_ttl`` write, before the original ``set(ttl=...)``), then
``elapsed.check_ttl(remaining, 30, rule)`` asserts ``30 - elapsed - 0.002 <= remaining <= 30``
with the time that really passed (only the kit's clock's advances, on a store that uses it).

pytest-asyncio
--------------
The kit's tests and its ``subject`` fixture are marked for pytest-asyncio (strict or auto
mode). If your project leaves ``asyncio_default_fixture_loop_scope`` unset, the kit's pytest
plugin sets it for the run (to pytest-asyncio's ``"fixture-scope"`` where it has it: what
"unset" means, without the deprecation warning; else ``"function"``); a value you set wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

# Before the kit's modules are imported: their asserts then explain themselves (values, diffs)
# as a test file's do, from wherever the kit is installed.
pytest.register_assert_rewrite(
    "ad_buyer_storage.testing._base",
    "ad_buyer_storage.testing.atomic",
    "ad_buyer_storage.testing.coordination",
    "ad_buyer_storage.testing.domain",
    "ad_buyer_storage.testing.kv",
    "ad_buyer_storage.testing.lifecycle",
    "ad_buyer_storage.testing.listing",
    "ad_buyer_storage.testing.multiprocess",
    "ad_buyer_storage.testing.pubsub",
    "ad_buyer_storage.testing.transactions",
    "ad_buyer_storage.testing.ttl",
    "ad_buyer_storage.testing._child",
)

from ._base import ContractBase, also_uncoalesced, certifies, fails_with  # noqa: E402
from ._child import increment_in_processes  # noqa: E402
from ._elapsed import Elapsed  # noqa: E402
from .atomic import AtomicContract  # noqa: E402
from .contract import BackendContract  # noqa: E402
from .coordination import CoordinationContract  # noqa: E402
from .harness import Harness, Subject  # noqa: E402
from .kv import KeyValueContract  # noqa: E402
from .lifecycle import LifecycleContract  # noqa: E402
from .listing import ListingContract  # noqa: E402
from .multiprocess import MultiProcessContract  # noqa: E402
from .pubsub import PubSubContract  # noqa: E402
from .transactions import TransactionsContract  # noqa: E402
from .ttl import TTLContract  # noqa: E402

if TYPE_CHECKING:  # at run time, imported on first use by __getattr__ below
    from .domain import DomainContract, StorageContract

__all__ = [
    "Harness",
    "Subject",
    "BackendContract",
    "StorageContract",
    "LifecycleContract",
    "KeyValueContract",
    "ListingContract",
    "TTLContract",
    "AtomicContract",
    "TransactionsContract",
    "PubSubContract",
    "MultiProcessContract",
    "DomainContract",
    "CoordinationContract",
    "ContractBase",
    "certifies",
    "also_uncoalesced",
    "fails_with",
    "Elapsed",
    "increment_in_processes",
]


def __getattr__(name: str) -> Any:
    """The opt-in domain area, imported on first use: certifying a backend with
    :class:`BackendContract` never loads the buyer agent's domain."""
    if name in ("DomainContract", "StorageContract"):
        from . import domain  # noqa: PLC0415 - lazily, see above

        return getattr(domain, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
