"""A blocking facade over any storage, for code that runs without an event loop.

The facade owns one event-loop thread. Every call (``get``, ``set``, ``list_deals``,
``update_deal``... the whole API) is a coroutine submitted to that loop and waited for, so
it is safe from any number of threads at once, from plain scripts, and from the worker
threads of another running loop (``run_in_executor``). Calling it from a coroutine would
block that coroutine's loop: async code should use :class:`~ad_buyer_storage.Storage`.

>>> with SyncStorage() as storage:              # the backend the settings choose
...     storage.set_deal("d1", {"spend": 0})
...     storage.update_deal("d1", lambda d: {**d, "spend": d["spend"] + 1})
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from ad_buyer_storage.domain.storage import Storage
from ad_buyer_storage.errors import LifecycleError, StorageClosedError
from ad_buyer_storage.plugins.factory import get_storage_backend

__all__ = ["SyncStorage"]

T = TypeVar("T")


class SyncStorage:
    """Blocking calls into a :class:`Storage` running on a private event-loop thread."""

    def __init__(self, storage: Storage | None = None, *, timeout: float | None = 60.0, **overrides: Any) -> None:
        """*storage* (unconnected or connected), or one built by ``get_storage_backend(**overrides)``."""
        if storage is None:
            storage = get_storage_backend(**overrides)
        self._storage = storage
        self._timeout = timeout
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ad-buyer-storage-sync", daemon=True)
        self._thread.start()
        # One shutdown path, run once: by close(), when the facade is garbage collected, or at
        # interpreter exit (weakref.finalize runs then too) if the owner never closed it.
        self._finalizer = weakref.finalize(self, _shutdown, storage, self._loop, self._thread)
        try:
            self._run(storage.connect())
        except BaseException:
            self._closed = True
            self._finalizer()
            raise

    def __repr__(self) -> str:
        return f"<SyncStorage {self._storage!r}>"

    @property
    def storage(self) -> Storage:
        """The async storage behind the facade (use it only on the facade's loop)."""
        return self._storage

    def _run(self, awaitable: Awaitable[T]) -> T:
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), self._loop)
        return future.result(self._timeout)

    def run(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` (a coroutine function) on the facade's loop and wait."""
        # Checked before the coroutine exists, so a refused call leaves nothing un-awaited.
        if self._closed:
            raise StorageClosedError(f"{self!r} is closed")
        if threading.current_thread() is self._thread:
            raise LifecycleError("SyncStorage called from its own loop thread: use the async Storage there")
        return self._run(fn(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._storage, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        @functools.wraps(attribute)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self.run(attribute, *args, **kwargs)

        return blocking

    def keys(self, pattern: str = "*") -> list[str]:
        return self.run(self._storage.keys, pattern)

    def close(self) -> None:
        """Close the storage and stop the loop thread. Idempotent."""
        if threading.current_thread() is self._thread:
            raise LifecycleError("SyncStorage closed from its own loop thread")
        self._closed = True
        self._finalizer()

    def __enter__(self) -> SyncStorage:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _shutdown(storage: Storage, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    try:
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(storage.aclose(), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()
