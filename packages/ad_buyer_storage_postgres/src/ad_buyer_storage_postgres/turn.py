"""Turns (``SupportsTurns``): how a transaction that lost a conflict gets its turn.

An exclusive transaction-level advisory lock per key, taken in one order (no deadlock between
takers) on a pooled connection kept in a transaction for the block (so a transaction pooler
keeps it pinned); PostgreSQL queues the takers of a lock first come first served. Commits
elsewhere try a shared lock on each key they touch (:meth:`Turns.foreign`), and fail while a
turn holds one. Turns hold connections of a pool of their own, opened at the first turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from ad_buyer_storage.kit import turns
from ad_buyer_storage.kit.errormap import ErrorMap

from .statements import Statements, turn_ids

__all__ = ["Turns"]


class Turns:
    """The turns taken through one backend object (*owner*) on one table."""

    def __init__(
        self,
        owner: object,
        *,
        table: str,
        sql: Statements,
        errors: ErrorMap,
        wait: float,
        open_pool: Callable[[], Awaitable[Any]],
        connection: Callable[[Any], AbstractAsyncContextManager[Any]],
    ) -> None:
        self._owner, self._table, self._sql, self._errors, self._wait = owner, table, sql, errors, wait
        self._open_pool, self._connection = open_pool, connection
        self.pool: Any = None
        self._opening = asyncio.Lock()

    def ids(self, keys: Iterable[str]) -> set[int]:
        return turn_ids(self._table, keys)

    def foreign(self, touched: set[str]) -> list[int]:
        """The lock ids of the keys in *touched* whose turn this context does not hold itself."""
        return sorted(self.ids(touched - turns.held(self._owner, touched)))

    async def opened_pool(self) -> Any:
        """The pool turns are held on, opened at the first turn (most processes never take one)."""
        if self.pool is None:
            async with self._opening:
                if self.pool is None:
                    self.pool = await self._open_pool()
        return self.pool

    @asynccontextmanager
    async def turn(self, keys: Sequence[str]) -> AsyncIterator[None]:
        wanted = sorted(set(keys) - turns.held(self._owner, keys))
        if not wanted:
            yield
            return
        async with contextlib.AsyncExitStack() as stack:
            with self._errors.mapped():
                # Turns have connections of their own: a holder's reads and commit, and waiters
                # queued behind it, never compete with it for the pool's (a full pool deadlocked).
                conn = await stack.enter_async_context(self._connection(await self.opened_pool()))
                transaction = conn.transaction()
                await transaction.start()
            try:
                with self._errors.mapped():
                    for lock in sorted(self.ids(wanted)):
                        await conn.execute(self._sql.take_turn, lock, timeout=self._wait)
                with turns.holding(self._owner, wanted):
                    yield
            finally:
                with contextlib.suppress(Exception):  # a rollback releases the locks; nothing was written
                    await transaction.rollback()
