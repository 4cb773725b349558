"""Filters on JSON records: top-level fields compared by JSON equality.

``{"status": "paused", "active": True}`` matches a JSON object whose ``status`` is the string
``"paused"`` and whose ``active`` is ``true``: a bool equals only a bool (``True`` is not
``1``), numbers compare by value (``1`` is ``1.0``), strings, null, arrays and objects only the
same JSON. A field the record lacks matches nothing; a record that is not an object matches
no filter. Filter values are compared in their JSON form (``Decimal("10.50")`` finds
``"10.50"``, an ``Enum`` its value). An operator-shaped value (``{"cpm": {"$gt": 10}}``: an
object with a ``$`` key) is refused with :class:`~ad_buyer_storage.errors.InvalidInputError`
rather than compared by equality (which would silently match nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ad_buyer_storage.client.codec import to_jsonable
from ad_buyer_storage.contract.protocol import Filter
from ad_buyer_storage.errors import InvalidInputError

__all__ = ["matches", "pushable", "same_json", "wanted"]

_SAFE_INT = 2**53  # beyond, a float and an int may compare differently in a store than here


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


def wanted(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    """The filters in JSON form; refused (before any I/O) if not a mapping of str fields."""
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        raise InvalidInputError(f"filters must be a mapping of field to value, not {type(filters).__name__}")
    if not all(isinstance(field, str) for field in filters):
        raise InvalidInputError("filter fields must be str")
    converted: dict[str, Any] = to_jsonable(dict(filters))
    for field, value in converted.items():
        if isinstance(value, dict) and any(isinstance(k, str) and k.startswith("$") for k in value):
            raise InvalidInputError(
                f"filter {field!r}: {sorted(value)} looks like an operator; filters compare top-level fields "
                "by JSON equality only, so it would match nothing"
            )
    return converted


def matches(value: Any, filters: Mapping[str, Any]) -> bool:
    """Whether the record *value* matches every filter (in JSON form)."""
    if not isinstance(value, dict):
        return False
    return all(field in value and same_json(value[field], expected) for field, expected in filters.items())


def pushable(filters: Mapping[str, Any]) -> list[Filter]:
    """The filters a store can evaluate: JSON scalars (numbers within +-2**53)."""
    out: list[Filter] = []
    for field, value in filters.items():
        if (
            value is None
            or isinstance(value, (str, bool))
            or (isinstance(value, (int, float)) and -_SAFE_INT <= value <= _SAFE_INT)
        ):
            out.append((field, value))
    return out
