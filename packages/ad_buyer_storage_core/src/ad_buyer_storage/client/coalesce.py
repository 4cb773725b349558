"""Coalescing of concurrent single-key calls into batched round trips.

In-flight batching: a call goes to the backend at once when nothing of its kind is
outstanding (no added latency for sequential use); calls arriving while one is in flight
queue up and leave together, in one ``read``/``write`` of the backend, when it returns. 64
concurrent ``get``s thus cost two round trips instead of 64, and every caller keeps its own
semantics: its own result, its own error, its own cancellation.

Calls are batched only with calls of the same *lane*: a router passes one lane per route, so a
batch never spans two servers and one server's failure never fails a caller of another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar, cast

from ad_buyer_storage.errors import PartialBatchError
from ad_buyer_storage.kit import telemetry

__all__ = ["Coalescer"]

Item = TypeVar("Item")
Result = TypeVar("Result")

_MAX_BATCH = 1000


class _Lane(Generic[Item, Result]):
    __slots__ = ("in_flight", "queue")

    def __init__(self) -> None:
        self.in_flight = False
        self.queue: list[tuple[Item, asyncio.Future[Result]]] = []


class Coalescer(Generic[Item, Result]):
    """Queue single items while a call is in flight; send the queue as one batch after it.

    *run* takes a batch and returns one result per item, in order. With *key*, a batch never
    holds the same target twice (a second write to it starts the next batch), so a store that
    applies a batch in one statement never sees a key repeated. Without it (reads), repeats
    share a batch. With *lane*, items batch only with items of the same lane, and each lane has
    its own call in flight. If *run* raises :class:`~ad_buyer_storage.errors.PartialBatchError`,
    each caller gets its own item's outcome; any other error goes to every caller of the batch.
    """

    def __init__(
        self,
        run: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        key: Callable[[Item], str] | None = None,
        lane: Callable[[Item], Hashable] | None = None,
        kind: str = "batch",
    ) -> None:
        self._run = run
        self._kind = kind  # what telemetry calls its batches ("read", "write")
        self._key = key
        self._lane_of = lane
        self._lanes: dict[Hashable, _Lane[Item, Result]] = {}

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
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        seen: set[str] = set()
        rest: list[tuple[Item, asyncio.Future[Result]]] = []
        for entry in lane.queue:
            if entry[1].done():  # its caller was cancelled while waiting
                continue
            target = self._key(entry[0]) if self._key is not None else ""
            if rest or (self._key is not None and target in seen) or len(batch) >= _MAX_BATCH:
                rest.append(entry)  # keeps order: everything after a repeat waits for the next batch
            else:
                seen.add(target)
                batch.append(entry)
        lane.queue = rest
        if batch:
            lane.in_flight = True
            send = self._send(lane, batch)
            if telemetry.hook is not None:
                send = telemetry.hook.batch(self._kind, [future for _, future in batch], send)
            asyncio.get_running_loop().create_task(send)

    async def _send(self, lane: _Lane[Item, Result], batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except PartialBatchError as exc:  # each caller gets its own outcome
            for (_, future), outcome in zip(batch, exc.outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(cast(Result, outcome))
        except Exception as exc:  # noqa: BLE001 - every caller of the batch hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            lane.in_flight = False
            self._flush(lane)
