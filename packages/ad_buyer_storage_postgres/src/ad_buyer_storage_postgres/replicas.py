"""Read replicas (``POSTGRES_READ_URL``): listing and filtered reads on hot standbys, in turn,
read-your-writes per backend object.

Once the object has written anything (whatever the outcome: a write that timed out may have
applied), its next replica read takes the primary's WAL position, and a standby serves the read
only if it has replayed that far; otherwise the primary does. A standby that is down, refuses
or times out is left alone for a while; one that cannot answer one read (a conflict with
recovery, a table not replayed yet) leaves that read to the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ad_buyer_storage.errors import (
    AuthenticationError,
    OutcomeUnknownError,
    StorageError,
    StorageTimeoutError,
    TLSError,
    UnavailableError,
)
from ad_buyer_storage.kit.errormap import ErrorMap
from ad_buyer_storage.kit.redaction import redact_url

from .dsn import normalise_dsn
from .errors import CONNECTION_LOST, URL_PARSE_ERRORS, error_map
from .statements import CAUGHT_UP, WAL_POSITION

__all__ = ["RETRY_AFTER", "Replica", "ReplicaReads"]

log = logging.getLogger("ad_buyer_storage.postgres")
T = TypeVar("T")

RETRY_AFTER = 5.0  # seconds a replica that failed is left alone before it is tried again
#: A replica that cannot be reached, or will not let us in: left alone for RETRY_AFTER.
_DOWN = (UnavailableError, StorageTimeoutError, OutcomeUnknownError, AuthenticationError, TLSError)

#: Runs a function of a connection on the primary (idempotent: the backend's _call).
OnPrimary = Callable[[Callable[[Any], Awaitable[T]]], Awaitable[T]]


@dataclass
class Replica:
    url: str
    dsn: str
    errors: ErrorMap
    pool: Any = None
    down_until: float = 0.0


class ReplicaReads:
    """The replicas of one backend object, and what it wrote since it last read one."""

    def __init__(self, urls: Sequence[str], *, secrets: tuple[str | None, ...], acquire_timeout: float) -> None:
        self.replicas = [Replica(u, normalise_dsn(u), error_map(u, secrets)) for u in urls]
        self._acquire_timeout = acquire_timeout
        self._next = 0
        # Read-your-writes: set when a write of this object ended (applied, refused or unknown);
        # the next replica read then takes the primary's WAL position as the bar to clear.
        self._wrote = False
        self._write_lsn: str | None = None
        self.reads = 0  # reads a replica served (for info() and the tests)
        self.fallbacks = 0  # replica reads that went to the primary instead

    def wrote(self) -> None:
        """A write of this object ended: the next replica read must see the primary as after it."""
        self._wrote = True

    async def open(self, lazy_pool: Callable[[str], Awaitable[Any]]) -> None:
        for replica in self.replicas:
            # No connection yet (min_size=0): a replica that is down must not stop the app.
            replica.pool = await lazy_pool(replica.dsn)

    async def close(self, seconds: float) -> None:
        for replica in self.replicas:
            pool, replica.pool = replica.pool, None
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), timeout=seconds)
                except (TimeoutError, Exception):  # noqa: BLE001 - a dead replica: drop connections hard
                    pool.terminate()

    async def _own_writes_lsn(self, on_primary: OnPrimary[Any]) -> str | None:
        """The WAL position a replica must have replayed to hold every write this object
        finished (None: it never wrote). Taken after the flag is cleared, so a write that
        finishes meanwhile raises the bar again for the next read."""
        if self._wrote:
            self._wrote = False
            try:
                self._write_lsn = await on_primary(lambda c: c.fetchval(WAL_POSITION))
            except BaseException:
                self._wrote = True
                raise
        return self._write_lsn

    async def read(self, fn: Callable[[Any], Awaitable[T]], on_primary: OnPrimary[T]) -> T:
        """*fn* on a replica that is up and has replayed this object's own writes, else on the
        primary (through *on_primary*)."""
        if not self.replicas:
            return await on_primary(fn)
        lsn = await self._own_writes_lsn(on_primary)
        count = len(self.replicas)
        start, self._next = self._next, (self._next + 1) % count
        for replica in (self.replicas[(start + i) % count] for i in range(count)):
            if replica.pool is None or replica.down_until > time.monotonic():
                continue
            try:
                with replica.errors.mapped(also=URL_PARSE_ERRORS):
                    conn = await replica.pool.acquire(timeout=self._acquire_timeout)
                    try:
                        if lsn is None or await conn.fetchval(CAUGHT_UP, lsn):
                            result = await fn(conn)
                            self.reads += 1
                            return result
                    except CONNECTION_LOST:
                        conn.terminate()
                        raise
                    finally:
                        with contextlib.suppress(Exception):  # a release that fails loses nothing
                            await replica.pool.release(conn)
            except _DOWN as exc:
                replica.down_until = time.monotonic() + RETRY_AFTER
                log.warning("read replica %s left alone for %.0f s: %s", redact_url(replica.url), RETRY_AFTER, exc)
            except StorageError as exc:
                # Busy, a conflict with recovery, a table it has not replayed yet: the primary answers.
                log.debug("read replica %s could not serve a read: %s", redact_url(replica.url), exc)
        self.fallbacks += 1
        return await on_primary(fn)
