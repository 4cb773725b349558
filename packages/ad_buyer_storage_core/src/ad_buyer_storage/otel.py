"""OpenTelemetry tracing and metrics, following the database semantic conventions.

Needs the ``otel`` extra (``pip install "ad-buyer-storage-core[otel]"``), which brings
``opentelemetry-api``; nothing else in the package imports OpenTelemetry. Turned on the
ecosystem's way::

    from ad_buyer_storage.otel import StorageInstrumentor

    StorageInstrumentor().instrument(tracer_provider=..., meter_provider=...)  # defaults: the global ones

or with no code at all, ``opentelemetry-instrument python app.py`` (this class is registered
under the ``opentelemetry_instrumentor`` entry-point group). Until then the hook in
:mod:`ad_buyer_storage.client.telemetry` is None and the store pays one ``if`` per operation.

What is recorded:

* one CLIENT span per logical operation of a :class:`~ad_buyer_storage.Store` (so of
  :class:`~ad_buyer_storage.Storage` too), named ``{db.operation.name} {target}``, with
  ``db.system.name`` (``sqlite``, ``postgresql``, ``redis``, ``memory`` or a plugin's name),
  ``db.operation.name`` (``get``, ``set_many``, ``transaction``...), ``db.collection.name``
  (the keyspace: a key's text before its first ``:``, only when it has one), ``db.namespace``,
  ``server.address``/``server.port``, ``db.operation.batch.size`` (bulk calls of two keys or
  more), ``error.type`` (the exception's class name) and, through a router (the hybrid router, or
  any ``SupportsRouting`` backend whose ``route_of`` names one of its ``SupportsParts`` parts),
  ``ad_buyer_storage.route`` (the part's label). Retries happen inside the operation's span.
  Calls that coalescing sent together in one round trip keep one span each, linked to the
  span of the batch (``BATCH read``/``BATCH write``, a root span linked back to them);
* ``db.client.operation.duration`` (seconds, the conventions' buckets), with the span's
  attributes;
* ``ad_buyer_storage.client.reads`` (``{key}``): keys read, per keyspace, with
  ``ad_buyer_storage.read.hit`` true or false;
* ``db.client.connection.count`` (per ``db.client.connection.state``, ``idle``/``used``),
  ``db.client.connection.max`` and ``db.client.connection.pending_requests`` of each
  backend that reports its pool (:class:`~ad_buyer_storage.contract.protocol.SupportsTelemetry`),
  inside any composite (walked through :class:`~ad_buyer_storage.contract.protocol.SupportsParts`,
  whatever its class), labelled with the part's route;
* ``ad_buyer_storage.breaker.state``: each circuit breaker, 0 closed, 1 half-open, 2 open.

Never recorded: keys, values, filters, patterns beyond their keyspace, exception messages
(they may quote a key), user names and passwords.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Coroutine, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from ad_buyer_storage.client import telemetry
from ad_buyer_storage.composed.breaker import BreakerState, CircuitBreaker
from ad_buyer_storage.contract.glob import GlobPattern, compile_glob, escape_glob
from ad_buyer_storage.contract.protocol import Peer, StorageBackend, SupportsParts, SupportsRouting, SupportsTelemetry
from ad_buyer_storage.errors import StorageError

__all__ = ["DURATION_BUCKETS", "StorageInstrumentor"]

T = TypeVar("T")
log = logging.getLogger("ad_buyer_storage.otel")
Attributes = dict[str, AttributeValue]

#: ``db.client.operation.duration``'s explicit bucket boundaries, in seconds (the conventions').
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
SCHEMA_URL = "https://opentelemetry.io/schemas/1.33.0"

# Attribute names (the stable database conventions; ours under ad_buyer_storage.).
SYSTEM = "db.system.name"
OPERATION = "db.operation.name"
COLLECTION = "db.collection.name"
NAMESPACE = "db.namespace"
ADDRESS = "server.address"
PORT = "server.port"
BATCH_SIZE = "db.operation.batch.size"
ERROR_TYPE = "error.type"
ROUTE = "ad_buyer_storage.route"
HIT = "ad_buyer_storage.read.hit"
POOL_NAME = "db.client.connection.pool.name"
POOL_STATE = "db.client.connection.state"
BREAKER = "ad_buyer_storage.breaker"
_BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
_GLOB = frozenset("*?[]\\")
_LISTINGS = frozenset({"keys", "count", "delete_pattern", "select"})  # their "key" is a pattern or a prefix
_CACHE_LIMIT = 4096  # attribute sets kept per store (keyspaces x operations x routes)


def _version() -> str:
    try:
        return importlib.metadata.version("ad-buyer-storage-core")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def collection_of(key: object) -> str | None:
    """The keyspace of *key* (or of a pattern, or a prefix): its text before the first ``:``;
    None when it has none, so that a key without one is never recorded."""
    if not isinstance(key, str):
        return None
    head, sep, _ = key.partition(":")
    if not sep or not head or not _GLOB.isdisjoint(head):
        return None
    return head


class _Part(NamedTuple):
    """One backend that does I/O, as the metrics see it."""

    backend: StorageBackend
    peer: Peer
    route: str | None
    breaker: CircuitBreaker | None


@runtime_checkable
class _Reaching(Protocol):
    """A router that tells which of its parts a pattern can reach (the hybrid router does)."""

    def reachable(self, pattern: GlobPattern) -> list[StorageBackend]: ...


def _breaker_of(backend: StorageBackend) -> CircuitBreaker | None:
    """The circuit breaker a wrapper keeps in front of its part, if it has one."""
    breaker = getattr(backend, "breaker", None)
    return breaker if isinstance(breaker, CircuitBreaker) else None


def _labelled(backend: StorageBackend) -> dict[str, StorageBackend]:
    """The labelled parts of a composite (through wrappers that stand for their one part); empty
    for a backend that is not made of others."""
    while isinstance(backend, SupportsParts):
        parts = list(backend.parts())
        if len(parts) == 1 and not parts[0][0]:
            backend = parts[0][1]
            continue
        return dict(parts)
    return {}


def _peer(backend: StorageBackend) -> Peer:
    """Where *backend*'s data lives: its own facts; else, for a composite that is not a router
    (a breaker, a mirror), its first part's (where reads go)."""
    if isinstance(backend, SupportsTelemetry):
        return backend.peer()
    if isinstance(backend, SupportsParts) and not isinstance(backend, SupportsRouting):
        for _, part in backend.parts():
            return _peer(part)
    return Peer(backend.name)


