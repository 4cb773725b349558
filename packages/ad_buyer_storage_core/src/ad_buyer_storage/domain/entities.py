"""The buyer agent's entities, declared once.

:data:`ENTITIES` is the single table the domain helpers, the docs and the hybrid router's
default routes and route checks read. Adding an entity is one line (``register_entity(Entity(
"product", "product:"))``); it is then reachable as ``storage.collection("product")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.errors import InvalidInputError
from ad_buyer_storage.plugins.profile import Keyspace, StoreProfile

__all__ = [
    "ENTITIES",
    "Entity",
    "agent_profile",
    "default_routes",
    "entity_by_name",
    "ephemeral_prefixes",
    "register_entity",
    "unregister_entity",
]


@dataclass(frozen=True, slots=True)
class Entity:
    """A keyspace: its prefix, whether it is business data, its default TTL, what it needs."""

    name: str
    prefix: str
    #: Durable (business data: deals, orders) or ephemeral (sessions, caches: may be lost).
    durable: bool = True
    #: Seconds; None = no expiry. Overridable per deployment (``SESSION_DEFAULT_TTL``).
    default_ttl: float | None = None
    #: Capabilities a backend must offer to hold these keys (checked by the hybrid router).
    needs: frozenset[Capability] = frozenset()

    def key(self, entity_id: str) -> str:
        if not isinstance(entity_id, str) or not entity_id:
            raise InvalidInputError(f"{self.name} ids must be non-empty str, not {entity_id!r}")
        return self.prefix + entity_id


_EXPIRY = frozenset({Capability.EXPIRY})
_ATOMIC_EXPIRY = frozenset({Capability.ATOMIC, Capability.EXPIRY})
_ATOMIC = frozenset({Capability.ATOMIC})

_ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity("deal", "deal:", needs=_ATOMIC),  # update_deal: optimistic concurrency
        Entity("campaign", "campaign:"),
        Entity("order", "order:"),
        Entity("session", "session:", durable=False, default_ttl=86_400, needs=_EXPIRY),
        Entity("conversion", "conversion:"),
        Entity("optimization_decision", "opt_decision:"),
        Entity("experiment", "experiment:"),
        Entity("supply_path_score", "supply_path:"),
        Entity("quote", "quote:", default_ttl=86_400, needs=_EXPIRY),
        Entity("negotiation", "negotiation:"),
        Entity("model_artifact", "model:"),
        Entity("pacing_snapshot", "pacing:"),
        Entity("session_index", "session_index:", durable=False, default_ttl=86_400, needs=_ATOMIC_EXPIRY),
        # Short-lived coordination data (no seed helpers; see LeaseLock and RateLimiter).
        Entity("cache", "cache:", durable=False, needs=_EXPIRY),
        Entity("lock", "lock:", durable=False, needs=_ATOMIC_EXPIRY),
        # A lock's fencing-token counter must never go back, even if the locks' store loses
        # its data: durable, so the default routes keep it on the durable store.
        Entity("fence", "fence:", needs=_ATOMIC),
        # Not a hard need: a deployment without pub/sub still starts; publishing on a route
        # without it fails at the call with UnsupportedOperationError.
        Entity("pubsub", "pubsub:", durable=False),
        Entity("rate_limit", "rate_limit:", durable=False, needs=_ATOMIC_EXPIRY),
    )
}
#: The entity table, read-only: :func:`register_entity` is the one way to add to it.
ENTITIES: Mapping[str, Entity] = MappingProxyType(_ENTITIES)
_SEED = frozenset(_ENTITIES)


def register_entity(entity: Entity) -> Entity:
    """Add an entity (for example the seller agent's ``product``) to the table."""
    existing = ENTITIES.get(entity.name)
    if existing is not None and existing != entity:
        raise InvalidInputError(f"entity {entity.name!r} is already declared as {existing}")
    for other in ENTITIES.values():
        if other.name != entity.name and (
            other.prefix.startswith(entity.prefix) or entity.prefix.startswith(other.prefix)
        ):
            raise InvalidInputError(f"prefix {entity.prefix!r} overlaps {other.name!r} ({other.prefix!r})")
    _ENTITIES[entity.name] = entity
    return entity


def unregister_entity(name: str) -> Entity:
    """Remove an entity added by :func:`register_entity` (tests, plugins unloading); the seed's
    own entities cannot be removed."""
    if name in _SEED:
        raise InvalidInputError(f"entity {name!r} is one of the seed's and cannot be removed")
    try:
        return _ENTITIES.pop(name)
    except KeyError:
        raise InvalidInputError(f"unknown entity {name!r}; declared: {', '.join(sorted(ENTITIES))}") from None


def entity_by_name(name: str) -> Entity:
    try:
        return ENTITIES[name]
    except KeyError:
        raise InvalidInputError(f"unknown entity {name!r}; declared: {', '.join(sorted(ENTITIES))}") from None


def agent_profile() -> StoreProfile:
    """The entity table as the generic factory takes it: each entity's keyspace, whether it is
    durable, what it needs (the hybrid router's default routes and route checks read it)."""
    return StoreProfile(
        tuple(Keyspace(e.prefix, e.name, e.durable, e.needs) for e in ENTITIES.values()),
        indexed_fields=AGENT_INDEXED_FIELDS,
    )


#: What the agent's listings filter on (``list_deals({"status": ...})``...): indexed where a
#: backend indexes fields, unless ``SQLITE_INDEXED_FIELDS``/``POSTGRES_INDEXED_FIELDS`` say otherwise.
AGENT_INDEXED_FIELDS = ("status", "campaign_id", "deal_id", "buyer_id", "seller_id")


def default_routes(fast: str, durable: str) -> dict[str, str]:
    """The agent's production routing: ephemeral entities on *fast*, everything else on *durable*."""
    return agent_profile().default_routes(fast, durable)


def ephemeral_prefixes() -> list[str]:
    """The keyspaces of data that may be lost (sessions, caches, locks...): the fast store's."""
    return [e.prefix for e in ENTITIES.values() if not e.durable]
