"""Child-process side of the kit's multi-process tests (spawned, so importable by path)."""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

from ad_buyer_storage.domain.storage import Storage

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


async def increment_in_processes(
    recipe: tuple[str, tuple[Any, ...]], key: str, count: int, doc_key: str, *, processes: int = 4,
    join_timeout: float = 240.0,
) -> None:  # fmt: skip
    """Run :func:`run_increments` in *processes* spawned children at once; fail unless all exit 0."""
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=run_increments, args=(recipe, key, count, doc_key)) for _ in range(processes)]
    for child in children:
        child.start()
    loop = asyncio.get_running_loop()
    for child in children:
        await loop.run_in_executor(None, child.join, join_timeout)
        assert child.exitcode == 0, f"a child process ended with exit code {child.exitcode}"
