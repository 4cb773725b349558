"""Coalescing of concurrent single-key calls into batched round trips.

In-flight batching: a call goes to the backend at once when nothing of its kind is
outstanding (no added latency for sequential use); calls arriving while one is in flight
queue up and leave together, in one ``read``/``write`` of the backend, when it returns. 64
concurrent ``get``s thus cost two round trips instead of 64, and every caller keeps its own
semantics: its own result, its own error, its own cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

Item = TypeVar("Item")
Result = TypeVar("Result")

_MAX_BATCH = 1000


class Coalescer(Generic[Item, Result]):
    """Queue single items while a call is in flight; send the queue as one batch after it.

    *run* takes a batch and returns one result per item, in order. With *key*, a batch never
    holds the same target twice (a second write to it starts the next batch), so a store that
    applies a batch in one statement never sees a key repeated. Without it (reads), repeats
    share a batch.
    """

    def __init__(
        self,
        run: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        key: Callable[[Item], str] | None = None,
    ) -> None:
        self._run = run
        self._key = key
        self._in_flight = False
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []

    async def submit(self, item: Item) -> Result:
        if not self._in_flight and not self._queue:
            self._in_flight = True
            try:
                (result,) = await self._run((item,))
                return result
            finally:
                self._in_flight = False
                self._flush()
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        return await future

    def _flush(self) -> None:
        if self._in_flight or not self._queue:
            return
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        seen: set[str] = set()
        rest: list[tuple[Item, asyncio.Future[Result]]] = []
        for entry in self._queue:
            if entry[1].done():  # its caller was cancelled while waiting
                continue
            target = self._key(entry[0]) if self._key is not None else ""
            if rest or (self._key is not None and target in seen) or len(batch) >= _MAX_BATCH:
                rest.append(entry)  # keeps order: everything after a repeat waits for the next batch
            else:
                seen.add(target)
                batch.append(entry)
        self._queue = rest
        if batch:
            self._in_flight = True
            asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every caller of the batch hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight = False
            self._flush()
