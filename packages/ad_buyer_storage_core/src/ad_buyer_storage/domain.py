"""The buyer agent's entities, declared once, and the helpers built on them.

:data:`ENTITIES` is the single table the domain helpers, the docs and the hybrid router's
default routes read. Adding an entity is one line (``register_entity(Entity("product",
"product:"))``); it is then reachable as ``storage.collection("product")``.

Lists are done with bulk reads (one round trip per 500 values, never one per key) and
filters match top-level fields by JSON equality (:func:`same_json`): an unknown field matches
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .codec import to_jsonable
from .errors import InvalidInputError
from .glob import escape_glob
from .protocol import Capability

if TYPE_CHECKING:
    from .storage import Storage

__all__ = [
    "ENTITIES",
    "EPHEMERAL_PREFIXES",
    "DomainHelpers",
    "Entity",
    "EntityCollection",
    "entity_by_name",
    "register_entity",
]

_UNSET: Any = object()
_LIST_BATCH = 500


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

ENTITIES: dict[str, Entity] = {
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
        # Short-lived coordination data (no seed helpers; see ad_buyer_storage.coordination).
        Entity("cache", "cache:", durable=False, needs=_EXPIRY),
        Entity("lock", "lock:", durable=False, needs=_ATOMIC_EXPIRY),
        # Not a hard need: a deployment without pub/sub still starts; publishing on a route
        # without it fails at the call with UnsupportedOperationError.
        Entity("pubsub", "pubsub:", durable=False),
        Entity("rate_limit", "rate_limit:", durable=False, needs=_ATOMIC_EXPIRY),
    )
}

#: Prefixes of short-lived data without seed helpers (routed to the fast store in hybrid mode).
EPHEMERAL_PREFIXES: tuple[str, ...] = ("cache:", "lock:", "pubsub:", "rate_limit:")


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
    ENTITIES[entity.name] = entity
    return entity


def entity_by_name(name: str) -> Entity:
    try:
        return ENTITIES[name]
    except KeyError:
        raise InvalidInputError(f"unknown entity {name!r}; declared: {', '.join(sorted(ENTITIES))}") from None


def _matches(value: Any, filters: Mapping[str, Any]) -> bool:
    if not isinstance(value, dict):
        return False
    return all(field in value and same_json(value[field], expected) for field, expected in filters.items())


def same_json(a: Any, b: Any) -> bool:
    """Equality of JSON values: a bool equals only a bool (``True`` is not ``1``), numbers by
    value (``1`` is ``1.0``), strings, null, arrays and objects only the same JSON."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class EntityCollection:
    """get/set/delete/list/update for one entity on one storage."""

    def __init__(self, storage: Storage, entity: Entity, default_ttl: float | None) -> None:
        self.storage = storage
        self.entity = entity
        self.default_ttl = default_ttl

    async def get(self, entity_id: str, *, model: Any = None) -> Any:
        return await self.storage.get(self.entity.key(entity_id), model=model)

    async def set(self, entity_id: str, data: Any, ttl: Any = _UNSET) -> None:
        """Store *data*; *ttl* defaults to the entity's default TTL (None = never expires)."""
        await self.storage.set(self.entity.key(entity_id), data, self.default_ttl if ttl is _UNSET else ttl)

    async def delete(self, entity_id: str) -> bool:
        return await self.storage.delete(self.entity.key(entity_id))

    async def update(self, entity_id: str, fn: Any, *, default: Any = _UNSET) -> Any:
        """Atomic read-modify-write of one record (optimistic concurrency, retried on conflict)."""
        key = self.entity.key(entity_id)
        if default is _UNSET:
            return await self.storage.update(key, fn)
        return await self.storage.update(key, fn, default=default, ttl=self.default_ttl)

    async def ids(self) -> list[str]:
        """Every live id, sorted."""
        cut = len(self.entity.prefix)
        return [key[cut:] for key in await self.storage.keys(escape_glob(self.entity.prefix) + "*")]

    async def list(
        self, filters: Mapping[str, Any] | None = None, limit: int | None = None, *, model: Any = None
    ) -> list[Any]:
        """Records in id order whose top-level fields equal every item of *filters*."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidInputError(f"limit must be a non-negative int or None, not {limit!r}")
        if filters is not None and not isinstance(filters, Mapping):
            raise InvalidInputError(f"filters must be a mapping of field to value, not {type(filters).__name__}")
        # Compare in JSON form, so Decimal("10.50") finds the stored "10.50" and an Enum its value.
        wanted = to_jsonable(dict(filters)) if filters else None
        out: list[Any] = []
        if limit == 0:
            return out
        keys = await self.storage.keys(escape_glob(self.entity.prefix) + "*")
        for start in range(0, len(keys), _LIST_BATCH):
            chunk = keys[start : start + _LIST_BATCH]
            values = await self.storage.get_many(chunk)
            for key in chunk:
                if key not in values:  # expired or deleted since the listing
                    continue
                value = values[key]
                if wanted is not None and not _matches(value, wanted):
                    continue
                out.append(value)
                if limit is not None and len(out) >= limit:
                    break
            if limit is not None and len(out) >= limit:
                break
        if model is not None:
            from .codec import validate_as

            return [validate_as(model, v) for v in out]
        return out


class DomainHelpers:
    """The seed's 34 domain methods (same names and signatures) plus delete/list for all.

    Every helper is one line over :class:`EntityCollection`; ``list_*`` take ``filters``
    (exact match on top-level fields) and ``limit``.
    """

    def __init__(self, default_ttls: Mapping[str, float | None]) -> None:
        self._default_ttls = dict(default_ttls)

    def collection(self, name: str) -> EntityCollection:
        """The helpers of any declared entity, by name (``"deal"``, ``"product"``...)."""
        entity = entity_by_name(name)
        ttl = self._default_ttls.get(name, entity.default_ttl)
        return EntityCollection(self, entity, ttl)  # type: ignore[arg-type]

    # deals
    async def get_deal(self, deal_id: str) -> dict[str, Any] | None:
        return await self.collection("deal").get(deal_id)  # type: ignore[no-any-return]

    async def set_deal(self, deal_id: str, deal_data: Any) -> None:
        await self.collection("deal").set(deal_id, deal_data)

    async def delete_deal(self, deal_id: str) -> bool:
        return await self.collection("deal").delete(deal_id)

    async def list_deals(self, filters: Mapping[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        return await self.collection("deal").list(filters, limit)

    async def update_deal(self, deal_id: str, fn: Any) -> Any:
        """Atomically apply ``fn(deal) -> deal`` (for example adding to ``spend``)."""
        return await self.collection("deal").update(deal_id, fn)

    # campaigns
    async def get_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        return await self.collection("campaign").get(campaign_id)  # type: ignore[no-any-return]

    async def set_campaign(self, campaign_id: str, data: Any) -> None:
        await self.collection("campaign").set(campaign_id, data)

    async def delete_campaign(self, campaign_id: str) -> bool:
        return await self.collection("campaign").delete(campaign_id)

    async def list_campaigns(self, filters: Mapping[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        return await self.collection("campaign").list(filters, limit)

    # orders
    async def get_order(self, order_id: str) -> dict[str, Any] | None:
        return await self.collection("order").get(order_id)  # type: ignore[no-any-return]

    async def set_order(self, order_id: str, data: Any) -> None:
        await self.collection("order").set(order_id, data)

    async def delete_order(self, order_id: str) -> bool:
        return await self.collection("order").delete(order_id)

    async def list_orders(self, filters: Mapping[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        return await self.collection("order").list(filters, limit)

    # sessions (ephemeral: SESSION_DEFAULT_TTL when ttl is None)
    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        return await self.collection("session").get(session_id)  # type: ignore[no-any-return]

    async def set_session(self, session_id: str, data: Any, ttl: Any = None) -> None:
        sessions = self.collection("session")
        await sessions.set(session_id, data, sessions.default_ttl if ttl is None else ttl)

    async def delete_session(self, session_id: str) -> bool:
        return await self.collection("session").delete(session_id)

    async def list_sessions(self, filters: Mapping[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        return await self.collection("session").list(filters, limit)

    # buyer -> sessions index (atomic: concurrent adds never lose an id)
    async def add_session_to_index(self, buyer_id: str, session_id: str) -> list[str]:
        """Record *session_id* under *buyer_id*; return the buyer's session ids."""
        index = self.collection("session_index")
        return await index.update(buyer_id, lambda ids: sorted({*ids, session_id}), default=[])  # type: ignore[no-any-return]

    async def remove_session_from_index(self, buyer_id: str, session_id: str) -> list[str]:
        index = self.collection("session_index")
        return await index.update(buyer_id, lambda ids: [i for i in ids if i != session_id], default=[])  # type: ignore[no-any-return]

    async def get_session_index(self, buyer_id: str) -> list[str]:
        return await self.collection("session_index").get(buyer_id) or []

    async def list_buyer_sessions(self, buyer_id: str) -> list[Any]:
        """The buyer's live sessions, read in one bulk round trip (expired ones skipped)."""
        ids = await self.get_session_index(buyer_id)
        sessions = self.collection("session")
        found = await sessions.storage.get_many([sessions.entity.key(i) for i in ids])
        return list(found.values())

    # conversions
    async def get_conversion(self, event_id: str) -> dict[str, Any] | None:
        return await self.collection("conversion").get(event_id)  # type: ignore[no-any-return]

    async def set_conversion(self, event_id: str, data: Any) -> None:
        await self.collection("conversion").set(event_id, data)

    async def delete_conversion(self, event_id: str) -> bool:
        return await self.collection("conversion").delete(event_id)

    async def list_conversions(self, filters: Mapping[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        return await self.collection("conversion").list(filters, limit)

    # optimization decisions
    async def get_optimization_decision(self, decision_id: str) -> dict[str, Any] | None:
        return await self.collection("optimization_decision").get(decision_id)  # type: ignore[no-any-return]

    async def set_optimization_decision(self, decision_id: str, data: Any) -> None:
        await self.collection("optimization_decision").set(decision_id, data)

    async def delete_optimization_decision(self, decision_id: str) -> bool:
        return await self.collection("optimization_decision").delete(decision_id)

    async def list_optimization_decisions(
        self, filters: Mapping[str, Any] | None = None, limit: int | None = None
    ) -> list[Any]:
        return await self.collection("optimization_decision").list(filters, limit)

    # experiments
    async def get_experiment(self, experiment_id: str) -> dict[str, Any] | None:
        return await self.collection("experiment").get(experiment_id)  # type: ignore[no-any-return]

    async def set_experiment(self, experiment_id: str, data: Any) -> None:
        await self.collection("experiment").set(experiment_id, data)

    async def delete_experiment(self, experiment_id: str) -> bool:
        return await self.collection("experiment").delete(experiment_id)

    async def list_experiments(self, filters: Mapping[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        return await self.collection("experiment").list(filters, limit)

    # supply path scores
    async def get_supply_path_score(self, supply_path_hash: str) -> dict[str, Any] | None:
        return await self.collection("supply_path_score").get(supply_path_hash)  # type: ignore[no-any-return]

    async def set_supply_path_score(self, supply_path_hash: str, data: Any) -> None:
        await self.collection("supply_path_score").set(supply_path_hash, data)

    async def delete_supply_path_score(self, supply_path_hash: str) -> bool:
        return await self.collection("supply_path_score").delete(supply_path_hash)

    async def list_supply_path_scores(
        self, filters: Mapping[str, Any] | None = None, limit: int | None = None
    ) -> list[Any]:
        return await self.collection("supply_path_score").list(filters, limit)

    # quotes (24 h TTL by default, as in the seed)
    async def get_quote(self, quote_id: str) -> dict[str, Any] | None:
        return await self.collection("quote").get(quote_id)  # type: ignore[no-any-return]

    async def set_quote(self, quote_id: str, data: Any, ttl: Any = 86400) -> None:
        await self.collection("quote").set(quote_id, data, ttl)

    async def delete_quote(self, quote_id: str) -> bool:
        return await self.collection("quote").delete(quote_id)

    async def list_quotes(self, filters: Mapping[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        return await self.collection("quote").list(filters, limit)

    # negotiations
    async def get_negotiation(self, proposal_id: str) -> dict[str, Any] | None:
        return await self.collection("negotiation").get(proposal_id)  # type: ignore[no-any-return]

    async def set_negotiation(self, proposal_id: str, data: Any) -> None:
        await self.collection("negotiation").set(proposal_id, data)

    async def delete_negotiation(self, proposal_id: str) -> bool:
        return await self.collection("negotiation").delete(proposal_id)

    async def list_negotiations(self, filters: Mapping[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        return await self.collection("negotiation").list(filters, limit)

    # model artifacts
    async def get_model_artifact(self, model_name: str) -> dict[str, Any] | None:
        return await self.collection("model_artifact").get(model_name)  # type: ignore[no-any-return]

    async def set_model_artifact(self, model_name: str, data: Any) -> None:
        await self.collection("model_artifact").set(model_name, data)

    async def delete_model_artifact(self, model_name: str) -> bool:
        return await self.collection("model_artifact").delete(model_name)

    async def list_model_artifacts(
        self, filters: Mapping[str, Any] | None = None, limit: int | None = None
    ) -> list[Any]:
        return await self.collection("model_artifact").list(filters, limit)

    # pacing snapshots
    async def get_pacing_snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        return await self.collection("pacing_snapshot").get(snapshot_id)  # type: ignore[no-any-return]

    async def set_pacing_snapshot(self, snapshot_id: str, data: Any) -> None:
        await self.collection("pacing_snapshot").set(snapshot_id, data)

    async def delete_pacing_snapshot(self, snapshot_id: str) -> bool:
        return await self.collection("pacing_snapshot").delete(snapshot_id)

    async def list_pacing_snapshots(
        self, filters: Mapping[str, Any] | None = None, limit: int | None = None
    ) -> list[Any]:
        return await self.collection("pacing_snapshot").list(filters, limit)
