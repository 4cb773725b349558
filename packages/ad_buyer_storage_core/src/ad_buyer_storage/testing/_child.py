"""Child-process side of the kit's multi-process tests (spawned, so importable by path)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ad_buyer_storage.domain.storage import Storage
from ad_buyer_storage.errors import BudgetExceededError, TransactionConflictError

from .harness import load_callable


def run_increments(recipe: tuple[str, tuple[Any, ...]], key: str, count: int, doc_key: str) -> None:
    """Open the store from *recipe*; add 1 to a counter and to a JSON field, *count* times each."""

    async def main() -> None:
        backend = load_callable(recipe[0])(*recipe[1])
        async with Storage(backend) as storage:
            for _ in range(count):
                await storage.incr(key)
                await storage.update(doc_key, lambda doc: {**doc, "spend": doc["spend"] + 1})

    asyncio.run(main())


def run_bookings(recipe: tuple[str, tuple[Any, ...]], campaign_id: str, count: int, amount: str) -> None:
    """Open the store from *recipe*; try to book *count* orders of *amount* on one campaign."""

    async def book(storage: Storage, order_id: str) -> None:
        while True:
            try:
                await storage.book_order(order_id, {"pid": os.getpid()}, campaign_id=campaign_id, amount=amount)
                return
            except BudgetExceededError:
                return
            except TransactionConflictError:
                continue  # book_order's own retries lost to other processes: keep trying

    async def main() -> None:
        backend = load_callable(recipe[0])(*recipe[1])
        async with Storage(backend) as storage:
            for i in range(count):
                await book(storage, f"{os.getpid()}-{i}")

    Decimal(amount)  # fail here, in the parent's arguments, rather than in every child
    asyncio.run(main())


async def book_in_processes(
    recipe: tuple[str, tuple[Any, ...]], campaign_id: str, count: int, amount: str, *, processes: int = 4,
    join_timeout: float = 240.0,
) -> None:  # fmt: skip
    """Run :func:`run_bookings` in *processes* spawned children at once; fail unless all exit 0."""
    await _run_children(run_bookings, (recipe, campaign_id, count, amount), processes, join_timeout)


async def increment_in_processes(
    recipe: tuple[str, tuple[Any, ...]], key: str, count: int, doc_key: str, *, processes: int = 4,
    join_timeout: float = 240.0,
) -> None:  # fmt: skip
    """Run :func:`run_increments` in *processes* spawned children at once; fail unless all exit 0."""
    await _run_children(run_increments, (recipe, key, count, doc_key), processes, join_timeout)


async def _run_children(
    target: Callable[..., None], args: tuple[Any, ...], processes: int, join_timeout: float
) -> None:
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=target, args=args) for _ in range(processes)]
    for child in children:
        child.start()
    loop = asyncio.get_running_loop()
    for child in children:
        await loop.run_in_executor(None, child.join, join_timeout)
        assert child.exitcode == 0, f"a child process ended with exit code {child.exitcode}"
