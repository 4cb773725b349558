"""Transactions of :class:`~ad_buyer_storage.client.store.Store`: ``transaction()`` (see
:mod:`ad_buyer_storage.client.transaction`) and ``transact()``, its retries under local locks
and, across processes, under the backend's turns."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from ad_buyer_storage.client import telemetry
from ad_buyer_storage.client.base import StoreBase, T, _holding
from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage.client.validation import check_attempts
from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.errors import StorageError, TransactionConflictError

__all__ = ["Transacting"]


class Transacting(StoreBase):
    """Transactions and ``transact``'s retries (part of ``Store``)."""

    # -- transactions ------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``async with store.transaction() as tx:`` reads and stages writes of several keys;
        leaving the block applies them all atomically iff no key read changed since it was read
        (else :class:`~ad_buyer_storage.errors.TransactionConflictError`, nothing applied). An
        exception leaving the block applies nothing. See :mod:`ad_buyer_storage.client.transaction`."""
        if telemetry.hook is not None and telemetry.hook.claim():
            with telemetry.hook.span(self, "transaction", None):
                async with Transacting.transaction(self) as tx:
                    yield tx
            return
        backend = self.require_open()
        if self._caps_for is None:  # behind a router, each key's route decides (at the call)
            self._require(Capability.TRANSACTIONS, "transactions")
        tx = Transaction(backend, self._codec, routing=self._routing, committer=self._committer)
        try:
            yield tx
        except Exception as exc:
            # An error drawn from reads that saw no one state is a conflict (transact retries).
            stale = tx.is_open and not isinstance(exc, TransactionConflictError) and not await _block_reads_hold(tx)
            tx.discard()
            if stale:
                raise TransactionConflictError(
                    "the block raised after reading keys that changed meanwhile; nothing was applied"
                ) from exc
            raise
        except BaseException:
            tx.discard()
            raise
        if tx.is_open:  # unless the block committed it itself
            await tx.commit()

    async def transact(self, fn: Callable[[Transaction], Awaitable[T]], *, attempts: int = 10) -> T:
        """Run ``fn(tx)`` in a transaction and commit; on a conflict, run it again, up to
        *attempts* times; return what *fn* returned.

        A retry first takes this store's local locks on the keys the failed attempt touched:
        tasks of one process contending for the same keys then take turns instead of failing
        each other again and again. A conflict even under those locks came from another
        process: on a store shared by processes (a backend with turns: PostgreSQL, SQLite,
        Redis) the next attempts wait for their turn on those keys: such transactions of every
        process are served one at a time, first come first served, and no other transaction
        can commit over them meanwhile, so none is starved by the others (only a plain write to
        one of its keys can still make it conflict again: that is retried after a jittered
        backoff)."""
        check_attempts(attempts)
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "transact", None, Transacting.transact(self, fn, attempts=attempts))
        held: tuple[str, ...] = ()
        turned: tuple[str, ...] = ()  # the keys to take the turn on (see below)
        for attempt in range(attempts):
            touched: tuple[str, ...] = ()
            turn = self._turn(turned)  # decided before the local locks mark this context as holding
            try:
                async with self._local_locks(held), turn, self.transaction() as tx:
                    try:
                        result = await fn(tx)
                    finally:
                        touched = tx.touched_keys()
                return result
            except TransactionConflictError as exc:
                if attempt == attempts - 1:
                    if attempts == 1:
                        raise
                    raise TransactionConflictError(
                        f"gave up after {attempts} conflicting attempts (other writers kept changing "
                        f"{', '.join(map(repr, touched[:5])) or 'its keys'}); nothing was applied: try "
                        f"again, or pass attempts= above {attempts}"
                    ) from exc
                if held and set(touched) <= set(held):  # lost even under this process's locks: to another process
                    if turned:  # even under its turn (a plain write overtook it): back off
                        await asyncio.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))
                    turned = held  # from now on, wait for the turn on its keys
                held = tuple(sorted(set(touched) | set(held)))
        raise AssertionError("unreachable")

    def _turn(self, keys: tuple[str, ...]) -> contextlib.AbstractAsyncContextManager[None]:
        """The backend's turn on *keys* across processes (see SupportsTurns); none for a
        transaction run from inside another's function (it must never wait: see _holding)."""
        if not keys or _holding.get() or Capability.TURNS not in self.capabilities_for(keys[0]):
            return contextlib.nullcontext()
        return self._flagged.turn(keys)

    @asynccontextmanager
    async def _local_locks(self, keys: tuple[str, ...]) -> AsyncIterator[None]:
        """This store's lock of each of *keys* (sorted: no two takers wait for each other)."""
        if _holding.get():  # called from a function run under such locks: never wait on them
            keys = ()
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                lock = self._key_locks.get(key)
                if lock is None:
                    lock = self._key_locks[key] = asyncio.Lock()
                await stack.enter_async_context(lock)
            token = _holding.set(True) if keys else None
            try:
                yield
            finally:
                if token is not None:
                    _holding.reset(token)


async def _block_reads_hold(tx: Transaction) -> bool:
    """Whether a block's reads saw one state; True when that cannot be told (the block's own
    error then stands)."""
    try:
        return await tx._reads_hold()
    except StorageError:
        return True
