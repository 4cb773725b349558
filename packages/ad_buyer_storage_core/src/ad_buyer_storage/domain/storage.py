"""``Storage``: what the buyer agent holds. The generic store, and the seed's domain on top.

Composition, not inheritance: a :class:`Storage` *has* a :class:`~ad_buyer_storage.Store` and
offers its generic API (declared once, in :class:`~ad_buyer_storage.client.api.StoreAPI`) by
delegation, through the generated mixin :class:`~ad_buyer_storage.domain._generated.StorageAPI`,
which also holds the seed's plain per-entity helpers (``get_deal``, ``list_orders``...). What is
written here is what is the domain's own: the lifecycle returning the domain object, sessions'
TTLs, the session index, bookings and negotiations in transactions.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, cast

from ad_buyer_storage.client.codec import DEFAULT_MAX_VALUE_BYTES
from ad_buyer_storage.client.store import TTL, Store, Updater
from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage.contract.protocol import StorageBackend
from ad_buyer_storage.domain._generated import StorageAPI
from ad_buyer_storage.domain.collections import ENTITY_DEFAULT, EntityCollection
from ad_buyer_storage.domain.entities import entity_by_name
from ad_buyer_storage.errors import (
    BudgetExceededError,
    InvalidInputError,
    KeyNotFoundError,
    UnsupportedOperationError,
    VersionConflictError,
)

__all__ = ["Storage"]


class Storage(StorageAPI):
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

    # -- the lifecycle: the store's, returning the domain object -----------------------------
    async def connect(self) -> Self:
        """Connect the store (once; later calls return at once). Returns ``self``."""
        await self.store.connect()
        return self

    async def aclose(self) -> None:
        """Close the store. Idempotent; the object cannot be reopened."""
        await self.store.aclose()

    async def disconnect(self) -> None:
        """The same as :meth:`aclose` (the seed's name)."""
        await self.store.aclose()

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.store.aclose()

    # -- the domain ------------------------------------------------------------------------
    def collection(self, name: str) -> EntityCollection:
        """The helpers of any declared entity, by name (``"deal"``, ``"product"``...)."""
        entity = entity_by_name(name)
        return EntityCollection(self.store, entity, self._default_ttls.get(name, entity.default_ttl))

    # deals (get_deal, set_deal, delete_deal, list_deals and the other entities' plain helpers
    # are generated in StorageAPI)
    async def update_deal(self, deal_id: str, fn: Updater) -> Any:
        """Atomically apply ``fn(deal) -> deal`` (for example adding to ``spend``)."""
        return await self.collection("deal").update(deal_id, fn)

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

    # quotes (24 h TTL by default, as in the seed)
    async def set_quote(self, quote_id: str, data: Any, ttl: TTL = 86400) -> None:
        await self.collection("quote").set(quote_id, data, ttl)


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