def _parts(backend: StorageBackend, route: str | None = None, breaker: CircuitBreaker | None = None) -> Iterator[_Part]:
    """The backends doing I/O inside *backend*, walked through any composite (SupportsParts),
    each with its route (the labels on the way, joined) and the breaker in front of it."""
    if not isinstance(backend, SupportsParts):
        yield _Part(backend, _peer(backend), route, breaker)
        return
    breaker = _breaker_of(backend) or breaker
    for label, part in backend.parts():
        if not label:  # a wrapper's one part stands for it
            yield from _parts(part, route, breaker)
        else:
            yield from _parts(part, label if route is None else f"{route} {label}")


def _peer_attributes(peer: Peer, route: str | None) -> Attributes:
    attributes: Attributes = {SYSTEM: peer.system}
    if peer.namespace:
        attributes[NAMESPACE] = peer.namespace
    if peer.address:
        attributes[ADDRESS] = peer.address
        if peer.port is not None:
            attributes[PORT] = peer.port
    if route is not None:
        attributes[ROUTE] = route
    return attributes


class _Facts:
    """What every span of one store carries; per route behind the hybrid router."""

    def __init__(self, backend: StorageBackend) -> None:
        self.backend = backend
        # A router with labelled parts: its route_of(key) names the part (see SupportsParts).
        self.routes = _labelled(backend) if isinstance(backend, SupportsRouting) else {}
        self.router = backend if self.routes and isinstance(backend, SupportsRouting) else None
        self.base = _peer_attributes(Peer(backend.name) if self.router else _peer(backend), None)
        self._by_route: dict[str, Attributes] = {}
        #: Attributes of single-key operations, by (route's attributes, operation, keyspace).
        self.cache: dict[tuple[int, str, str | None], Attributes] = {}

    def of(self, keys: str | Sequence[str] | None, operation: str) -> Attributes:
        router = self.router
        if router is None or keys is None:
            return self.base
        if isinstance(keys, str) and operation in _LISTINGS:
            # A pattern (or select's prefix) may reach several routes: named only if it reaches one.
            if not isinstance(router, _Reaching):
                return self.base
            try:
                pattern = compile_glob(escape_glob(keys) + "*" if operation == "select" else keys)
            except StorageError:
                return self.base
            reached = router.reachable(pattern)
            if len(reached) != 1:
                return self.base
            label: Hashable = next((name for name, part in self.routes.items() if part is reached[0]), None)
        elif isinstance(keys, str):
            label = router.route_of(keys)
        else:
            labels = {router.route_of(k) for k in keys if isinstance(k, str)}
            if len(labels) != 1:
                return self.base
            (label,) = labels
        part = self.routes.get(label) if isinstance(label, str) else None
        if part is None or not isinstance(label, str):
            return self.base  # a router whose routes are not its parts' labels: not named
        found = self._by_route.get(label)
        if found is None:
            found = self._by_route[label] = _peer_attributes(_peer(part), label)
        return found


