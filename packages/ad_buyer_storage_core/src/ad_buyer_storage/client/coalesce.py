"""Coalescing of concurrent single-key calls into batched round trips.

In-flight batching: a call goes to the backend at once when nothing of its kind is
outstanding (no added latency for sequential use); calls arriving while one is in flight
queue up and leave together, in one ``read``/``write`` of the backend, when it returns. 64
concurrent ``get``s thus cost two round trips instead of 64, and every caller keeps its own
semantics: its own result, its own error, its own cancellation.

Writes to one key never share a batch (a store applying a batch in one statement must not see a
key twice), except unconditional writes, which *merge*: the later one's value replaces the
earlier one's in the batch, as if it had been applied right after it (concurrent callers have no
order to keep between them; every caller returns once the merged write is applied). So 200
concurrent ``set``s of one hot key cost two round trips, not 200 in a row.

Calls are batched only with calls of the same *lane*: a router passes one lane per route, so a
batch never spans two servers and one server's failure never fails a caller of another.

A batch sent after another runs in a task of its own; the coalescer keeps a reference to each
(the event loop keeps only a weak one) and :meth:`Coalescer.drain` waits for them at close, so
every caller gets its answer before the backend closes (cancelling them if the close is cancelled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar, cast

from ad_buyer_storage.client import telemetry
from ad_buyer_storage.errors import PartialBatchError

__all__ = ["Coalescer", "drain"]

Item = TypeVar("Item")
Result = TypeVar("Result")

_MAX_BATCH = 1000


Merge = Callable[[Item, Item], Item | None]


async def drain(tasks: set[asyncio.Task[None]]) -> None:
    """Wait until *tasks* (a live set: tasks remove themselves when done, and may add others)
    are all done; if the wait is cancelled, cancel them too."""
    while tasks:
        pending = list(tasks)
        try:
            await asyncio.gather(*pending, return_exceptions=True)
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()
            raise
        tasks.difference_update(t for t in pending if t.done())


class _Lane(Generic[Item, Result]):
    __slots__ = ("in_flight", "queue")

    def __init__(self) -> None:
        self.in_flight = False
        self.queue: list[tuple[Item, asyncio.Future[Result]]] = []


class Coalescer(Generic[Item, Result]):
    """Queue single items while a call is in flight; send the queue as one batch after it.

    *run* takes a batch and returns one result per item, in order. With *key*, a batch never
    holds the same target twice (a second write to it starts the next batch, unless *merge*
    folds it into the first: ``merge(earlier, later)`` returns the one item doing both, or
    None), so a store that applies a batch in one statement never sees a key repeated. Without it (reads), repeats
    share a batch. With *lane*, items batch only with items of the same lane, and each lane has
    its own call in flight. If *run* raises :class:`~ad_buyer_storage.errors.PartialBatchError`,
    each caller gets its own item's outcome; any other error goes to every caller of the batch.
    """

    def __init__(
        self,
        run: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        key: Callable[[Item], str] | None = None,
        lane: Callable[[Item], Hashable] | None = None,
        merge: Merge[Item] | None = None,
        kind: str = "batch",
    ) -> None:
        self._run = run
        self._kind = kind  # what telemetry calls its batches ("read", "write")
        self._key = key
        self._merge = merge
        self._lane_of = lane
        self._lanes: dict[Hashable, _Lane[Item, Result]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # batches in flight: referenced until done

    async def submit(self, item: Item) -> Result:
        name = self._lane_of(item) if self._lane_of is not None else None
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = _Lane()
        if not lane.in_flight and not lane.queue:
            lane.in_flight = True
            try:
                (result,) = await self._run((item,))
                return result
            except PartialBatchError as exc:
                raise exc.first_error() from None
            finally:
                lane.in_flight = False
                self._flush(lane)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        lane.queue.append((item, future))
        if telemetry.hook is not None:
            telemetry.hook.queued(future)  # its caller's span will link to the batch's
        return await future

    def _flush(self, lane: _Lane[Item, Result]) -> None:
        if lane.in_flight or not lane.queue:
            return
        batch: list[tuple[Item, list[asyncio.Future[Result]]]] = []
        slot_of: dict[str, int] = {}
        rest: list[tuple[Item, asyncio.Future[Result]]] = []
        for item, future in lane.queue:
            if future.done():  # its caller was cancelled while waiting
                continue
            if rest:  # keeps order: everything after a repeat waits for the next batch
                rest.append((item, future))
                continue
            target = self._key(item) if self._key is not None else None
            slot = slot_of.get(target) if target is not None else None
            if slot is not None:
                merged = self._merge(batch[slot][0], item) if self._merge is not None else None
                if merged is None:
                    rest.append((item, future))
                else:
                    batch[slot] = (merged, [*batch[slot][1], future])
            elif len(batch) >= _MAX_BATCH:
                rest.append((item, future))
            else:
                if target is not None:
                    slot_of[target] = len(batch)
                batch.append((item, [future]))
        lane.queue = rest
        if batch:
            lane.in_flight = True
            send = self._send(lane, batch)
            if telemetry.hook is not None:
                send = telemetry.hook.batch(self._kind, [future for _, futures in batch for future in futures], send)
            task = asyncio.get_running_loop().create_task(send)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every batch in flight (each caller gets its answer); cancel them if cancelled."""
        await drain(self._tasks)

    async def _send(self, lane: _Lane[Item, Result], batch: list[tuple[Item, list[asyncio.Future[Result]]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, futures in batch:
                for future in futures:
                    future.cancel()
            raise
        except PartialBatchError as exc:  # each caller gets its own outcome
            if len(exc.outcomes) != len(batch):  # a backend's bug: never leave a caller waiting
                whole = exc.first_error()
                exc = PartialBatchError([whole] * len(batch))
            for (_, futures), outcome in zip(batch, exc.outcomes, strict=True):
                for future in futures:
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(cast(Result, outcome))
        except Exception as exc:  # noqa: BLE001 - every caller of the batch hears of it
            for _, futures in batch:
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
        else:
            for (_, futures), result in zip(batch, results, strict=True):
                for future in futures:
                    if not future.done():
                        future.set_result(result)
        finally:
            lane.in_flight = False
            self._flush(lane)
