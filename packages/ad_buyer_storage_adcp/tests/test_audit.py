"""StorageAuditSink: the SDK's AuditSink and middleware, an ordered log, and an audit record
committed in the same transaction as the change it audits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from adcp.audit_sink import AuditEvent, AuditSink, make_audit_middleware
from adcp.server import ToolContext

from ad_buyer_storage_adcp import StorageAuditSink


def _event(n: int) -> AuditEvent:
    return AuditEvent(operation=f"op{n}", success=True, occurred_at=datetime.now(UTC), details={"n": n})


async def test_ordered_log_across_sinks(backend) -> None:
    async with StorageAuditSink(backend.target()) as one, StorageAuditSink(backend.target()) as two:
        assert isinstance(one, AuditSink)
        await asyncio.gather(*(s.record(_event(i)) for i, s in enumerate([one, two] * 5)))
        numbers = [n async for n, _ in one.events()]
        assert numbers == list(range(1, 11))
        seen = sorted([e.details["n"] async for _, e in two.events()])
        assert seen == list(range(10))
        assert [n async for n, _ in one.events(after=7)] == [8, 9, 10]
        assert [n async for n, _ in one.events(after=2, limit=2)] == [3, 4]


async def test_through_the_sdk_middleware(backend) -> None:
    async with StorageAuditSink(backend.target()) as sink:
        middleware = make_audit_middleware([sink])

        async def call_next() -> dict[str, bool]:
            return {"ok": True}

        await middleware(
            "create_media_buy", {}, ToolContext(caller_identity="p", tenant_id="t", request_id="r"), call_next
        )
        events = [e async for _, e in sink.events()]
        assert [(e.operation, e.success, e.caller_identity) for e in events] == [("create_media_buy", True, "p")]


async def test_audit_in_the_same_transaction_as_the_change(backend) -> None:
    async with StorageAuditSink(backend.target()) as sink:
        store = sink.store

        async def approve(tx) -> None:
            deal = await tx.get("adcp:deal:d1", {"status": "draft"})
            tx.set("adcp:deal:d1", {**deal, "status": "approved"})
            await sink.stage(tx, _event(1))

        await store.transact(approve)
        assert (await store.get("adcp:deal:d1"))["status"] == "approved"
        assert len([e async for _, e in sink.events()]) == 1

        class Refused(Exception):
            pass

        async def refused(tx) -> None:
            tx.set("adcp:deal:d1", {"status": "cancelled"})
            await sink.stage(tx, _event(2))
            raise Refused

        with pytest.raises(Refused):
            await store.transact(refused)
        assert (await store.get("adcp:deal:d1"))["status"] == "approved"
        assert len([e async for _, e in sink.events()]) == 1  # neither the change nor its record
