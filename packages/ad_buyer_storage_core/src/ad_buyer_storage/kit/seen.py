"""Exact "seen before?" for key listings whose server may repeat keys (Redis ``SCAN``), in
bounded memory.

A listing must yield each key once, so it remembers what it yielded. A set does that until
:data:`SPILL_AFTER` keys; past that the keys move to a temporary SQLite file (deleted at once,
so nothing is left behind even if the process dies) whose page cache is capped at 2 MiB, and
each batch is checked and recorded there with one statement, on a worker thread. Listing a
million keys then holds a few MiB instead of ~100 MB, and stays exact (no probabilistic filter).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
from collections.abc import Sequence

__all__ = ["SPILL_AFTER", "SeenKeys"]

#: Keys kept in a set before the rest go to disk (~3 MB of bytes keys of ~50 bytes).
SPILL_AFTER = 50_000
_PER_STATEMENT = 1000  # bound parameters per INSERT, well under SQLite's limit


class SeenKeys:
    """Remembers keys; :meth:`first_time` returns those of a batch never seen before."""

    def __init__(self, spill_after: int = SPILL_AFTER) -> None:
        self._spill_after = spill_after
        self._memory: set[bytes] | None = set()
        self._disk: sqlite3.Connection | None = None

    async def first_time(self, keys: Sequence[bytes]) -> list[bytes]:
        """The keys of *keys* not seen before (in order, each once); all are now seen."""
        memory = self._memory
        if memory is not None:
            fresh = []
            for key in keys:
                if key not in memory:
                    memory.add(key)
                    fresh.append(key)
            if len(memory) > self._spill_after:
                await asyncio.to_thread(self._spill, memory)
            return fresh
        return await asyncio.to_thread(self._record, list(dict.fromkeys(keys)))

    def _spill(self, memory: set[bytes]) -> None:
        fd, path = tempfile.mkstemp(prefix="abs-seen-", suffix=".db")
        os.close(fd)
        try:
            disk = sqlite3.connect(path, check_same_thread=False)
        finally:
            os.unlink(path)  # open files live on; nothing is left if the process dies
        disk.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -2048;"
            "CREATE TABLE seen (k BLOB PRIMARY KEY) WITHOUT ROWID;"
        )
        disk.executemany("INSERT INTO seen VALUES (?)", ((k,) for k in memory))
        self._disk, self._memory = disk, None

    def _record(self, keys: list[bytes]) -> list[bytes]:
        disk = self._disk
        assert disk is not None
        added: set[bytes] = set()
        for start in range(0, len(keys), _PER_STATEMENT):
            chunk = keys[start : start + _PER_STATEMENT]
            marks = ", ".join(["(?)"] * len(chunk))
            insert = f"INSERT INTO seen VALUES {marks} ON CONFLICT DO NOTHING RETURNING k"  # noqa: S608 - only ?s
            added.update(row[0] for row in disk.execute(insert, chunk))
        return [key for key in keys if key in added]

    def close(self) -> None:
        self._memory = set()
        if self._disk is not None:
            self._disk.close()
            self._disk = None

    def __enter__(self) -> SeenKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
