"""Same-key combining: concurrent read-modify-writes of one key in one round trip.

``update`` is optimistic: read with a version, compute, write if the version still holds. When
N tasks of one process update the same key at once, all read the same version, one wins and
N-1 pay a failed conditional write, re-read and race again: quadratic. Here, while one update
of a key is in flight from this store, the next ones wait; when it returns they leave together
as one *group*: one read, every caller's function applied in arrival order (each to the value
the previous one produced), one conditional write. Each caller still gets its own result (the
value its function produced) and its own error (its function's, or a missing key): a failing
caller is skipped and the others go on from the value before it. A caller cancelled while
waiting is left out; one cancelled after its function ran may still see its change applied, as
with any write cancelled in flight. Across processes nothing changes: the group's write is
conditional on the version it read, and a conflict re-runs the whole group.

A caller's function may itself call ``update``/``incr``/``transact`` (of any key): those calls
skip the groups (see ``store._holding``) and run on their own, since a group waiting for
another group that waits for it (A's function updating B whose function updates A, or two
tasks crossing) would wait forever; the outer group then retries over their writes.

Integer increments combine the same way: a run of same-signed amounts is one server-side
increment of their sum, and each caller's result is recovered from the total (increments within
a run are applied in arrival order, so the running sums lie between the old and the new value
and none can overflow unless the total does; then the run falls back to one call per caller).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from ad_buyer_storage.client.coalesce import drain

__all__ = ["Increment", "KeyedGroups", "Pending", "Update", "sign_runs"]


class Pending(Protocol):
    """One caller's operation: its outcome is delivered through *future*."""

    @property
    def future(self) -> asyncio.Future[Any]: ...


Op = TypeVar("Op", bound=Pending)


class Update:
    """A caller's ``fn`` for :meth:`Store.update` and its options."""

    __slots__ = ("default", "fn", "future", "max_attempts", "ttl_ms", "ttl_on_create_only")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        default: Any,
        ttl_ms: int | None,
        ttl_on_create_only: bool,
        max_attempts: int,
    ) -> None:
        self.fn = fn
        self.default = default
        self.ttl_ms = ttl_ms
        self.ttl_on_create_only = ttl_on_create_only
        self.max_attempts = max_attempts
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


class Increment:
    """A caller's integer increment."""

    __slots__ = ("amount", "future", "ttl_ms")

    def __init__(self, amount: int, ttl_ms: int | None) -> None:
        self.amount = amount
        self.ttl_ms = ttl_ms
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()


def sign_runs(ops: list[Increment]) -> list[list[Increment]]:
    """Split *ops* into consecutive runs whose amounts share a sign (0 joins any run)."""
    runs: list[list[Increment]] = []
    sign = 0
    for op in ops:
        op_sign = (op.amount > 0) - (op.amount < 0)
        if runs and (op_sign == 0 or sign == 0 or op_sign == sign):
            runs[-1].append(op)
            sign = sign or op_sign
        else:
            runs.append([op])
            sign = op_sign
    return runs


class KeyedGroups(Generic[Op]):
    """Run operations on one key one group at a time.

    A call runs at once (a group of one, in the caller's task: no added latency) when nothing
    is in flight for its key; calls arriving meanwhile wait, and leave together as the next
    group, in a task of its own, when the one in flight returns. *run* receives the key and the
    group (callers cancelled while waiting already left out) and must settle every future.
    """

    def __init__(self, run: Callable[[str, list[Op]], Awaitable[None]]) -> None:
        self._run = run
        self._waiting: dict[str, list[Op]] = {}  # a key present here has a group in flight
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: str, op: Op) -> Any:
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(op)
            return await op.future
        self._waiting[key] = []
        try:
            await self._settle(key, [op])
        finally:
            self._next(key)
        return await op.future

    async def _settle(self, key: str, group: list[Op]) -> None:
        try:
            await self._run(key, group)
            for op in group:
                if not op.future.done():  # *run* must settle each; never leave a caller hanging
                    op.future.set_exception(RuntimeError(f"no outcome for an operation on {key!r}"))
        except asyncio.CancelledError:
            for op in group:
                op.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every caller of the group hears of it
            for op in group:
                if not op.future.done():
                    op.future.set_exception(exc)

    def _next(self, key: str) -> None:
        group = [op for op in self._waiting.get(key, ()) if not op.future.done()]
        if not group:
            self._waiting.pop(key, None)
            return
        self._waiting[key] = []
        task = asyncio.get_running_loop().create_task(self._send(key, group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every group in flight (each caller gets its answer); cancel them if cancelled."""
        await drain(self._tasks)

    async def _send(self, key: str, group: list[Op]) -> None:
        try:
            await self._settle(key, group)
        finally:
            self._next(key)
