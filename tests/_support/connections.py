"""What a client did, not how long it took: the TCP connections it opened.

A test that wants "fails at once, not retried" counts connection attempts instead of timing
the call (a loaded machine makes any call slow).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def tcp_connections() -> Iterator[list[tuple[Any, Any]]]:
    """Every TCP connection the running event loop opens inside the block, as ``(host, port)``,
    refused ones included (asyncpg and redis-py both dial through ``loop.create_connection``)."""
    loop = asyncio.get_running_loop()
    original = loop.create_connection
    dialled: list[tuple[Any, Any]] = []

    async def spy(*args: Any, **kwargs: Any) -> Any:
        dialled.append((kwargs.get("host", args[1] if len(args) > 1 else None),
                        kwargs.get("port", args[2] if len(args) > 2 else None)))  # fmt: skip
        return await original(*args, **kwargs)

    loop.create_connection = spy  # type: ignore[method-assign]
    try:
        yield dialled
    finally:
        del loop.create_connection  # the class's method again
