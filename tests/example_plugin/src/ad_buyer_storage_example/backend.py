"""DictStore: the smallest honest backend. Claims only EXPIRY, so it implements the mandatory
primitives and EXPIRY's two methods (``get_ttl``, ``set_ttl``), nothing else."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from ad_buyer_storage.contract import NO_EXPIRY, NO_KEY, Capability, GlobPattern, Record, Write

Row = tuple[str, str, float | None]  # value, version, expires_at


class DictStore:
    name = "dictstore"
    capabilities = frozenset({Capability.EXPIRY})

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._rows: dict[str, Row] = {}

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> DictStore:
        return cls(**overrides)

    def _live(self, key: str) -> Row | None:
        row = self._rows.get(key)
        if row is None or (row[2] is not None and row[2] <= self._clock()):
            return None
        return row

    async def connect(self) -> None:
        pass

    async def aclose(self) -> None:
        self._rows.clear()

    async def ping(self) -> None:
        pass

    async def info(self) -> Mapping[str, object]:
        return {"rows": len(self._rows)}

    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        return [Record(row[0], row[1]) if (row := self._live(k)) else None for k in keys]

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        for w in writes:
            current = self._live(w.key)
            expires = (
                current[2]
                if (w.keep_ttl and current)
                else (None if w.ttl_ms is None else self._clock() + w.ttl_ms / 1000)
            )
            self._rows[w.key] = (w.value, w.version, expires)
        return [True] * len(writes)

    async def remove(self, keys: Sequence[str]) -> int:
        live = [k for k in keys if self._live(k)]
        for k in keys:
            self._rows.pop(k, None)
        return len(live)

    async def count(self, keys: Sequence[str]) -> int:
        return sum(1 for k in keys if self._live(k))

    async def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        for key in [k for k in self._rows if self._live(k) and pattern.matches(k)]:
            yield key

    # EXPIRY's methods (SupportsExpiry).
    async def get_ttl(self, key: str) -> int:
        row = self._live(key)
        if row is None:
            return NO_KEY
        return NO_EXPIRY if row[2] is None else max(1, round((row[2] - self._clock()) * 1000))

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        row = self._live(key)
        if row is None:
            return False
        self._rows[key] = (row[0], row[1], None if ttl_ms is None else self._clock() + ttl_ms / 1000)
        return True
