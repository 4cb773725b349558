"""For backend authors whose store hands over pub/sub messages by calling back (PostgreSQL's
``LISTEN``, an in-process broker): the ``subscribe()`` of
:class:`~ad_buyer_storage.contract.protocol.SupportsPubSub` in one call.

The backend writes ``listen(deliver)``, an async context manager that starts calling
``deliver(message)`` for each message on entry (and raises, translated, if it cannot) and
stops on exit; :func:`queue_subscription` queues the messages in between and gives the
subscriber an async iterator over them. The queue is unbounded: a callback cannot wait, and a
message is never dropped while the subscriber is slow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

__all__ = ["Deliver", "queue_subscription"]

#: Called by the store (or the backend's listener) with each message's text.
Deliver = Callable[[str], None]


@asynccontextmanager
async def queue_subscription(
    listen: Callable[[Deliver], AbstractAsyncContextManager[object]],
) -> AsyncIterator[AsyncIterator[str]]:
    """Subscribed while inside: iterate the messages delivered since entering."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    async with listen(queue.put_nowait):
        yield _drain(queue)


async def _drain(queue: asyncio.Queue[str]) -> AsyncIterator[str]:
    while True:
        yield await queue.get()
