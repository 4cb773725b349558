"""The hybrid router: several backends behind one, chosen per key by prefix.

Like httpx mounts: the longest matching prefix wins and a default route (prefix ``""``) is
mandatory. Every operation of the contract works through the router:

* single-key operations go to the key's route;
* bulk operations are split by route, run concurrently, and merged in order;
* listing (and so delete-by-pattern) fans out only to the routes the pattern's literal prefix
  can reach, and a backend's key is accepted only if it still routes to that backend, so
  results never repeat and keys left behind by an older route table stay invisible;
* capabilities are per key (:meth:`HybridBackend.capabilities_for`): pub/sub and locks work on
  the routes that offer them; the declared set is what every route offers; the methods of
  every flag are there, each refusing on a route without the flag; the hook protocols
  (``query``, releasing the namespace) are there when a route has them;
* its parts (:class:`~ad_buyer_storage.contract.protocol.SupportsParts`) are its distinct
  backends, each labelled by its (first) route's label, which ``route_of`` answers;
* what keyspaces need (locks need atomics and expiry...) reaches the router as data
  (:class:`Requirement`): a table that cannot serve them is refused with a report;
* connecting is exception-safe (a failing route closes those already open); closing continues
  past a failing route; health is reported per route.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ad_buyer_storage.client.query import query
from ad_buyer_storage.client.refresh import read_refresh
from ad_buyer_storage.composed.forwarding import Forwarding, has_hook
from ad_buyer_storage.composed.lifecycle import close_all, connect_all, release_all
from ad_buyer_storage.contract.glob import GlobPattern, compile_glob, escape_glob
from ad_buyer_storage.contract.protocol import (
    Capability,
    Check,
    Filter,
    Record,
    StorageBackend,
    SupportsAtomic,
    SupportsExpiry,
    SupportsPubSub,
    SupportsQuery,
    SupportsRefresh,
    SupportsReleaseNamespace,
    SupportsTransactions,
    SupportsTurns,
    Write,
)
from ad_buyer_storage.errors import (
    ConfigurationError,
    PartialBatchError,
    StorageError,
    UnavailableError,
    UnsupportedOperationError,
)

__all__ = ["HybridBackend", "Requirement", "Route", "RouteHealth", "check_routes"]

T = TypeVar("T")
#: Rows asked for again after a page lost some to stale copies: at least, and at most.
_REFILL, _REFILL_MAX = 16, 1024


@dataclass(frozen=True)
class Route:
    """Keys starting with *prefix* live on *backend*; *label* names it in reports."""

    prefix: str
    backend: StorageBackend
    label: str


@dataclass(frozen=True)
class Requirement:
    """Keys starting with *prefix* (named *name* in reports) need *capabilities* where they live."""

    prefix: str
    name: str
    capabilities: frozenset[Capability]


@dataclass(frozen=True)
class RouteHealth:
    """One backend of the router: its label, the prefixes it serves, and how it answered."""

    label: str
    healthy: bool
    prefixes: tuple[str, ...]
    latency_ms: float | None = None
    error: StorageError | None = None
    version: str = ""  # the server's version, when asked to describe
    breaker: str = ""  # its circuit breaker's state, when it has one and was asked to describe


def check_routes(routes: Sequence[Route], requirements: Sequence[Requirement] = ()) -> None:
    """Refuse a route table that cannot serve what its keys need, with a readable report."""
    problems: list[str] = []
    prefixes = [r.prefix for r in routes]
    if "" not in prefixes:
        problems.append("no default route: add one for the prefix '' (every key must have a home)")
    duplicates = sorted({p for p in prefixes if prefixes.count(p) > 1})
    if duplicates:
        problems.append(f"prefixes routed twice: {', '.join(map(repr, duplicates))}")
    router = _Table(routes) if not problems else None
    if router is not None:
        for need in requirements:
            route = router.route(need.prefix)
            missing = need.capabilities - route.backend.capabilities
            if missing:
                problems.append(
                    f"{need.prefix!r} ({need.name}) is routed to {route.label}, which lacks "
                    f"{', '.join(sorted(c.value for c in missing))}"
                )
    if problems:
        raise ConfigurationError("invalid route table:\n  - " + "\n  - ".join(problems))


class _Table:
    """Longest-prefix lookup.

    Fast path: keys look like ``head:rest``; the route of a head that no deeper route extends
    is cached, so most lookups are one ``find`` and one dict probe. Otherwise one dict probe
    per distinct prefix length, longest first.
    """

    _CACHE_LIMIT = 4096

    def __init__(self, routes: Sequence[Route]) -> None:
        self.by_prefix = {r.prefix: r for r in routes}
        self.lengths = sorted({len(p) for p in self.by_prefix}, reverse=True)
        self.by_head: dict[str, Route] = {}

    def route(self, key: str) -> Route:
        cut = key.find(":") + 1
        if cut:
            cached = self.by_head.get(key[:cut])
            if cached is not None:
                return cached
        by_prefix = self.by_prefix
        for length in self.lengths:
            route = by_prefix.get(key[:length])
            if route is not None:
                if cut and len(self.by_head) < self._CACHE_LIMIT and length <= cut:
                    head = key[:cut]
                    # Cache only if no route is deeper than the head (e.g. "session:vip:").
                    if not any(len(p) > cut and p.startswith(head) for p in by_prefix):
                        self.by_head[head] = route
                return route
        raise ConfigurationError("no default route")  # check_routes makes this unreachable


def _distinct(routes: Sequence[Route]) -> list[StorageBackend]:
    """The distinct backends of *routes* (one Redis may serve six prefixes), in route order."""
    backends: list[StorageBackend] = []
    for route in routes:
        if not any(b is route.backend for b in backends):
            backends.append(route.backend)
    return backends


class HybridBackend(Forwarding):
    """A :class:`~ad_buyer_storage.contract.protocol.StorageBackend` made of other backends."""

    name = "hybrid"

    def __init__(self, routes: Sequence[Route], requirements: Sequence[Requirement] = ()) -> None:
        check_routes(routes, requirements)
        self.routes = tuple(sorted(routes, key=lambda r: (-len(r.prefix), r.prefix)))
        self._table = _Table(self.routes)
        self._backends = _distinct(self.routes)
        # Each backend's label (its first route's; made unique, as route_of answers it).
        self._labels: dict[int, str] = {}
        for backend in self._backends:
            label = next(r.label for r in self.routes if r.backend is backend)
            taken = set(self._labels.values())
            unique, n = label, 2
            while unique in taken:
                unique, n = f"{label}#{n}", n + 1
            self._labels[id(backend)] = unique
        self.capabilities = frozenset.intersection(*(frozenset(b.capabilities) for b in self._backends))
        # Which routes can commit, publish, refresh, take turns, found once: by their flags.
        self._committers = cast(dict[int, SupportsTransactions], self._claiming(Capability.TRANSACTIONS))
        self._refreshers = cast(dict[int, SupportsRefresh], self._claiming(Capability.REFRESH))
        self._publishers = cast(dict[int, SupportsPubSub], self._claiming(Capability.PUBSUB))
        self._turns = cast(dict[int, SupportsTurns], self._claiming(Capability.TURNS))
        self._queriers: dict[int, SupportsQuery] = {id(b): b for b in self._backends if isinstance(b, SupportsQuery)}
        self._connected: list[StorageBackend] = []

    @classmethod
    def _hooks_wanted(cls, routes: Sequence[Route], *args: Any, **kwargs: Any) -> Iterable[type]:
        backends = _distinct(routes)
        return [protocol for protocol, _ in cls.HOOKS if has_hook(protocol, backends)]

    def _claiming(self, flag: Capability) -> dict[int, StorageBackend]:
        return {id(b): b for b in self._backends if flag in b.capabilities}

    def parts(self) -> Iterable[tuple[str, StorageBackend]]:
        """Its distinct backends, each with its label."""
        return [(self._labels[id(b)], b) for b in self._backends]

    def __repr__(self) -> str:
        table = ", ".join(f"{r.prefix or '*'}->{r.label}" for r in self.routes)
        return f"HybridBackend({table})"

    def backend_for(self, key: str) -> StorageBackend:
        return self._table.route(key).backend

    def route_for(self, key: str) -> Route:
        return self._table.route(key)

    def capabilities_for(self, key: str) -> frozenset[Capability]:
        return self._table.route(key).backend.capabilities

    def _label(self, backend: StorageBackend) -> str:
        return self._labels[id(backend)]

    def prefixes_of(self, backend: StorageBackend) -> tuple[str, ...]:
        return tuple(r.prefix or "*" for r in self.routes if r.backend is backend)

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        self._connected = await connect_all(self._backends)

    async def aclose(self) -> None:
        connected, self._connected = self._connected, []
        await close_all(connected)

    async def route_health(self, *, standalone: bool = False) -> list[RouteHealth]:
        """Ping every backend; say which prefixes each failure affects.

        ``standalone=True`` (a router that was not connected, as ``doctor`` has it): each
        backend is connected, pinged, asked its version and closed on its own, so one dead
        store still leaves a report for the others.
        """

        async def check(backend: StorageBackend) -> RouteHealth:
            loop = asyncio.get_running_loop()
            started = loop.time()
            version = breaker = ""
            try:
                if standalone:
                    await backend.connect()
                try:
                    await backend.ping()
                    if standalone:
                        facts = await backend.info()
                        version = next((str(v) for k, v in facts.items() if k.endswith("_version")), "")
                        described = facts.get("breaker")
                        breaker = str(described.get("state", "")) if isinstance(described, Mapping) else ""
                finally:
                    if standalone:
                        await backend.aclose()
            except StorageError as exc:
                return RouteHealth(self._label(backend), False, self.prefixes_of(backend), error=exc)
            elapsed = (loop.time() - started) * 1000
            return RouteHealth(
                self._label(backend), True, self.prefixes_of(backend), elapsed, version=version, breaker=breaker
            )

        return list(await asyncio.gather(*(check(b) for b in self._backends)))

    async def ping(self) -> None:
        report = await self.route_health()
        failed = [h for h in report if not h.healthy]
        if failed:
            ok = [p for h in report if h.healthy for p in h.prefixes]
            lines = [f"{h.label} unavailable ({', '.join(h.prefixes)} affected): {h.error}" for h in failed]
            raise UnavailableError("; ".join(lines) + (f"; still OK: {', '.join(ok)}" if ok else ""))

    async def info(self) -> Mapping[str, object]:
        facts: dict[str, object] = {
            "backend": "hybrid",
            "routes": {r.prefix or "*": r.label for r in self.routes},
        }
        for backend in self._backends:
            details = dict(await backend.info())
            facts[self._label(backend)] = details
        return facts

    # -- primitives ------------------------------------------------------------------------
    def route_of(self, key: str) -> str:
        """The label of the part serving *key*: callers that batch keep routes apart by it."""
        return self._labels[id(self._table.route(key).backend)]

    def _split(self, keys: Sequence[str]) -> dict[int, tuple[StorageBackend, list[int]]]:
        groups: dict[int, tuple[StorageBackend, list[int]]] = {}
        route = self._table.route
        for i, key in enumerate(keys):
            backend = route(key).backend
            group = groups.get(id(backend))
            if group is None:
                groups[id(backend)] = (backend, [i])
            else:
                group[1].append(i)
        return groups

    async def _per_route(
        self, keys: Sequence[str], call: Callable[[StorageBackend, list[int]], Awaitable[Sequence[T]]]
    ) -> list[T]:
        """Run *call* once per route over the indexes of *keys* it serves, concurrently; merge
        in order. A route that fails fails only its own items (PartialBatchError)."""
        out: list[object] = [None] * len(keys)
        failed = False

        async def run(backend: StorageBackend, idx: list[int]) -> None:
            nonlocal failed
            results: Sequence[object]
            try:
                results = await call(backend, idx)
            except PartialBatchError as exc:
                results, failed = exc.outcomes, True
            except StorageError as exc:
                results, failed = [exc] * len(idx), True
            for i, result in zip(idx, results, strict=True):
                out[i] = result

        await asyncio.gather(*(run(b, idx) for b, idx in self._split(keys).values()))
        if failed:
            errors = {id(o) for o in out if isinstance(o, BaseException)}
            if len(errors) == 1 and all(isinstance(o, BaseException) for o in out):
                raise cast(BaseException, out[0])  # one route, one error: as it was
            raise PartialBatchError(out)
        return cast(list[T], out)

    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        if len(keys) == 1:
            return await self._table.route(keys[0]).backend.read(keys)
        return await self._per_route(keys, lambda backend, idx: backend.read([keys[i] for i in idx]))

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        if len(writes) == 1:
            return await self._table.route(writes[0].key).backend.write(writes)
        return await self._per_route(
            [w.key for w in writes], lambda backend, idx: backend.write([writes[i] for i in idx])
        )

    async def commit(self, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str]) -> bool:
        """On the one backend every key of the transaction routes to; no transaction spans two
        stores (there is no two-phase commit across them): that is refused before anything is written."""
        keys = [k for k, _ in checks] + [w.key for w in writes] + list(deletes)
        groups = self._split(keys)
        if len(groups) > 1:
            where = "; ".join(
                f"{self._label(b)} ({', '.join(sorted({keys[i] for i in idx})[:3])})" for b, idx in groups.values()
            )
            raise UnsupportedOperationError(f"a transaction's keys must live on one route; these span several: {where}")
        ((backend, _),) = groups.values()
        committer = self._committers.get(id(backend))
        if committer is None:
            raise UnsupportedOperationError(f"the route {self._label(backend)} has no transactions")
        return await committer.commit(checks, writes, deletes)

    def turn(self, keys: Sequence[str]) -> AbstractAsyncContextManager[None]:
        """The turn of the one route every key goes to, where it has turns (else none)."""
        groups = self._split(keys)
        if len(groups) == 1:
            ((backend, _),) = groups.values()
            turns = self._turns.get(id(backend))
            if turns is not None:
                return turns.turn(keys)
        return nullcontext()

    async def remove(self, keys: Sequence[str]) -> int:
        groups = self._split(keys)
        counts = await asyncio.gather(*(b.remove([keys[i] for i in idx]) for b, idx in groups.values()))
        return sum(counts)

    async def count(self, keys: Sequence[str]) -> int:
        groups = self._split(keys)
        counts = await asyncio.gather(*(b.count([keys[i] for i in idx]) for b, idx in groups.values()))
        return sum(counts)

    def reachable(self, pattern: GlobPattern) -> list[StorageBackend]:
        """Backends that can hold a live key matching *pattern* (by its literal prefix)."""
        literal = pattern.prefix
        deepest = self._table.route(literal)  # every key starting with `literal` routes here or deeper
        found: list[StorageBackend] = [deepest.backend]
        for route in self.routes:
            deeper = route.prefix.startswith(literal) and len(route.prefix) > len(deepest.prefix)
            if deeper and not any(b is route.backend for b in found):
                found.append(route.backend)
        return found

    async def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        route = self._table.route
        for backend in self.reachable(pattern):
            async for key in backend.scan(pattern, batch_size):
                # Only keys that live here under today's table: no duplicates, no stale copies.
                if route(key).backend is backend:
                    yield key

    async def get_ttl(self, key: str) -> int:
        return await cast(SupportsExpiry, self._table.route(key).backend).get_ttl(key)

    async def read_refresh(self, key: str, ttl_ms: int | None) -> Record | None:
        backend = self._table.route(key).backend
        return await read_refresh(backend, self._refreshers.get(id(backend)), key, ttl_ms)

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        return await cast(SupportsExpiry, self._table.route(key).backend).set_ttl(key, ttl_ms)

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        return await cast(SupportsAtomic, self._table.route(key).backend).increment(key, amount, version, ttl_ms)

    # -- pub/sub: on the channel's route -----------------------------------------------------
    def _pubsub_for(self, channel: str) -> SupportsPubSub:
        backend = self._table.route(channel).backend
        publisher = self._publishers.get(id(backend))
        if publisher is None:
            raise UnsupportedOperationError(f"the route of {channel!r} ({self._label(backend)}) has no pub/sub")
        return publisher

    async def publish(self, channel: str, message: str) -> int:
        return await self._pubsub_for(channel).publish(channel, message)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self._pubsub_for(channel).subscribe(channel)


# The hook protocols, each there when a route has it (see composed/forwarding.py).
class _Query(HybridBackend):
    async def query(
        self, prefix: str, where: Sequence[Filter], after: str | None, limit: int
    ) -> list[tuple[str, Record]]:
        """On each backend *prefix* can reach, merged in key order (keys that live elsewhere
        under today's table left out, as in ``scan``).

        A page is short only at the real end: when a backend's full page loses rows to that
        filter (copies an older route table left behind), it is read on from its last row until
        *limit* rows remain or the backend has no more; a short page would read as the end."""
        route = self._table.route
        pages = []
        for backend in self.reachable(compile_glob(escape_glob(prefix) + "*")):
            querier = self._queriers.get(id(backend))
            rows: list[tuple[str, Record]] = []
            cursor, size = after, limit
            while len(rows) < limit:
                page = await query(backend, querier, prefix, where, cursor, size)
                rows += [(key, record) for key, record in page if route(key).backend is backend]
                if len(page) < size:
                    break  # this backend has no more
                cursor = page[-1][0]
                size = min(max(size, _REFILL) * 2, _REFILL_MAX)  # many stale rows: fewer round trips
            pages.append(rows[:limit])
        if len(pages) == 1:
            return pages[0]
        return list(itertools.islice(heapq.merge(*pages, key=lambda row: row[0]), limit))


class _ReleaseNamespace(HybridBackend):
    async def release_namespace(self) -> None:
        await release_all(self._backends)


HybridBackend.HOOKS = ((SupportsQuery, _Query), (SupportsReleaseNamespace, _ReleaseNamespace))
