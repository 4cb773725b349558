"""DictStore: the smallest honest backend. Claims only EXPIRY."""

import time

from ad_buyer_storage import Capability
from ad_buyer_storage.contract import NO_EXPIRY, NO_KEY, Record


class DictStore:
    name = "dictstore"
    capabilities = frozenset({Capability.EXPIRY})

    def __init__(self, clock=time.time):
        self._clock = clock
        self._rows = {}  # key -> (value, version, expires_at)

    @classmethod
    def from_settings(cls, settings, **overrides):
        return cls(**overrides)

    def _live(self, key):
        row = self._rows.get(key)
        if row is None or (row[2] is not None and row[2] <= self._clock()):
            return None
        return row

    async def connect(self):
        pass

    async def aclose(self):
        self._rows.clear()

    async def ping(self):
        pass

    async def info(self):
        return {"rows": len(self._rows)}

    async def read(self, keys):
        return [Record(row[0], row[1]) if (row := self._live(k)) else None for k in keys]

    async def write(self, writes):
        for w in writes:
            current = self._live(w.key)
            expires = (
                current[2]
                if (w.keep_ttl and current)
                else (None if w.ttl_ms is None else self._clock() + w.ttl_ms / 1000)
            )
            self._rows[w.key] = (w.value, w.version, expires)
        return [True] * len(writes)

    async def remove(self, keys):
        live = [k for k in keys if self._live(k)]
        for k in keys:
            self._rows.pop(k, None)
        return len(live)

    async def count(self, keys):
        return sum(1 for k in keys if self._live(k))

    async def scan(self, pattern, batch_size):
        for key in [k for k in self._rows if self._live(k) and pattern.matches(k)]:
            yield key

    async def get_ttl(self, key):
        row = self._live(key)
        if row is None:
            return NO_KEY
        return NO_EXPIRY if row[2] is None else max(1, round((row[2] - self._clock()) * 1000))

    async def set_ttl(self, key, ttl_ms):
        row = self._live(key)
        if row is None:
            return False
        self._rows[key] = (row[0], row[1], None if ttl_ms is None else self._clock() + ttl_ms / 1000)
        return True

    async def increment(self, key, amount, version, ttl_ms):
        raise NotImplementedError("DictStore does not claim ATOMIC")
