"""Helpers for backends made of other backends (hybrid router, mirror) and for backends with
a background expiry sweep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from .protocol import StorageBackend, SupportsReleaseNamespace

__all__ = ["Sweeper", "close_all", "connect_all", "release_all", "sweep_forever"]


async def connect_all(backends: Sequence[StorageBackend]) -> list[StorageBackend]:
    """Connect each backend in order; if one fails, close those already open and re-raise."""
    opened: list[StorageBackend] = []
    for backend in backends:
        try:
            await backend.connect()
        except BaseException:
            with contextlib.suppress(Exception):  # the connect error is the one to report
                await close_all(opened)
            with contextlib.suppress(Exception):
                await backend.aclose()
            raise
        opened.append(backend)
    return opened


async def release_all(backends: Sequence[StorageBackend]) -> None:
    """Pass ``release_namespace`` on to the backends that have it (see the protocol), going on
    past failures; raise the first one."""
    first: BaseException | None = None
    for backend in backends:
        if isinstance(backend, SupportsReleaseNamespace):
            try:
                await backend.release_namespace()
            except Exception as exc:  # noqa: BLE001 - release them all, then report
                first = first or exc
    if first is not None:
        raise first


async def close_all(backends: Sequence[StorageBackend]) -> None:
    """Close every backend (last opened first), going on past failures; raise the first one."""
    first: BaseException | None = None
    for backend in reversed(backends):
        try:
            await backend.aclose()
        except Exception as exc:  # noqa: BLE001 - close them all, then report
            first = first or exc
    if first is not None:
        raise first


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
