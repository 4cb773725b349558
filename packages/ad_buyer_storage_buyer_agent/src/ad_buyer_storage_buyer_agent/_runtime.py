"""One event-loop thread per process, on which every facade store runs its async ``Store``.

Upstream's stores are synchronous and are called from plain threads, from CrewAI's worker
threads and from coroutines (its async tests and FastAPI handlers call them directly). So
every call is submitted to one private loop running on a daemon thread and waited for:
safe from any number of threads, and from inside another running event loop (that loop's
thread blocks for the call, exactly as it did on ``sqlite3``). Many store instances share the
one thread: a process holding fifty stores has one extra thread, not fifty.

A call made *from* that thread (a callback of ours calling back into a facade store) would
wait for itself forever: it is refused with :class:`~ad_buyer_storage_buyer_agent.errors.ProgrammingError`.
After ``fork()`` the child gets a fresh loop thread (the parent's does not exist there).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ad_buyer_storage_buyer_agent.errors import ProgrammingError, translate

__all__ = ["call", "loop"]

T = TypeVar("T")

_guard = threading.Lock()
_state: tuple[int, asyncio.AbstractEventLoop, threading.Thread] | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The process's facade loop, started on first use (and again in a forked child)."""
    global _state
    state = _state
    if state is not None and state[0] == os.getpid():
        return state[1]
    with _guard:
        state = _state
        if state is not None and state[0] == os.getpid():
            return state[1]
        new_loop = asyncio.new_event_loop()
        thread = threading.Thread(target=new_loop.run_forever, name="ad-buyer-storage-buyer-agent", daemon=True)
        thread.start()
        _state = (os.getpid(), new_loop, thread)
        return new_loop


def call(coro: Coroutine[Any, Any, T]) -> T:
    """Run *coro* on the facade loop and wait for it; our storage errors come out as the
    ``sqlite3`` classes upstream's callers catch (see :mod:`.errors`)."""
    state = _state
    if state is not None and state[0] == os.getpid() and threading.current_thread() is state[2]:
        coro.close()
        raise ProgrammingError("a buyer-agent store was called from its own event-loop thread (it would wait forever)")
    future = asyncio.run_coroutine_threadsafe(coro, loop())
    try:
        return future.result()
    except BaseException as exc:
        compat = translate(exc)
        if compat is exc:
            raise
        raise compat from exc
