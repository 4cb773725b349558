"""Where a facade store keeps its rows: a generic ``Store`` and a key namespace on it.

``X(database_url)`` as upstream:

- ``sqlite:///:memory:`` (or ``:memory:``): a private, empty in-memory store of its own,
  gone at ``disconnect()``, exactly as each ``sqlite3.connect(":memory:")`` is a new database.
- any other URL through our factory: ``sqlite:///./ad_buyer.db`` (a plain path too) on our
  SQLite backend, ``postgresql://...``, ``redis://...``, or a backend name (``hybrid``, with
  ``DATABASE_URL`` and ``REDIS_URL`` as everywhere else). Instances on the same URL share one
  connected ``Store`` in the process and see each other's rows, as upstream's stores on one
  file do.
- with ``AD_BUYER_STORAGE_COMPAT_URL`` set (a URL or backend name, as ``open_storage``
  takes, ``hybrid`` included), every instance is put on that one store: each ``:memory:``
  instance in a key namespace of its own, dropped when it disconnects; each other URL in a
  namespace derived from it, kept (reconnecting sees the rows again, as reopening a file does).

Every key of an instance starts with ``ba:<namespace>:``, so on the hybrid router all of them
take the default (durable) route, and one transaction can cover any of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from dataclasses import dataclass, field

from ad_buyer_storage import Capability, Keyspace, StoreProfile, build_store
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.client.store import Store
from ad_buyer_storage.contract.glob import escape_glob

__all__ = ["COMPAT_URL_ENV", "Backing", "acquire", "parse_url"]

#: Puts every facade store of the process on one store (see the module's docstring).
COMPAT_URL_ENV = "AD_BUYER_STORAGE_COMPAT_URL"
MEMORY = ":memory:"


def parse_url(database_url: str) -> str:
    """Upstream's reading of a database URL: ``sqlite:///x`` is the path ``x``,
    ``sqlite://`` alone is ``:memory:``, anything else passes through."""
    if database_url.startswith("sqlite:///"):
        return database_url[len("sqlite:///") :]
    if database_url.startswith("sqlite://"):
        return database_url[len("sqlite://") :] or MEMORY
    return database_url


#: The facade's keyspace, for composite stores: all of it durable business data, on a route
#: that offers transactions and atomics (the hybrid router checks it at startup).
PROFILE = StoreProfile(
    (Keyspace("ba:", "buyer-agent", durable=True, needs=frozenset({Capability.TRANSACTIONS, Capability.ATOMIC})),)
)


def _build_store(target: str) -> Store:
    """A new, unconnected ``Store`` for a URL or a backend name (the one place that builds one)."""
    return build_store(target, profile=PROFILE)


@dataclass
class _Shared:
    store: Store
    users: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failed: BaseException | None = None


# Connected stores shared by the instances on one target, with the process they belong to (a
# forked child starts with none: the parent's connections are not its own). Only touched on
# the facade loop.
_shared: dict[str, _Shared] = {}
_shared_pid = os.getpid()


@dataclass
class Backing:
    """One facade instance's place: the store, its key namespace, whether it is private."""

    store: Store
    prefix: str
    private: bool
    target: str | None = None

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def release(self) -> None:
        """Drop a private namespace; give the shared store back (closed by its last user)."""
        if self.private:
            await self.store.delete_pattern(escape_glob(self.prefix) + "*")
        if self.target is None:
            await self.store.aclose()
            return
        shared = _shared.get(self.target)
        if shared is None or shared.store is not self.store:
            return
        shared.users -= 1
        if shared.users <= 0:
            del _shared[self.target]
            await shared.store.aclose()


async def _share(target: str) -> Store:
    """The connected store shared on *target*; the first caller connects it, concurrent
    callers wait for that connect (one store per target, never two)."""
    global _shared_pid
    if _shared_pid != os.getpid():
        _shared.clear()
        _shared_pid = os.getpid()
    shared = _shared.get(target)
    if shared is None or (shared.ready.is_set() and not shared.store.is_open):
        shared = _shared[target] = _Shared(_build_store(target))
        try:
            await shared.store.connect()
        except BaseException as exc:
            shared.failed = exc
            del _shared[target]
            raise
        finally:
            shared.ready.set()
    else:
        await shared.ready.wait()
        if shared.failed is not None:
            raise shared.failed
    shared.users += 1
    return shared.store


def _namespace_of(path: str) -> str:
    where = path if "://" in path else os.path.abspath(path)
    return "f" + hashlib.sha256(where.encode()).hexdigest()[:20]


async def acquire(database_url: str) -> Backing:
    """The backing for ``X(database_url).connect()`` (run on the facade loop)."""
    path = parse_url(database_url)
    compat = os.environ.get(COMPAT_URL_ENV)
    if compat:
        store = await _share(compat)
        if path == MEMORY:
            return Backing(store, f"ba:m{uuid.uuid4().hex}:", private=True, target=compat)
        return Backing(store, f"ba:{_namespace_of(path)}:", private=False, target=compat)
    if path == MEMORY:
        store = Store(MemoryBackend())
        await store.connect()
        return Backing(store, "ba:db:", private=False, target=None)
    target = database_url if "://" in database_url else f"sqlite:///{path}"
    if "://" not in database_url and not path.endswith((".db", ".sqlite", ".sqlite3")) and os.sep not in path:
        target = database_url  # a backend name (memory, hybrid...), not a file
    store = await _share(target)
    return Backing(store, "ba:db:", private=False, target=target)