class _Hook:
    """The :class:`~ad_buyer_storage.client.telemetry.Hook` that records to OpenTelemetry."""

    def __init__(self, tracer: trace.Tracer, meter: metrics.Meter) -> None:
        self.active = True
        self._tracer = tracer
        # (whether the call about to run is already covered, the current operation's attributes)
        self._state: ContextVar[tuple[bool, Attributes | None]] = ContextVar(
            "ad_buyer_storage_otel_operation", default=(False, None)
        )
        self._facts: weakref.WeakKeyDictionary[object, _Facts] = weakref.WeakKeyDictionary()
        self._labels: dict[tuple[object, ...], Attributes] = {}
        self._queued: weakref.WeakKeyDictionary[object, tuple[Span, Attributes]] = weakref.WeakKeyDictionary()
        self._duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._reads = meter.create_counter(
            "ad_buyer_storage.client.reads", unit="{key}", description="Keys read, found (hit) or not."
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            [self._observe_count],
            unit="{connection}",
            description="The number of connections that are currently in state described by the state attribute.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            [self._observe_max],
            unit="{connection}",
            description="The maximum number of open connections allowed.",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests",
            [self._observe_pending],
            unit="{request}",
            description="The number of current pending requests for an open connection.",
        )
        meter.create_observable_gauge(
            "ad_buyer_storage.breaker.state",
            [self._observe_breakers],
            unit="1",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        )

    # -- spans -----------------------------------------------------------------------------
    def claim(self) -> bool:
        covered, attributes = self._state.get()
        if covered:
            self._state.set((False, attributes))
            return False
        return True

    def _attributes(self, store: object, operation: str, keys: str | Sequence[str] | None) -> Attributes:
        """The span's attributes; for one key or none, one shared dict per operation, keyspace
        and route (never changed afterwards: what needs more makes a copy)."""
        facts = self._facts.get(store)
        if facts is None:
            backend = getattr(store, "backend", None)
            if backend is None:
                return {OPERATION: operation}
            facts = self._facts[store] = _Facts(backend)
        base = facts.of(keys, operation)
        if keys is None or isinstance(keys, str):
            collection = collection_of(keys)
            cache_key = (id(base), operation, collection)
            found = facts.cache.get(cache_key)
            if found is None:
                found = {**base, OPERATION: operation}
                if collection is not None:
                    found[COLLECTION] = collection
                if len(facts.cache) < _CACHE_LIMIT:
                    facts.cache[cache_key] = found
            return found
        attributes = {**base, OPERATION: operation}
        collections = {collection_of(k) for k in keys}
        if len(collections) == 1 and (collection := collections.pop()) is not None:
            attributes[COLLECTION] = collection
        if len(keys) >= 2:
            attributes[BATCH_SIZE] = len(keys)
        return attributes

    def _safe_attributes(self, store: object, operation: str, keys: str | Sequence[str] | None) -> Attributes:
        try:
            return self._attributes(store, operation, keys)
        except Exception:  # telemetry never fails the operation it records
            log.debug("ad_buyer_storage.otel: no attributes for %s", operation, exc_info=True)
            return {SYSTEM: "unknown", OPERATION: operation}

    @staticmethod
    def _name(attributes: Mapping[str, AttributeValue]) -> str:
        target = attributes.get(COLLECTION) or attributes.get(NAMESPACE) or attributes[SYSTEM]
        return f"{attributes[OPERATION]!s} {target!s}"

    def _start(
        self, attributes: Attributes
    ) -> tuple[Span, Any, Token[tuple[bool, Attributes | None]]]:  # attach()'s token: object before API 1.3x
        """Open the operation's span and make it current; the call about to run is covered by
        it, so its own :meth:`claim` answers False (set first: whatever fails after, the call
        runs once, unrecorded rather than broken)."""
        covered = self._state.set((True, attributes))
        try:
            span = self._tracer.start_span(self._name(attributes), kind=SpanKind.CLIENT, attributes=attributes)
            return span, otel_context.attach(trace.set_span_in_context(span)), covered
        except Exception:  # telemetry never fails the operation it records
            log.debug("ad_buyer_storage.otel: could not start a span", exc_info=True)
            return trace.INVALID_SPAN, None, covered

    def _end(
        self,
        opened: tuple[Span, Any, Token[tuple[bool, Attributes | None]]],
        attributes: Attributes,
        started: float,
        error: str | None,
    ) -> None:
        elapsed = time.perf_counter() - started
        span, attached, covered = opened
        self._state.reset(covered)
        try:
            if attached is not None:
                otel_context.detach(attached)
            if error is not None:
                # Only the class: an exception's message (and so an exception event) may quote a key.
                span.set_attribute(ERROR_TYPE, error)
                span.set_status(Status(StatusCode.ERROR, error))
            span.end()
            if BATCH_SIZE in attributes or error is not None:
                attributes = {k: v for k, v in attributes.items() if k != BATCH_SIZE}
                if error is not None:
                    attributes[ERROR_TYPE] = error
            self._duration.record(elapsed, attributes)
        except Exception:  # telemetry never fails the operation it records
            log.debug("ad_buyer_storage.otel: could not end a span", exc_info=True)

    async def run(
        self,
        store: object,
        operation: str,
        keys: str | Sequence[str] | None,
        call: Awaitable[T],
        hits: Callable[[T], int] | None = None,
    ) -> T:
        attributes = self._safe_attributes(store, operation, keys)
        started = time.perf_counter()
        opened = self._start(attributes)
        try:
            result = await call
        except Exception as exc:
            self._end(opened, attributes, started, type(exc).__name__)
            raise
        except BaseException:  # cancelled: no verdict on the store
            self._end(opened, attributes, started, None)
            raise
        self._end(opened, attributes, started, None)
        if hits is not None and keys is not None:
            try:
                self._count_reads(attributes, keys, result, hits)
            except Exception:  # telemetry never fails the operation it records
                log.debug("ad_buyer_storage.otel: could not count reads", exc_info=True)
        return result

    def _count_reads(
        self, attributes: Attributes, keys: str | Sequence[str], result: T, hits: Callable[[T], int]
    ) -> None:
        if isinstance(keys, str) or not isinstance(result, Mapping):
            found = hits(result)
            total = 1 if isinstance(keys, str) else len(set(keys))
            collection = attributes.get(COLLECTION)
            if found:
                self._reads.add(found, self._read_labels(attributes, collection, True))
            if total > found:
                self._reads.add(total - found, self._read_labels(attributes, collection, False))
            return
        tally: dict[tuple[str | None, bool], int] = {}
        for key in set(keys):
            outcome = (collection_of(key), key in result)
            tally[outcome] = tally.get(outcome, 0) + 1
        for (collection, hit), n in tally.items():
            self._reads.add(n, self._read_labels(attributes, collection, hit))

    def _read_labels(self, attributes: Attributes, collection: AttributeValue | None, hit: bool) -> Attributes:
        """The read counter's attributes: where, which keyspace, hit or not (one dict per set)."""
        where = (attributes.get(SYSTEM), attributes.get(NAMESPACE), attributes.get(ROUTE), collection, hit)
        found = self._labels.get(where)
        if found is None:
            found = {k: v for k, v in attributes.items() if k in (SYSTEM, ROUTE, NAMESPACE)}
            if collection is not None:
                found[COLLECTION] = collection
            found[HIT] = hit
            if len(self._labels) < _CACHE_LIMIT:
                self._labels[where] = found
        return found

    @contextmanager
    def span(self, store: object, operation: str, keys: str | Sequence[str] | None) -> Iterator[None]:
        attributes = self._safe_attributes(store, operation, keys)
        started = time.perf_counter()
        opened = self._start(attributes)
        try:
            yield
        except Exception as exc:
            self._end(opened, attributes, started, type(exc).__name__)
            raise
        except BaseException:
            self._end(opened, attributes, started, None)
            raise
        self._end(opened, attributes, started, None)

    # -- coalesced batches -----------------------------------------------------------------
    def queued(self, waiter: object) -> None:
        span = trace.get_current_span()
        attributes = self._state.get()[1]
        if span.get_span_context().is_valid and attributes is not None:
            self._queued[waiter] = (span, attributes)

    def batch(
        self, kind: str, waiters: Sequence[object], call: Coroutine[object, object, T]
    ) -> Coroutine[object, object, T]:
        callers = [found for w in waiters if (found := self._queued.pop(w, None)) is not None]
        return self._batch(kind, len(waiters), callers, call)

    async def _batch(
        self, kind: str, size: int, callers: list[tuple[Span, Attributes]], call: Coroutine[object, object, T]
    ) -> T:
        try:
            batch_span = self._batch_span(kind, size, callers)
            attached = otel_context.attach(trace.set_span_in_context(batch_span))
        except Exception:  # the batch is sent whatever telemetry does: its callers wait on it
            log.debug("ad_buyer_storage.otel: could not start a batch span", exc_info=True)
            return await call
        try:
            return await call
        except Exception as exc:
            batch_span.set_attribute(ERROR_TYPE, type(exc).__name__)
            batch_span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            otel_context.detach(attached)
            batch_span.end()

    def _batch_span(self, kind: str, size: int, callers: list[tuple[Span, Attributes]]) -> Span:
        """A root span (the batch serves callers of many traces), linked to each caller's span
        and each of those to it."""
        attributes: Attributes = {}
        if callers:  # one lane, so one route: the callers share their peer
            keep = (SYSTEM, NAMESPACE, ADDRESS, PORT, ROUTE)
            attributes = {k: v for k, v in callers[0][1].items() if k in keep}
        attributes.setdefault(SYSTEM, "unknown")
        attributes[OPERATION] = f"BATCH {kind}"
        if size >= 2:
            attributes[BATCH_SIZE] = size
        batch_span = self._tracer.start_span(
            self._name(attributes),
            context=otel_context.Context(),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            links=[Link(span.get_span_context()) for span, _ in callers],
        )
        for span, _ in callers:
            span.add_link(batch_span.get_span_context())
        return batch_span

    # -- observable instruments ------------------------------------------------------------
    def _parts(self) -> Iterator[_Part]:
        if not self.active:
            return
        seen: set[int] = set()
        for store, facts in list(self._facts.items()):
            if not getattr(store, "is_open", False):
                continue
            for part in _parts(facts.backend):
                if id(part.backend) not in seen:
                    seen.add(id(part.backend))
                    yield part

    def _pools(self) -> Iterator[tuple[Attributes, int, int, int, int | None]]:
        for part in self._parts():
            if not isinstance(part.backend, SupportsTelemetry):
                continue
            usage = part.backend.pool_usage()
            if usage is None:
                continue
            peer = part.peer
            where = f"{peer.address}:{peer.port}" if peer.address else ""
            name = f"{where}/{peer.namespace}" if where and peer.namespace else where or peer.namespace or peer.system
            attributes = _peer_attributes(peer, part.route)
            attributes[POOL_NAME] = name
            yield attributes, usage.used, usage.idle, usage.max, usage.pending

    def _observe_count(self, options: CallbackOptions) -> Iterable[Observation]:
        for attributes, used, idle, _, _ in self._pools():
            yield Observation(used, {**attributes, POOL_STATE: "used"})
            yield Observation(idle, {**attributes, POOL_STATE: "idle"})

    def _observe_max(self, options: CallbackOptions) -> Iterable[Observation]:
        for attributes, _, _, most, _ in self._pools():
            yield Observation(most, attributes)

    def _observe_pending(self, options: CallbackOptions) -> Iterable[Observation]:
        for attributes, _, _, _, pending in self._pools():
            if pending is not None:
                yield Observation(pending, attributes)

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        for part in self._parts():
            if part.breaker is not None:
                attributes = _peer_attributes(part.peer, part.route)
                attributes[BREAKER] = part.breaker.label
                yield Observation(_BREAKER_VALUES[part.breaker.state], attributes)


