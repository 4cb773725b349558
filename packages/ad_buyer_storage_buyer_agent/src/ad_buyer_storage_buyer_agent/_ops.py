"""Upstream's statements as operations on the generic store, each one transaction.

``INSERT`` (with the table's constraints checked), ``SELECT`` by key, ``UPDATE``/``DELETE`` by
key or by column values, each read-check-write in one :meth:`Store.transact`: two processes
never both insert one id, never lose an update of each other's, never break a UNIQUE or
FOREIGN KEY constraint. The stores (``deal_store``...) are thin on top of these.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage_buyer_agent import _runtime
from ad_buyer_storage_buyer_agent._backing import Backing, acquire, parse_url
from ad_buyer_storage_buyer_agent._rows import SEQ, Table, coerce
from ad_buyer_storage_buyer_agent._select import Range, select_rows
from ad_buyer_storage_buyer_agent.errors import ProgrammingError
from ad_buyer_storage_buyer_agent.schema import TABLES

__all__ = ["Connected", "delete", "get", "insert", "rows", "update", "update_where"]

T = TypeVar("T")
#: Attempts of one statement's transaction before its conflict comes out (as
#: ``sqlite3.OperationalError``, SQLite's "database is locked").
ATTEMPTS = 50


async def transact(backing: Backing, fn: Callable[[Transaction], Awaitable[T]]) -> T:
    return await backing.store.transact(fn, attempts=ATTEMPTS)


def equal_filters(table: Table, equal: Mapping[str, Any]) -> dict[str, Any]:
    """Filter values compared as SQLite compares them with the column (its affinity applied)."""
    return {name: coerce(value, table.by_name[name].affinity) for name, value in equal.items()}


async def insert(backing: Backing, table_name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """``INSERT INTO table (given...)``; the stored row (hidden fields included)."""
    table = TABLES[table_name]

    async def run(tx: Transaction) -> dict[str, Any]:
        row = table.build(given)
        await table.insert(tx, backing, TABLES, row)
        return row

    return await transact(backing, run)


async def get(backing: Backing, table_name: str, *pk: Any) -> dict[str, Any] | None:
    """``SELECT * FROM table WHERE pk = ?`` (tables keyed by their primary key)."""
    table = TABLES[table_name]
    value = await backing.store.get(
        table.pk_key(backing, [coerce(v, table.by_name[c].affinity) for c, v in zip(table.pk, pk, strict=True)])
    )
    return table.public(value) if isinstance(value, dict) else None


async def update(
    backing: Backing,
    table_name: str,
    pk: Sequence[Any],
    updates: Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any] | None],
) -> bool:
    """``UPDATE table SET ... WHERE pk = ?``; False if no such row. *updates* may be a function
    of the current row (returning None: no change), run inside the transaction."""
    table = TABLES[table_name]
    key = table.pk_key(backing, list(pk))

    async def run(tx: Transaction) -> bool:
        row = await tx.get(key)
        if not isinstance(row, dict):
            return False
        change = updates(table.public(row)) if callable(updates) else updates
        if change is None:
            return False
        tx.set(key, table.changed(row, change))
        return True

    return await transact(backing, run)


async def delete(backing: Backing, table_name: str, *pk: Any) -> bool:
    """``DELETE FROM table WHERE pk = ?``; whether a row was there."""
    table = TABLES[table_name]
    return bool(await backing.store.delete(table.pk_key(backing, list(pk))))


async def rows(
    backing: Backing,
    table_name: str,
    *,
    equal: Mapping[str, Any] | None = None,
    parent: Sequence[Any] = (),
    ranges: Sequence[Range] = (),
    order_by: str | None = None,
    descending: bool = False,
    ties_descending: bool = False,
    limit: int | None = None,
    public: bool = True,
) -> list[dict[str, Any]]:
    """``SELECT * FROM table WHERE ... ORDER BY ... LIMIT ?``."""
    table = TABLES[table_name]
    parent = [coerce(v, table.by_name[c].affinity) for c, v in zip(table.parent, parent, strict=False)]
    found = await select_rows(
        backing.store,
        table.prefix(backing, parent),
        equal=equal_filters(table, equal or {}),
        ranges=ranges,
        order_by=order_by,
        descending=descending,
        ties_descending=ties_descending,
        limit=limit,
    )
    return [table.public(r) for r in found] if public else found


async def update_where(
    backing: Backing, table_name: str, equal: Mapping[str, Any], updates: Mapping[str, Any], *, latest: bool = False
) -> int:
    """``UPDATE table SET ... WHERE col = ?`` (only the last inserted such row with *latest*);
    how many rows changed. The rows are found first, then changed in one transaction that
    rereads each: a row changed meanwhile makes it run again."""
    table = TABLES[table_name]
    found = await rows(backing, table_name, equal=equal, public=False)
    if latest and found:
        found = [max(found, key=lambda r: int(r[SEQ]))]
    keys = [table.key(backing, r) for r in found]
    if not keys:
        return 0

    async def run(tx: Transaction) -> int:
        current = await tx.get_many(keys)
        changed = 0
        for key in keys:
            row = current.get(key)
            if isinstance(row, dict):
                tx.set(key, table.changed(row, updates))
                changed += 1
        return changed

    return await transact(backing, run)


async def delete_where(backing: Backing, table_name: str, equal: Mapping[str, Any]) -> int:
    """``DELETE FROM table WHERE col = ?``; how many rows were deleted."""
    table = TABLES[table_name]
    found = await rows(backing, table_name, equal=equal, public=False)
    keys = [table.key(backing, r) for r in found]
    return await backing.store.delete_many(keys) if keys else 0


class Connected:
    """What every facade store shares: upstream's constructor, ``connect``/``disconnect``,
    ``_parse_url``, a ``_lock`` and ``_conn`` (here the instance's backing; None when
    disconnected, as upstream's connection is)."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._db_path = self._parse_url(database_url)
        self._lock = threading.Lock()
        self._conn: Backing | None = None

    def __repr__(self) -> str:
        state = "connected" if self._conn is not None else "disconnected"
        return f"<{type(self).__name__} {state}>"

    @staticmethod
    def _parse_url(database_url: str) -> str:
        """Upstream's URL reading: ``sqlite:///x`` is ``x``; ``sqlite:///:memory:`` is ``:memory:``."""
        return parse_url(database_url)

    def connect(self) -> None:
        """Open (or join) the store this instance's URL names. Connecting again is a no-op."""
        with self._lock:
            if self._conn is None:
                self._conn = _runtime.call(acquire(self._database_url))

    def disconnect(self) -> None:
        """Release the store; a private ``:memory:`` instance's rows are dropped."""
        with self._lock:
            backing, self._conn = self._conn, None
        if backing is not None:
            _runtime.call(backing.release())

    def _run(self, op: Callable[[Backing], Coroutine[Any, Any, T]]) -> T:
        return run_on(self._conn, op)


def run_on(backing: Backing | None, op: Callable[[Backing], Coroutine[Any, Any, T]]) -> T:
    """Run ``op(backing)`` on the facade loop, blocking; a closed store is SQLite's error."""
    if backing is None:
        raise ProgrammingError("Cannot operate on a closed database.")
    return _runtime.call(op(backing))
