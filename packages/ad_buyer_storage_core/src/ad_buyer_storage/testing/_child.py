"""Child-process side of the kit's multi-process tests (spawned, so importable by path)."""

from __future__ import annotations

import asyncio
from typing import Any

from ..storage import Storage
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