class StorageInstrumentor:
    """Instruments every :class:`~ad_buyer_storage.Store` of the process (those opened before
    too). ``instrument()`` and ``uninstrument()`` are idempotent; all instances share one state,
    as OpenTelemetry's instrumentors do."""

    _hook: _Hook | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        """What must be installed for this to work: nothing beyond this distribution (first-party)."""
        return ()

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return StorageInstrumentor._hook is not None

    def instrument(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        **kwargs: object,
    ) -> None:
        """Start recording, to the given providers (default: the global ones). Other keywords
        (``skip_dep_check``...) are accepted and ignored, as ``opentelemetry-instrument`` passes them."""
        if StorageInstrumentor._hook is not None:
            return
        version = _version()
        tracer = trace.get_tracer(__name__, version, tracer_provider, schema_url=SCHEMA_URL)
        meter = metrics.get_meter(__name__, version, meter_provider, schema_url=SCHEMA_URL)
        hook = _Hook(tracer, meter)
        StorageInstrumentor._hook = hook
        telemetry.hook = hook

    def uninstrument(self, **kwargs: object) -> None:
        """Stop recording: operations are back to their one ``if``; pool and breaker instruments
        report nothing more."""
        hook = StorageInstrumentor._hook
        if hook is None:
            return
        hook.active = False
        StorageInstrumentor._hook = None
        if telemetry.hook is hook:
            telemetry.hook = None
