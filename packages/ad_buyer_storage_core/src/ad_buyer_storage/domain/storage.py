"""``Storage``: what the buyer agent holds. The generic store, and the seed's domain on top.

Composition, not inheritance: a :class:`Storage` owns a :class:`~ad_buyer_storage.Store` (the
generic API, every method of which it offers by delegation, so agent code holds one object)
and builds the seed's 34 helpers (``get_deal``, ``set_session``, ``list_deals(filters)``...)
plus ``delete_*``/``list_*`` for every entity on :class:`EntityCollection`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar, cast, overload

from ad_buyer_storage.client.codec import DEFAULT_MAX_VALUE_BYTES
from ad_buyer_storage.client.store import TTL, Selection, Store, Updater, Versioned
from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage.contract.protocol import Capability, StorageBackend
from ad_buyer_storage.domain.collections import ENTITY_DEFAULT, EntityCollection, Page
from ad_buyer_storage.domain.entities import entity_by_name
from ad_buyer_storage.errors import (
    BudgetExceededError,
    InvalidInputError,
    KeyNotFoundError,
    UnsupportedOperationError,
    VersionConflictError,
)

__all__ = ["Storage"]

T = TypeVar("T")
D = TypeVar("D")
Filters = Mapping[str, Any] | None


class Storage:
    """The buyer agent's storage: a :class:`Store` and the domain helpers built on it.

    ``Storage(backend)`` makes the store; ``Storage(store)`` wraps an existing one.
    *default_ttls* overrides entities' default TTLs by entity name (the factory passes
    ``SESSION_DEFAULT_TTL`` for sessions). With *sliding_sessions* (``SESSION_SLIDING_TTL``),
    ``get_session`` renews the session's expiry to the TTL it was written with, atomically with
    the read.
    """

    def __init__(
        self,
        backend: StorageBackend | Store,
        *,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        default_ttls: Mapping[str, float | None] | None = None,
        describe: str | None = None,
        coalesce: bool = True,
        sliding_sessions: bool = False,
    ) -> None:
        self.sliding_sessions = sliding_sessions
        self.store = (
            backend
            if isinstance(backend, Store)
            else Store(backend, max_value_bytes=max_value_bytes, describe=describe, coalesce=coalesce)
        )
        self._default_ttls = dict(default_ttls or {})

    def __repr__(self) -> str:
        return repr(self.store).replace("<Store", "<Storage", 1)

    # -- the generic API, delegated --------------------------------------------------------
    @property
    def backend(self) -> StorageBackend:
        return self.store.backend

    @property
    def name(self) -> str:
        return self.store.name

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.store.capabilities

    def capabilities_for(self, key: str) -> frozenset[Capability]:
        return self.store.capabilities_for(key)

    @property
    def max_value_bytes(self) -> int:
        return self.store.max_value_bytes

    @property
    def is_open(self) -> bool:
        return self.store.is_open

    def require_open(self) -> StorageBackend:
        return self.store.require_open()

    async def connect(self) -> Storage:
        await self.store.connect()
        return self

    async def aclose(self) -> None:
        await self.store.aclose()

    async def disconnect(self) -> None:
        await self.store.aclose()

    async def __aenter__(self) -> Storage:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.store.aclose()

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
        return await self.store.get(key, default, model=model, refresh_ttl=refresh_ttl)

    async def set(
        self, key: str, value: Any, ttl: TTL = None, *, keep_ttl: bool = False, if_version: str | None = None
    ) -> str:
        return await self.store.set(key, value, ttl, keep_ttl=keep_ttl, if_version=if_version)

    async def set_if_absent(self, key: str, value: Any, ttl: TTL = None) -> bool:
        return await self.store.set_if_absent(key, value, ttl)

    async def delete(self, key: str) -> bool:
        return await self.store.delete(key)

    async def exists(self, key: str) -> bool:
        return await self.store.exists(key)

    async def get_versioned(self, key: str, *, model: type[Any] | None = None) -> Versioned | None:
        return await self.store.get_versioned(key, model=model)

    async def update(
        self,
        key: str,
        fn: Updater,
        *,
        default: Any = Store.NO_DEFAULT,
        ttl: TTL = None,
        max_attempts: int = 200,
    ) -> Any:
        return await self.store.update(key, fn, default=default, ttl=ttl, max_attempts=max_attempts)

    @overload
    async def incr(self, key: str, amount: int = 1, *, ttl: TTL = None) -> int: ...
    @overload
    async def incr(self, key: str, amount: Decimal, *, ttl: TTL = None) -> Decimal: ...
    async def incr(self, key: str, amount: int | Decimal = 1, *, ttl: TTL = None) -> int | Decimal:
        return await self.store.incr(key, amount, ttl=ttl)

    @overload
    async def get_many(self, keys: Iterable[str], *, model: None = None) -> dict[str, Any]: ...
    @overload
    async def get_many(self, keys: Iterable[str], *, model: type[T]) -> dict[str, T]: ...
    async def get_many(self, keys: Iterable[str], *, model: type[Any] | None = None) -> dict[str, Any]:
        return await self.store.get_many(keys, model=model)

    async def set_many(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], ttl: TTL = None) -> None:
        await self.store.set_many(items, ttl)

    async def delete_many(self, keys: Iterable[str]) -> int:
        return await self.store.delete_many(keys)

    def scan(self, pattern: str = "*", *, batch_size: int = Store.SCAN_BATCH) -> AsyncIterator[str]:
        return self.store.scan(pattern, batch_size=batch_size)

    async def keys(self, pattern: str = "*") -> list[str]:
        return await self.store.keys(pattern)

    async def select(
        self, prefix: str, filters: Mapping[str, Any] | None = None, *, after: str | None = None,
        limit: int | None = None,
    ) -> Selection:  # fmt: skip
        return await self.store.select(prefix, filters, after=after, limit=limit)

    async def count(self, pattern: str = "*") -> int:
        return await self.store.count(pattern)

    async def delete_pattern(self, pattern: str) -> int:
        return await self.store.delete_pattern(pattern)

    async def clear(self) -> int:
        return await self.store.clear()

    async def ttl(self, key: str) -> float | None:
        return await self.store.ttl(key)

    async def expire(self, key: str, ttl: TTL) -> bool:
        return await self.store.expire(key, ttl)

    async def persist(self, key: str) -> bool:
        return await self.store.persist(key)

    async def publish(self, channel: str, message: Any) -> int:
        return await self.store.publish(channel, message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[Any]]:
        async with self.store.subscribe(channel) as messages:
            yield messages

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.store.transaction() as tx:
            yield tx

    async def transact(self, fn: Callable[[Transaction], Awaitable[T]], *, attempts: int = 10) -> T:
        return await self.store.transact(fn, attempts=attempts)

    async def ping(self) -> float:
        return await self.store.ping()

    async def info(self) -> dict[str, object]:
        return await self.store.info()

    # -- the domain ------------------------------------------------------------------------
    def collection(self, name: str) -> EntityCollection:
        """The helpers of any declared entity, by name (``"deal"``, ``"product"``...)."""
        entity = entity_by_name(name)
        return EntityCollection(self.store, entity, self._default_ttls.get(name, entity.default_ttl))

    # deals
    async def get_deal(self, deal_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self.collection("deal").get(deal_id))

    async def set_deal(self, deal_id: str, deal_data: Any) -> None:
        await self.collection("deal").set(deal_id, deal_data)

    async def delete_deal(self, deal_id: str) -> bool:
        return await self.collection("deal").delete(deal_id)

    async def list_deals(self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None) -> Page:
        return await self.collection("deal").list(filters, limit, cursor=cursor)

    async def update_deal(self, deal_id: str, fn: Updater) -> Any:
        """Atomically apply ``fn(deal) -> deal`` (for example adding to ``spend``)."""
        return await self.collection("deal").update(deal_id, fn)

    # campaigns
    async def get_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self.collection("campaign").get(campaign_id))

    async def set_campaign(self, campaign_id: str, data: Any) -> None:
        await self.collection("campaign").set(campaign_id, data)

    async def delete_campaign(self, campaign_id: str) -> bool:
        return await self.collection("campaign").delete(campaign_id)

    async def list_campaigns(
        self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None
    ) -> Page:
        return await self.collection("campaign").list(filters, limit, cursor=cursor)

    # bookings: several entities changed together (transactions)
    async def book_order(
        self, order_id: str, order: Any, *, campaign_id: str, amount: Decimal | int | str, attempts: int = 10
    ) -> dict[str, Any]:
        """Book *order* against the campaign's budget, atomically, from any number of processes:
        the order is written and the campaign's ``spent`` raised by *amount* together, iff
        ``spent + amount <= budget`` (fields of the campaign, decimal text); otherwise
        :class:`~ad_buyer_storage.errors.BudgetExceededError` and nothing is written. An order
        id is booked once (:class:`~ad_buyer_storage.errors.VersionConflictError` after). Returns
        the campaign as booked."""
        cost = _amount(amount)
        if cost <= 0:
            raise InvalidInputError(f"a booking costs a positive amount, not {amount!r}")
        campaigns, orders = self.collection("campaign"), self.collection("order")
        campaign_key, order_key = campaigns.entity.key(campaign_id), orders.entity.key(order_id)

        async def book(tx: Transaction) -> dict[str, Any]:
            campaign = await tx.get(campaign_key)
            if not isinstance(campaign, dict):
                raise KeyNotFoundError(f"campaign {campaign_id!r} does not exist")
            if await tx.exists(order_key):
                raise VersionConflictError(f"order {order_id!r} is already booked")
            spent = _amount(campaign.get("spent", "0")) + cost
            if spent > _amount(campaign.get("budget", "0")):
                raise BudgetExceededError(
                    f"booking {cost} on campaign {campaign_id!r} would spend {spent} of {campaign.get('budget')}"
                )
            booked = {**campaign, "spent": str(spent)}
            tx.set(campaign_key, booked, keep_ttl=True)
            tx.set(order_key, order, orders.default_ttl)
            return booked

        return await self.transact(book, attempts=attempts)

    async def record_negotiation(
        self, proposal_id: str, negotiation: Any, *, deal_id: str, status: str, attempts: int = 10
    ) -> dict[str, Any]:
        """Store a negotiation and move its deal to *status*, together or not at all. Returns the deal."""
        deals, negotiations = self.collection("deal"), self.collection("negotiation")
        deal_key, negotiation_key = deals.entity.key(deal_id), negotiations.entity.key(proposal_id)

        async def record(tx: Transaction) -> dict[str, Any]:
            deal = await tx.get(deal_key)
            if not isinstance(deal, dict):
                raise KeyNotFoundError(f"deal {deal_id!r} does not exist")
            moved = {**deal, "status": status}
            tx.set(deal_key, moved, keep_ttl=True)
            tx.set(negotiation_key, negotiation)
            return moved

        return await self.transact(record, attempts=attempts)

    # orders
    async def get_order(self, order_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self.collection("order").get(order_id))

    async def set_order(self, order_id: str, data: Any) -> None:
        await self.collection("order").set(order_id, data)

    async def delete_order(self, order_id: str) -> bool:
        return await self.collection("order").delete(order_id)

    async def list_orders(
        self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None
    ) -> Page:
        return await self.collection("order").list(filters, limit, cursor=cursor)

    # sessions (ephemeral: SESSION_DEFAULT_TTL when ttl is None)
    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        """The session; with sliding sessions, its expiry renewed to the TTL it was written with
        (on a store that cannot recall that TTL, the mirror's for one: to the session default)."""
        sessions = self.collection("session")
        if not self.sliding_sessions or sessions.default_ttl is None:
            return cast(dict[str, Any] | None, await sessions.get(session_id))
        try:
            return cast(dict[str, Any] | None, await sessions.get(session_id, refresh_ttl=True))
        except UnsupportedOperationError:  # raised before any I/O: this store cannot recall it
            return cast(dict[str, Any] | None, await sessions.get(session_id, refresh_ttl=sessions.default_ttl))

    async def set_session(self, session_id: str, data: Any, ttl: TTL = None) -> None:
        """Store a session; without *ttl*, it expires after ``SESSION_DEFAULT_TTL``."""
        await self.collection("session").set(session_id, data, ENTITY_DEFAULT if ttl is None else ttl)

    async def delete_session(self, session_id: str) -> bool:
        return await self.collection("session").delete(session_id)

    async def list_sessions(
        self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None
    ) -> Page:
        return await self.collection("session").list(filters, limit, cursor=cursor)

    # buyer -> sessions index (atomic: concurrent adds never lose an id)
    async def add_session_to_index(self, buyer_id: str, session_id: str) -> list[str]:
        """Record *session_id* under *buyer_id*; return the buyer's session ids."""
        index = self.collection("session_index")
        return cast(list[str], await index.update(buyer_id, lambda ids: sorted({*ids, session_id}), default=[]))

    async def remove_session_from_index(self, buyer_id: str, session_id: str) -> list[str]:
        index = self.collection("session_index")
        return cast(
            list[str], await index.update(buyer_id, lambda ids: [i for i in ids if i != session_id], default=[])
        )

    async def get_session_index(self, buyer_id: str) -> list[str]:
        return cast(list[str], await self.collection("session_index").get(buyer_id) or [])

    async def list_buyer_sessions(self, buyer_id: str) -> list[Any]:
        """The buyer's live sessions, read in one bulk round trip (expired ones skipped)."""
        ids = await self.get_session_index(buyer_id)
        sessions = self.collection("session")
        found = await self.store.get_many([sessions.entity.key(i) for i in ids])
        return list(found.values())

    # conversions
    async def get_conversion(self, event_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self.collection("conversion").get(event_id))

    async def set_conversion(self, event_id: str, data: Any) -> None:
        await self.collection("conversion").set(event_id, data)

    async def delete_conversion(self, event_id: str) -> bool:
        return await self.collection("conversion").delete(event_id)

    async def list_conversions(
        self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None
    ) -> Page:
        return await self.collection("conversion").list(filters, limit, cursor=cursor)

    # optimization decisions
    async def get_optimization_decision(self, decision_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self.collection("optimization_decision").get(decision_id))

    async def set_optimization_decision(self, decision_id: str, data: Any) -> None:
        await self.collection("optimization_decision").set(decision_id, data)

    async def delete_optimization_decision(self, decision_id: str) -> bool:
        return await self.collection("optimization_decision").delete(decision_id)

    async def list_optimization_decisions(
        self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None
    ) -> Page:
        return await self.collection("optimization_decision").list(filters, limit, cursor=cursor)

    # experiments
    async def get_experiment(self, experiment_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self.collection("experiment").get(experiment_id))

    async def set_experiment(self, experiment_id: str, data: Any) -> None:
        await self.collection("experiment").set(experiment_id, data)

    async def delete_experiment(self, experiment_id: str) -> bool:
        return await self.collection("experiment").delete(experiment_id)

    async def list_experiments(
        self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None
    ) -> Page:
        return await self.collection("experiment").list(filters, limit, cursor=cursor)

    # supply path scores
    async def get_supply_path_score(self, supply_path_hash: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self.collection("supply_path_score").get(supply_path_hash))

    async def set_supply_path_score(self, supply_path_hash: str, data: Any) -> None:
        await self.collection("supply_path_score").set(supply_path_hash, data)

    async def delete_supply_path_score(self, supply_path_hash: str) -> bool:
        return await self.collection("supply_path_score").delete(supply_path_hash)

    async def list_supply_path_scores(
        self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None
    ) -> Page:
        return await self.collection("supply_path_score").list(filters, limit, cursor=cursor)

    # quotes (24 h TTL by default, as in the seed)
    async def get_quote(self, quote_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self.collection("quote").get(quote_id))

    async def set_quote(self, quote_id: str, data: Any, ttl: TTL = 86400) -> None:
        await self.collection("quote").set(quote_id, data, ttl)

    async def delete_quote(self, quote_id: str) -> bool:
        return await self.collection("quote").delete(quote_id)

    async def list_quotes(
        self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None
    ) -> Page:
        return await self.collection("quote").list(filters, limit, cursor=cursor)

    # negotiations
    async def get_negotiation(self, proposal_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self.collection("negotiation").get(proposal_id))

    async def set_negotiation(self, proposal_id: str, data: Any) -> None:
        await self.collection("negotiation").set(proposal_id, data)

    async def delete_negotiation(self, proposal_id: str) -> bool:
        return await self.collection("negotiation").delete(proposal_id)

    async def list_negotiations(
        self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None
    ) -> Page:
        return await self.collection("negotiation").list(filters, limit, cursor=cursor)

    # model artifacts
    async def get_model_artifact(self, model_name: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self.collection("model_artifact").get(model_name))

    async def set_model_artifact(self, model_name: str, data: Any) -> None:
        await self.collection("model_artifact").set(model_name, data)

    async def delete_model_artifact(self, model_name: str) -> bool:
        return await self.collection("model_artifact").delete(model_name)

    async def list_model_artifacts(
        self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None
    ) -> Page:
        return await self.collection("model_artifact").list(filters, limit, cursor=cursor)

    # pacing snapshots
    async def get_pacing_snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        return cast(dict[str, Any] | None, await self.collection("pacing_snapshot").get(snapshot_id))

    async def set_pacing_snapshot(self, snapshot_id: str, data: Any) -> None:
        await self.collection("pacing_snapshot").set(snapshot_id, data)

    async def delete_pacing_snapshot(self, snapshot_id: str) -> bool:
        return await self.collection("pacing_snapshot").delete(snapshot_id)

    async def list_pacing_snapshots(
        self, filters: Filters = None, limit: int | None = None, *, cursor: str | None = None
    ) -> Page:
        return await self.collection("pacing_snapshot").list(filters, limit, cursor=cursor)


def _amount(value: object) -> Decimal:
    """Money: a Decimal, an int or decimal text; never a binary float."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise InvalidInputError(f"amounts are Decimal, int or decimal text, not {type(value).__name__}")
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise InvalidInputError(f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise InvalidInputError(f"not a finite amount: {value!r}")
    return amount
