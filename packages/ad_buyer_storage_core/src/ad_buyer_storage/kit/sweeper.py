"""For backend authors whose store does not expire keys itself (SQL tables): purge the expired rows.

Reads already ignore expired rows; the sweep only reclaims their space. :func:`purge_in_batches`
deletes them in bounded batches, letting foreground work run between two, until a batch comes
back short; :class:`Sweeper` runs that every ``interval`` seconds from ``connect`` to ``aclose``,
a failed sweep logged and tried again at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Sweeper", "purge_in_batches", "sweep_forever"]


async def purge_in_batches(delete_batch: Callable[[int], Awaitable[int | None]], batch: int) -> int:
    """Call ``delete_batch(batch)`` (delete at most *batch* expired rows, return how many) until it
    deletes fewer than *batch*, or returns None (another instance is sweeping); the total deleted."""
    total = 0
    while True:
        deleted = await delete_batch(batch)
        if deleted is None:
            return total
        total += deleted
        if deleted < batch:
            return total
        await asyncio.sleep(0)  # one batch at a time: foreground calls run in between


async def sweep_forever(purge: Callable[[], Awaitable[int]], interval: float, where: str, log: logging.Logger) -> None:
    """Run *purge* every *interval* seconds until cancelled; a failed sweep is retried next time."""
    while True:
        await asyncio.sleep(interval)
        try:
            purged = await purge()
            if purged:
                log.debug("purged %d expired rows from %s", purged, where)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried at the next interval
            log.warning("expiry sweep of %s failed: %s", where, exc)


class Sweeper:
    """The background expiry sweep of a backend: started on connect, stopped on close."""

    def __init__(
        self, purge: Callable[[], Awaitable[int]], interval: float | None, where: str, log: logging.Logger
    ) -> None:
        self._args = (purge, interval, where, log)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        purge, interval, where, log = self._args
        if interval and self._task is None:
            self._task = asyncio.get_running_loop().create_task(sweep_forever(purge, interval, where, log))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
