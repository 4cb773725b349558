"""Ordered selection with range bounds and a limit: the one place the facade lists rows.

Upstream's lists are ``SELECT ... WHERE a = ? AND created_at > ? ORDER BY created_at DESC
LIMIT ?``. Core's ``Store.select(prefix, filters, after=, limit=)`` answers equality filters in
key order only, so until core can order, this module asks it for every row matching the
equality filters under the prefix, then applies the range bounds, the order (SQLite's: NULL
first ascending, numbers before text; ties broken by insertion order, ``_seq``, ascending or
descending as upstream's query plan gives them) and the limit here. Time and memory grow with
the rows matching the equality filters.

TODO(core select): replace :func:`select_rows`'s body by one call of
``Store.select(prefix, filters, *, order_by: str, descending: bool = False,
lower: Bound | None = None, upper: Bound | None = None, limit: int | None = None,
after: Cursor | None = None) -> Selection`` (``Bound = (value, inclusive)``, ties by key, keyset
cursor), pushed into SQLite and PostgreSQL with an index per ordered field; every caller goes
through this function, so the switch is local.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from ad_buyer_storage.client.store import Store

__all__ = ["Range", "select_rows", "sqlite_order"]

SEQ = "_seq"


class Range(NamedTuple):
    """``column op value`` with op one of ``>``, ``>=``, ``<``, ``<=`` (SQL semantics: a NULL
    column satisfies none)."""

    column: str
    op: str
    value: Any


def sqlite_order(value: Any) -> tuple[int, Any]:
    """A sort key ordering values as SQLite does: NULL, then numbers, then text."""
    if value is None:
        return (0, 0)
    if isinstance(value, (bool, int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, repr(value))


def _holds(row: Mapping[str, Any], bound: Range) -> bool:
    value = row.get(bound.column)
    if value is None or bound.value is None:
        return False
    left, right = sqlite_order(value), sqlite_order(bound.value)
    if bound.op == ">":
        return left > right
    if bound.op == ">=":
        return left >= right
    if bound.op == "<":
        return left < right
    if bound.op == "<=":
        return left <= right
    raise ValueError(f"unknown range operator {bound.op!r}")


async def select_rows(
    store: Store,
    prefix: str,
    *,
    equal: Mapping[str, Any] | None = None,
    ranges: Sequence[Range] = (),
    order_by: str | None = None,
    descending: bool = False,
    ties_descending: bool = False,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Rows under *prefix* whose columns equal *equal* and satisfy *ranges*, ordered by
    *order_by* (ties: insertion order, reversed with *ties_descending*), at most *limit*
    (SQLite's: a negative limit is none). Rows are returned with their hidden fields."""
    if limit is not None and limit == 0:
        return []
    selection = await store.select(prefix, dict(equal) if equal else None)
    rows: list[dict[str, Any]] = [value for _, value in selection.rows if isinstance(value, dict)]
    if ranges:
        rows = [row for row in rows if all(_holds(row, bound) for bound in ranges)]
    rows.sort(key=lambda row: int(row.get(SEQ, 0)), reverse=ties_descending)
    if order_by is not None:
        rows.sort(key=lambda row: sqlite_order(row.get(order_by)), reverse=descending)
    if limit is not None and limit > 0:
        rows = rows[:limit]
    return rows
