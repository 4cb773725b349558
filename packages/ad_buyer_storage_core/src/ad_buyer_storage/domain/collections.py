"""One entity's records on a store: get, set, delete, update, list with JSON filters.

Lists are done with bulk reads (one round trip per 500 values, never one per key) and
filters match top-level fields by JSON equality (:func:`same_json`): an unknown field matches
nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from ad_buyer_storage.client.codec import to_jsonable, validate_as
from ad_buyer_storage.client.store import TTL, Store, Updater
from ad_buyer_storage.contract.glob import escape_glob
from ad_buyer_storage.domain.entities import Entity
from ad_buyer_storage.errors import InvalidInputError

__all__ = ["ENTITY_DEFAULT", "DefaultTTL", "EntityCollection", "same_json"]

_LIST_BATCH = 500


class DefaultTTL(enum.Enum):
    ENTITY = "the entity's default TTL"


#: ``ttl=ENTITY_DEFAULT``: the entity's default TTL (SESSION_DEFAULT_TTL for sessions...).
ENTITY_DEFAULT = DefaultTTL.ENTITY


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
        self, filters: Mapping[str, Any] | None = None, limit: int | None = None, *, model: type[Any] | None = None
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
        keys = await self.store.keys(escape_glob(self.entity.prefix) + "*")
        for start in range(0, len(keys), _LIST_BATCH):
            chunk = keys[start : start + _LIST_BATCH]
            values = await self.store.get_many(chunk)
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
            return [validate_as(model, v) for v in out]
        return out
