"""Writes: a batch of them as few statements as can apply it (one ``unnest`` upsert per kind,
one insert for many set-if-absent writes, one update per versioned write), and the commit of a
transaction as one ``SERIALIZABLE`` transaction."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ad_buyer_storage.contract.protocol import Check, Condition, Write
from ad_buyer_storage.kit.batches import each_or_error, in_bulk_or_each, results_or_raise

from .errors import ROLLED_BACK
from .statements import Statements

__all__ = ["Writes", "columns"]

#: ``write_query(method, sql, *args, idempotent=...)``: ``connection.<method>(sql, *args)``
#: through the backend's retry policy, as a write.
WriteQuery = Callable[..., Awaitable[Any]]


def columns(rows: Sequence[Write]) -> tuple[list[str], list[str], list[str], list[int | None]]:
    """The arrays ``unnest`` takes: keys, values, versions, TTLs."""
    return [w.key for w in rows], [w.value for w in rows], [w.version for w in rows], [w.ttl_ms for w in rows]


class _Conflict(Exception):
    """A checked version differed: roll the transaction back."""


class Writes:
    def __init__(self, sql: Statements, write_query: WriteQuery) -> None:
        self._sql, self._query = sql, write_query

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        outcomes: list[object] = [False] * len(writes)

        async def each_in_bulk(indexes: list[int], bulk: Any, one: Any) -> None:
            rows = [writes[i] for i in indexes]
            for i, outcome in zip(indexes, await in_bulk_or_each(rows, bulk, one), strict=True):
                outcomes[i] = outcome

        for keep in (False, True):
            batch = [i for i, w in enumerate(writes) if w.condition is Condition.ALWAYS and w.keep_ttl is keep]
            if batch:
                sql = self._sql.upsert_many_keep_ttl if keep else self._sql.upsert_many
                await each_in_bulk(
                    batch, functools.partial(self._upsert, sql), functools.partial(self._upsert_row, sql)
                )
        absent = [i for i, w in enumerate(writes) if w.condition is Condition.IF_ABSENT]
        if len(absent) > 1 and len({writes[i].key for i in absent}) == len(absent):
            # Many set-if-absent writes (a bulk copy): one statement, the applied keys returned.
            await each_in_bulk(absent, self._insert_many_if_absent, self._insert_if_absent)
        else:
            for i in absent:
                outcomes[i] = await each_or_error(functools.partial(self._insert_if_absent, writes[i]))
        for i, w in enumerate(writes):
            if w.condition is Condition.IF_VERSION:
                outcomes[i] = await each_or_error(functools.partial(self._update_if_version, w))
        return results_or_raise(outcomes)

    async def _upsert(self, sql: str, rows: Sequence[Write]) -> list[bool]:
        # One statement for all of them (unnest); idempotent: the same value and version again.
        await self._query("execute", sql, *columns(rows), idempotent=True)
        return [True] * len(rows)

    async def _upsert_row(self, sql: str, row: Write) -> bool:
        (applied,) = await self._upsert(sql, (row,))
        return applied

    async def _insert_many_if_absent(self, rows: Sequence[Write]) -> list[bool]:
        found = await self._query("fetch", self._sql.insert_many_if_absent, *columns(rows), idempotent=False)
        applied = {row[0] for row in found}
        return [w.key in applied for w in rows]

    async def _insert_if_absent(self, w: Write) -> bool:
        args = (w.key, w.value, w.version, w.ttl_ms)
        return bool(await self._query("fetchval", self._sql.insert_if_absent, *args, idempotent=False))

    async def _update_if_version(self, w: Write) -> bool:
        args = (w.key, w.value, w.version, w.ttl_ms, w.keep_ttl, w.expected_version)
        return bool(await self._query("fetchval", self._sql.update_if_version, *args, idempotent=False))

    async def commit(
        self, conn: Any, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str], foreign: list[int]
    ) -> bool:
        """On *conn*, one SERIALIZABLE transaction: fail if a key is under another's turn
        (*foreign*: their lock ids), lock and compare the checked rows' versions, then write
        and delete. A serialization failure or deadlock is a conflict (False), as is a changed
        version: nothing applied either way."""
        checked = sorted(key for key, _ in checks)
        try:
            async with conn.transaction(isolation="serializable"):
                if foreign and not await conn.fetchval(self._sql.try_turns_shared, foreign):
                    raise _Conflict
                live = dict(await conn.fetch(self._sql.lock_versions, checked)) if checked else {}
                if any(live.get(key) != version for key, version in checks):
                    raise _Conflict
                for keep in (False, True):
                    rows = [w for w in writes if w.keep_ttl is keep]
                    if rows:
                        sql = self._sql.upsert_many_keep_ttl if keep else self._sql.upsert_many
                        await conn.execute(sql, *columns(rows))
                if deletes:
                    await conn.execute(self._sql.remove, sorted(deletes))
        except (_Conflict, *ROLLED_BACK):
            return False
        return True
