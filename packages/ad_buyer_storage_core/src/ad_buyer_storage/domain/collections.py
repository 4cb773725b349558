"""One entity's records on a store: get, set, delete, update, list with JSON filters.

Lists go through :meth:`Store.select`: evaluated inside the store where it can (an index range
scan on SQLite and PostgreSQL), else by bulk reads (one round trip per 500 values); filters
match top-level fields by JSON equality (:func:`same_json`): an unknown field matches nothing.
Lists page by key: each returns ``next_cursor``.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Iterable, Mapping
from typing import Any

from ad_buyer_storage.client.codec import validate_as
from ad_buyer_storage.client.filters import same_json
from ad_buyer_storage.client.store import TTL, Store, Updater
from ad_buyer_storage.contract.glob import escape_glob
from ad_buyer_storage.domain.entities import Entity
from ad_buyer_storage.errors import InvalidInputError

__all__ = ["ENTITY_DEFAULT", "DefaultTTL", "EntityCollection", "Page", "same_json"]


class DefaultTTL(enum.Enum):
    ENTITY = "the entity's default TTL"


#: ``ttl=ENTITY_DEFAULT``: the entity's default TTL (SESSION_DEFAULT_TTL for sessions...).
ENTITY_DEFAULT = DefaultTTL.ENTITY


class Page(list[Any]):
    """A page of records: a list, and ``next_cursor`` for the page after it (None: the last)."""

    def __init__(self, items: Iterable[Any] = (), next_cursor: str | None = None) -> None:
        super().__init__(items)
        self.next_cursor = next_cursor


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, prefix: str) -> str | None:
    """The key a cursor stands for; refused if it is not one of this entity's cursors."""
    if cursor is None:
        return None
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, TypeError, UnicodeDecodeError):
        key = None
    if key is None or not key.startswith(prefix):
        raise InvalidInputError("not a cursor of this listing (pass the next_cursor a page gave)")
    return key


class EntityCollection:
    """get/set/delete/list/update for one entity on one store."""

    def __init__(self, store: Store, entity: Entity, default_ttl: float | None) -> None:
        self.store = store
        self.entity = entity
        self.default_ttl = default_ttl

    async def get(self, entity_id: str, *, model: type[Any] | None = None, refresh_ttl: TTL | bool = None) -> Any:
        """The record, or None; ``refresh_ttl=`` renews its expiry with the read (see ``Store.get``)."""
        return await self.store.get(self.entity.key(entity_id), model=model, refresh_ttl=refresh_ttl)

    async def set(self, entity_id: str, data: Any, ttl: TTL | DefaultTTL = ENTITY_DEFAULT) -> None:
        """Store *data*; *ttl* defaults to the entity's default TTL (None = never expires)."""
        await self.store.set(self.entity.key(entity_id), data, self.default_ttl if isinstance(ttl, DefaultTTL) else ttl)

    async def delete(self, entity_id: str) -> bool:
        return await self.store.delete(self.entity.key(entity_id))

    async def update(self, entity_id: str, fn: Updater, *, default: Any = Store.NO_DEFAULT) -> Any:
        """Atomic read-modify-write of one record (optimistic concurrency, retried on conflict)."""
        key = self.entity.key(entity_id)
        if default is Store.NO_DEFAULT:
            return await self.store.update(key, fn)
        return await self.store.update(key, fn, default=default, ttl=self.default_ttl)

    async def ids(self) -> list[str]:
        """Every live id, sorted."""
        cut = len(self.entity.prefix)
        return [key[cut:] for key in await self.store.keys(escape_glob(self.entity.prefix) + "*")]

    async def list(
        self,
        filters: Mapping[str, Any] | None = None,
        limit: int | None = None,
        *,
        model: type[Any] | None = None,
        cursor: str | None = None,
    ) -> Page:
        """Records in id order whose top-level fields equal every item of *filters* (JSON
        equality), at most *limit*, after *cursor*. The result is a list with ``next_cursor``:
        pass it as ``cursor=`` for the next page (None once nothing is left)."""
        after = _decode_cursor(cursor, self.entity.prefix)
        if limit == 0 and not isinstance(limit, bool):
            return Page([], cursor)
        selection = await self.store.select(self.entity.prefix, filters, after=after, limit=limit)
        values = [value for _, value in selection.rows]
        if model is not None:
            values = [validate_as(model, v) for v in values]
        last = selection.last_key
        return Page(values, None if last is None else _encode_cursor(last))
