"""What a domain tells the factory about its data: its keyspaces, as data.

The generic factory knows no domain. A domain (the buyer agent's ``Storage``, a facade over
another application's stores) describes its keyspaces in a :class:`StoreProfile`, and the
factory uses it where a store made of others has to decide by key: the hybrid router's default
routes (ephemeral keyspaces on the fast store, everything else on the durable one) and its
checks that each keyspace's route offers what the keyspace needs (locks: atomics and expiry).

>>> profile = StoreProfile((Keyspace("session:", "session", durable=False, needs=frozenset({Capability.EXPIRY})),))
>>> profile.ephemeral_prefixes()
['session:']
"""

from __future__ import annotations

from dataclasses import dataclass

from ad_buyer_storage.composed.hybrid import Requirement
from ad_buyer_storage.contract.protocol import Capability

__all__ = ["GENERIC", "Keyspace", "StoreProfile"]


@dataclass(frozen=True, slots=True)
class Keyspace:
    """A key prefix of a domain: its name (for messages), whether its data is business data
    (durable) or may be lost (sessions, caches: the fast store's), and the capabilities a store
    must offer to hold it."""

    prefix: str
    name: str = ""
    durable: bool = True
    needs: frozenset[Capability] = frozenset()


@dataclass(frozen=True, slots=True)
class StoreProfile:
    """A domain's keyspaces. The empty profile (:data:`GENERIC`) says nothing: a hybrid store
    built with it and no ``STORAGE_ROUTES`` keeps every key on the durable store."""

    keyspaces: tuple[Keyspace, ...] = ()
    #: Top-level fields the domain filters its listings on: a backend that indexes fields
    #: (``SQLITE_INDEXED_FIELDS``, ``POSTGRES_INDEXED_FIELDS``) indexes these, unless its setting
    #: is given. None: the backend's own default.
    indexed_fields: tuple[str, ...] | None = None

    def ephemeral_prefixes(self) -> list[str]:
        """The prefixes of data that may be lost: the fast store's, by default."""
        return [k.prefix for k in self.keyspaces if not k.durable]

    def requirements(self) -> list[Requirement]:
        """What each keyspace needs where it lives, for the hybrid router's route checks."""
        return [Requirement(k.prefix, k.name or k.prefix, k.needs) for k in self.keyspaces if k.needs]

    def default_routes(self, fast: str, durable: str) -> dict[str, str]:
        """The default composition: ephemeral keyspaces on *fast*, everything else on *durable*."""
        routes = dict.fromkeys(self.ephemeral_prefixes(), fast)
        routes[""] = durable
        return routes


#: The profile of a plain store: no keyspace declared.
GENERIC = StoreProfile()
