"""The one place instrumentation plugs in: :data:`hook`, None unless something instruments us.

Every logical operation of :class:`~ad_buyer_storage.Store` starts with one test,
``if telemetry.hook is not None``; uninstrumented, that test is all it costs. An instrumentor
(``ad_buyer_storage.otel.StorageInstrumentor``) sets :data:`hook` to an object with the
methods of :class:`Hook`, and back to None when it uninstruments. This module imports nothing
of OpenTelemetry: what a hook records, and how, is the instrumentor's business.

How a :class:`~ad_buyer_storage.Store` method hands itself over::

    async def get(self, key, default=None, ...):
        if telemetry.hook is not None and telemetry.hook.claim():
            return await telemetry.hook.run(self, "get", key, self.get(key, default, ...))
        ...  # the method itself

:meth:`Hook.run` opens the operation's span, then awaits the same call again; its first line
asks :meth:`Hook.claim`, which answers False exactly once after ``run`` (the call is already
covered) and True otherwise, so a logical operation made of others (``clear`` deletes by
pattern) still records each inner one, as its child.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

__all__ = ["Hook", "hook"]

T = TypeVar("T")


class Hook(Protocol):
    """What the instrumented code calls (only ever after checking that :data:`hook` is set)."""

    def claim(self) -> bool:
        """Whether the calling operation should be recorded (False: :meth:`run` already does)."""
        ...

    def run(
        self,
        store: object,
        operation: str,
        keys: str | Sequence[str] | None,
        call: Awaitable[T],
        hits: Callable[[T], int] | None = None,
    ) -> Awaitable[T]:
        """Await *call* as one recorded *operation* of *store* on *keys* (for their keyspace and
        route; a key itself is never recorded). A read passes *hits*: how many of *keys* its
        result found (the others were misses)."""
        ...

    def span(self, store: object, operation: str, keys: str | Sequence[str] | None) -> AbstractContextManager[None]:
        """:meth:`run` for an operation that is a block (``async with store.transaction()``)."""
        ...

    def queued(self, waiter: object) -> None:
        """A caller's call was queued behind one in flight (coalescing), to be answered by
        *waiter*: remember which operation it belongs to."""
        ...

    def batch(
        self, kind: str, waiters: Sequence[object], call: Coroutine[object, object, T]
    ) -> Coroutine[object, object, T]:
        """*call* sends the queued calls of *waiters* (see :meth:`queued`) in one *kind* batch."""
        ...


#: The instrumentation in effect, or None (the default: nothing is recorded, nothing is paid).
hook: Hook | None = None
