"""Child-process side of the kit's multi-process tests (spawned, so importable by path)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from ad_buyer_storage.client.api import StoreAPI
from ad_buyer_storage.client.coordination import SlidingWindowRateLimiter
from ad_buyer_storage.client.store import Store
from ad_buyer_storage.errors import BudgetExceededError, TransactionConflictError

from ._booking import book as book_on
from .harness import load_callable


def run_increments(recipe: tuple[str, tuple[Any, ...]], key: str, count: int, doc_key: str) -> None:
    """Open the store from *recipe*; add 1 to a counter and to a JSON field, *count* times each."""

    async def main() -> None:
        backend = load_callable(recipe[0])(*recipe[1])
        async with Store(backend) as storage:
            for _ in range(count):
                await storage.incr(key)
                await storage.update(doc_key, lambda doc: {**doc, "spend": doc["spend"] + 1})

    asyncio.run(main())


#: A child's exit code when a booking ended in TransactionConflictError (``strict`` bookings).
STARVED = 3


def run_bookings(
    recipe: tuple[str, tuple[Any, ...]], campaign_id: str, count: int, amount: str, strict: bool = False
) -> None:
    """Open the store from *recipe*; try to book *count* orders of *amount* on one campaign.
    *strict*: each booking must complete or be refused (BudgetExceededError) within
    ``transact``'s default attempts; one ending in TransactionConflictError exits with
    :data:`STARVED`. Otherwise such a booking is tried again."""

    async def book(storage: StoreAPI, order_id: str) -> None:
        while True:
            try:
                await book_on(storage, order_id, {"pid": os.getpid()}, campaign_id=campaign_id, amount=amount)
                return
            except BudgetExceededError:
                return
            except TransactionConflictError:
                if strict:
                    raise SystemExit(STARVED) from None
                continue  # transact's own retries lost to other processes: keep trying

    async def main() -> None:
        backend = load_callable(recipe[0])(*recipe[1])
        async with Store(backend) as storage:
            for i in range(count):
                await book(storage, f"{os.getpid()}-{i}")

    Decimal(amount)  # fail here, in the parent's arguments, rather than in every child
    asyncio.run(main())


async def book_in_processes(
    recipe: tuple[str, tuple[Any, ...]], campaign_id: str, count: int, amount: str, *, processes: int = 4,
    join_timeout: float = 240.0, strict: bool = False,
) -> None:  # fmt: skip
    """Run :func:`run_bookings` in *processes* spawned children at once; fail unless all exit 0."""
    await _run_children(run_bookings, (recipe, campaign_id, count, amount, strict), processes, join_timeout)


def run_limiter_attack(
    recipe: tuple[str, tuple[Any, ...]], name: str, limit: int, window: float, windows: int, out: str
) -> None:
    """Open the store from *recipe*; from just before a window edge (of the fixed grid a
    fixed-window limiter would use), hit a sliding-window limiter as fast as possible for
    *windows* windows; write the times of the admitted hits to *out* (JSON)."""

    async def main() -> list[float]:
        backend = load_callable(recipe[0])(*recipe[1])
        async with Store(backend) as storage:
            limiter = SlidingWindowRateLimiter(storage, name, limit=limit, window=window)
            edge = (time.time() // window + 2) * window
            await asyncio.sleep(max(0.0, edge - window / 10 - time.time()))
            admitted = []
            while time.time() < edge + windows * window:
                result = await limiter.hit()
                if result.allowed:
                    admitted.append(result.at)
        return admitted

    Path(out).write_text(json.dumps(asyncio.run(main())))


async def limiter_attack_in_processes(
    recipe: tuple[str, tuple[Any, ...]], name: str, limit: int, window: float, windows: int, out_dir: str,
    *, processes: int = 4, join_timeout: float = 120.0,
) -> list[float]:  # fmt: skip
    """Run :func:`run_limiter_attack` in *processes* children at once; the admitted hits' times."""
    outs = [str(Path(out_dir) / f"admitted-{i}.json") for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(target=run_limiter_attack, args=(recipe, name, limit, window, windows, out)) for out in outs
    ]
    await _join(children, join_timeout)
    return sorted(t for out in outs for t in json.loads(Path(out).read_text()))  # noqa: ASYNC240 - children are done


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
    await _join([ctx.Process(target=target, args=args) for _ in range(processes)], join_timeout)


async def _join(children: list[Any], join_timeout: float) -> None:
    for child in children:
        child.start()
    loop = asyncio.get_running_loop()
    codes = []
    for child in children:
        await loop.run_in_executor(None, child.join, join_timeout)
        codes.append(child.exitcode)
    starved = codes.count(STARVED)
    assert not starved, (
        f"{starved} of {len(codes)} processes had a booking end in TransactionConflictError after the "
        f"default attempts (exit codes {codes}): a conflict repeated across processes must escalate"
    )
    assert codes == [0] * len(codes), f"every child process must exit 0: exit codes {codes}"
