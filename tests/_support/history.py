"""An operation history for fault tests, and the one checker every fault test uses.

Workers call the storage through :class:`History`, which records each operation as
``(who, kind, key, value, invoke, complete, outcome, result)``. The outcome is ``ok``
(acknowledged), ``fail`` (rejected before any I/O: it cannot have happened) or ``unknown``
(a backend error: the server may or may not have applied it). After recovery,
:meth:`History.check` reads the final state and verifies:

1. every acknowledged write is present, unless a later write to that key may have replaced it;
2. every read returned ``None`` or a value some write to *that* key had sent before the read
   completed (no value from another key, no value out of thin air);
3. every counter ends between its acknowledged increments and those plus the unknown ones
   (exactly the acknowledged count when nothing is unknown), and no two acknowledged
   increments returned the same total (nothing applied twice).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ad_buyer_storage import Storage
from ad_buyer_storage.errors import BackendError, InvalidInputError


@dataclass
class Operation:
    who: str
    kind: str  # "set" | "delete" | "get" | "incr"
    key: str
    value: Any
    invoke: float
    complete: float = 0.0
    outcome: str = "pending"  # "ok" | "fail" | "unknown"
    result: Any = None
    error: str = ""


@dataclass
class Report:
    operations: int
    acknowledged: int
    unknown: int
    failed: int
    lost: list[str] = field(default_factory=list)
    foreign_reads: list[str] = field(default_factory=list)
    counter_problems: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return self.lost + self.foreign_reads + self.counter_problems

    def summary(self) -> str:
        return (
            f"{self.operations} ops, {self.acknowledged} acknowledged, {self.unknown} unknown, "
            f"{self.failed} failed; lost {len(self.lost)}, foreign reads {len(self.foreign_reads)}, "
            f"counter errors {len(self.counter_problems)}"
        )


class History:
    def __init__(self) -> None:
        self.operations: list[Operation] = []

    async def _run(self, op: Operation, call: Callable[[], Awaitable[Any]]) -> Any:
        self.operations.append(op)
        try:
            op.result = await call()
        except InvalidInputError as exc:
            op.outcome, op.error = "fail", type(exc).__name__
            raise
        except BackendError as exc:
            op.outcome, op.error, op.result = "unknown", type(exc).__name__, str(exc)[:200]
            raise
        finally:
            op.complete = time.monotonic()
        op.outcome = "ok"
        return op.result

    async def set(self, storage: Storage, who: str, key: str, value: Any) -> None:
        op = Operation(who, "set", key, value, time.monotonic())
        await self._run(op, lambda: storage.set(key, value))

    async def delete(self, storage: Storage, who: str, key: str) -> None:
        op = Operation(who, "delete", key, None, time.monotonic())
        await self._run(op, lambda: storage.delete(key))

    async def update(self, storage: Storage, who: str, key: str, fn: Callable[[Any], Any], default: Any) -> Any:
        """An atomic read-modify-write: recorded as a write of the value it produced."""
        op = Operation(who, "set", key, None, time.monotonic())
        op.value = await self._run(op, lambda: storage.update(key, fn, default=default))
        return op.value

    async def set_many(self, storage: Storage, who: str, items: dict[str, Any]) -> None:
        ops = [Operation(who, "set", key, value, time.monotonic()) for key, value in items.items()]
        await self._run_many(ops, lambda: storage.set_many(items))

    async def delete_many(self, storage: Storage, who: str, keys: list[str]) -> None:
        ops = [Operation(who, "delete", key, None, time.monotonic()) for key in keys]
        await self._run_many(ops, lambda: storage.delete_many(keys))

    async def _run_many(self, ops: list[Operation], call: Callable[[], Awaitable[Any]]) -> None:
        first, *rest = ops
        try:
            await self._run(first, call)
        finally:
            for op in rest:
                op.complete, op.outcome, op.error = first.complete, first.outcome, first.error
                self.operations.append(op)

    async def get(self, storage: Storage, who: str, key: str) -> Any:
        op = Operation(who, "get", key, None, time.monotonic())
        return await self._run(op, lambda: storage.get(key))

    async def incr(self, storage: Storage, who: str, key: str, amount: int | Decimal = 1) -> int | Decimal:
        op = Operation(who, "incr", key, amount, time.monotonic())
        result: int | Decimal = await self._run(op, lambda: storage.incr(key, amount))
        return result

    def acknowledged_set(self, who: str, key: str, value: Any) -> None:
        """Record a write another process reported as acknowledged (its timing is unknown)."""
        self.operations.append(Operation(who, "set", key, value, 0.0, float("inf"), "ok"))

    def check(self, final: dict[str, Any]) -> Report:
        """Verify the history against *final*: the value of every key it touched, read after recovery."""
        ops = self.operations
        report = Report(
            operations=len(ops),
            acknowledged=sum(op.outcome == "ok" for op in ops),
            unknown=sum(op.outcome == "unknown" for op in ops),
            failed=sum(op.outcome == "fail" for op in ops),
        )
        writes: dict[str, list[Operation]] = defaultdict(list)
        for op in ops:
            if op.kind in ("set", "delete") and op.outcome in ("ok", "unknown"):
                writes[op.key].append(op)
        for key, key_writes in writes.items():
            acked = [w for w in key_writes if w.outcome == "ok"]
            if not acked:
                continue
            last_acked = max(acked, key=lambda w: w.complete)
            # Any write not finished before the last acknowledged one began may be the survivor.
            candidates = [w.value for w in key_writes if w is last_acked or w.complete >= last_acked.invoke]
            if final.get(key) not in candidates:
                report.lost.append(f"{key}: {final.get(key)!r} not in {candidates[:3]!r}")
        for op in ops:
            if op.kind != "get" or op.outcome != "ok" or op.result is None:
                continue
            sent = [w.value for w in writes.get(op.key, []) if w.invoke <= op.complete]
            if op.result not in sent:
                report.foreign_reads.append(f"{op.who} read {op.key} -> {op.result!r}")
        increments: dict[str, list[Operation]] = defaultdict(list)
        for op in ops:
            if op.kind == "incr":
                increments[op.key].append(op)
        for key, incs in increments.items():
            low = sum(op.value for op in incs if op.outcome == "ok")
            high = low + sum(op.value for op in incs if op.outcome == "unknown")
            total = final.get(key) or 0
            if isinstance(total, str):  # a Decimal counter is kept as its exact text
                total = Decimal(total)
            if not low <= total <= high:
                report.counter_problems.append(f"{key} = {total}, expected {low}..{high}")
            returned = [op.result for op in incs if op.outcome == "ok"]
            if len(returned) != len(set(returned)):
                report.counter_problems.append(f"{key}: two increments returned the same total")
        return report

    async def final_state(self, storage: Storage) -> dict[str, Any]:
        keys = sorted({op.key for op in self.operations if op.outcome != "fail"})
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            found.update(await storage.get_many(keys[start : start + 500]))
        return found
