"""The SDK's :class:`~adcp.audit_sink.AuditSink` on one of our stores: a durable, ordered log.

Layout, under ``<namespace>:audit:``: ``seq`` is the log's counter, ``e:<20-digit number>`` one
event (``AuditEvent.model_dump(mode="json")``). An event's number is taken with ``incr`` in the
same transaction that writes it, so numbers are gap-free and in commit order, across processes.

The SDK's middleware records each dispatch after the fact and swallows sink failures (its
docstring: observability, not compliance-of-record). For records that must exist exactly when
the change they describe does, stage the event in the change's own transaction::

    async def approve(tx):
        deal = await tx.get("deal:d1")
        tx.set("deal:d1", {**deal, "status": "approved"})
        await sink.stage(tx, AuditEvent(operation="approve_deal", success=True, occurred_at=now))

    await store.transact(approve)   # the change and its audit record commit together, or neither

``tx`` must be a transaction of the sink's own store (behind a router, keys on one route).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from adcp.audit_sink import AuditEvent

from ad_buyer_storage import Store, Transaction
from ad_buyer_storage_adcp._base import StoreHolder, Target

__all__ = ["StorageAuditSink"]

_DIGITS = 20


class StorageAuditSink:
    """An ordered audit log shared by every process on the store (``is_durable``: the store's).

    *ttl*: seconds an event is kept (None: for ever; retention is the operator's policy).
    """

    def __init__(
        self, target: Target = None, *, ttl: float | None = None, namespace: str = "adcp", **overrides: Any
    ) -> None:
        self._holder = StoreHolder(target, namespace=namespace, kind="audit", **overrides)
        self._ttl = ttl
        self.is_durable = self._holder.durable

    def __repr__(self) -> str:
        return f"<StorageAuditSink {self._holder.raw_store!r}>"

    @property
    def store(self) -> Store:
        return self._holder.raw_store

    async def aclose(self) -> None:
        await self._holder.aclose()

    async def __aenter__(self) -> StorageAuditSink:
        await self._holder.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def stage(self, tx: Transaction, event: AuditEvent) -> int:
        """Add *event* to the log inside *tx* (a transaction of this sink's store); return its
        number. It is written if and only if *tx* commits."""
        number = int(await tx.incr(self._holder.prefix + "seq"))
        tx.set(self._event_key(number), event.model_dump(mode="json"), ttl=self._ttl)
        return number

    async def record(self, event: AuditEvent) -> None:
        """Append *event* (its own transaction)."""
        store = await self._holder.store()

        async def fn(tx: Transaction) -> int:
            return await self.stage(tx, event)

        await store.transact(fn, attempts=100)

    def _event_key(self, number: int) -> str:
        return f"{self._holder.prefix}e:{number:0{_DIGITS}d}"

    async def events(self, *, after: int = 0, limit: int | None = None) -> AsyncIterator[tuple[int, AuditEvent]]:
        """The log in order, from the event after number *after*: (number, event) pairs."""
        store = await self._holder.store()
        cursor: str | None = self._event_key(after) if after > 0 else None
        left = limit
        while left is None or left > 0:
            page = await store.select(
                self._holder.prefix + "e:", after=cursor, limit=500 if left is None else min(500, left)
            )
            for key, value in page.rows:
                yield int(key.rsplit(":", 1)[1]), AuditEvent.model_validate(value)
            if left is not None:
                left -= len(page.rows)
            if page.last_key is None:
                return
            cursor = page.last_key
