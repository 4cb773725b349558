"""StorageIdempotencyBackend through the SDK's IdempotencyStore and WebhookDedupStore, on every backend."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from adcp.exceptions import IdempotencyConflictError
from adcp.server.idempotency import CachedResponse, IdempotencyStore, WebhookDedupStore

from ad_buyer_storage import LockNotOwnedError
from ad_buyer_storage_adcp import StorageIdempotencyBackend


class _Ctx:
    def __init__(self, principal: str) -> None:
        self.caller_identity = principal
        self.tenant_id = None


async def test_one_execution_and_replays_through_the_sdk_store(backend) -> None:
    async with StorageIdempotencyBackend(backend.target()) as idem:
        store = IdempotencyStore(idem, ttl_seconds=3600)
        calls: list[Any] = []

        async def create_media_buy(self: Any, params: dict[str, Any], context: Any) -> dict[str, Any]:
            calls.append(params)
            await asyncio.sleep(0.05)
            return {"media_buy_id": f"mb_{len(calls)}", "status": "active"}

        wrapped = store.wrap(create_media_buy)
        params = {"idempotency_key": "k" * 20 + "\x01:*?[x]", "budget": 100}
        results = await asyncio.gather(*(wrapped(None, dict(params), _Ctx("principal-a")) for _ in range(5)))
        assert len(calls) == 1
        first = next(r for r in results if "replayed" not in r)
        assert all(r["media_buy_id"] == first["media_buy_id"] for r in results)
        assert sum(1 for r in results if r.get("replayed") is True) == 4
        # a different payload under the same key is a conflict
        with pytest.raises(IdempotencyConflictError):
            await wrapped(None, {**params, "budget": 200}, _Ctx("principal-a"))
        # the same key for another principal is another slot
        other = await wrapped(None, dict(params), _Ctx("principal-b"))
        assert "replayed" not in other
        assert len(calls) == 2


async def test_first_writer_wins_and_expiry(backend) -> None:
    async with StorageIdempotencyBackend(backend.target()) as idem:
        now = time.time()
        first = CachedResponse("h1", {"a": 1, "big": 2**70, "n": None}, now + 60)
        assert await idem.put_if_absent("s", "k", first)
        assert not await idem.put_if_absent("s", "k", CachedResponse("h2", {}, now + 60))
        await idem.put("s", "k", CachedResponse("h3", {}, now + 60))  # live entry kept
        assert await idem.get("s", "k") == first
        # an entry whose expiry passed is gone for get, and replaced by put
        await idem.put_if_absent("s", "old", CachedResponse("h", {}, now + 0.3))
        await asyncio.sleep(0.4)
        assert await idem.get("s", "old") is None
        assert await idem.put_if_absent("s", "old", CachedResponse("h4", {}, now + 60))
        assert getattr(await idem.get("s", "old"), "payload_hash", None) == "h4"


async def test_delete_expired_with_a_cutoff(backend) -> None:
    async with StorageIdempotencyBackend(backend.target()) as idem:
        now = time.time()
        await idem.put("s", "a", CachedResponse("h", {}, now + 100))
        await idem.put("s", "b", CachedResponse("h", {}, now + 1000))
        assert await idem.delete_expired(now + 500) == 1
        assert await idem.get("s", "a") is None
        assert await idem.get("s", "b") is not None
        assert await idem.delete_expired() == 0


async def test_replace_needs_the_hold(backend) -> None:
    async with StorageIdempotencyBackend(backend.target()) as idem:
        entry = CachedResponse("h", {"v": 1}, time.time() + 60)
        with pytest.raises(LockNotOwnedError):
            await idem.replace("s", "k", entry)
        async with idem.hold("s", "k"):
            await idem.put("s", "k", entry)
            await idem.replace("s", "k", CachedResponse("h", {"v": 2}, time.time() + 60))
        assert getattr(await idem.get("s", "k"), "response", None) == {"v": 2}


async def test_a_holder_whose_lease_passed_on_cannot_write(backend) -> None:
    """A holder frozen past its lease: the next one runs, and the frozen one's write is refused."""
    async with (
        StorageIdempotencyBackend(backend.target(), lease_seconds=60) as frozen,
        StorageIdempotencyBackend(backend.target(), lease_seconds=60) as other,
    ):
        entered, resume = asyncio.Event(), asyncio.Event()

        async def frozen_holder() -> None:
            async with frozen.hold("s", "k"):
                entered.set()
                await resume.wait()
                with pytest.raises(LockNotOwnedError):
                    await frozen.put("s", "k", CachedResponse("late", {}, time.time() + 60))

        task = asyncio.create_task(frozen_holder())
        await entered.wait()
        # what the lease's expiry does to a holder frozen longer than its TTL
        assert await other.store.delete(frozen._lease_key("s", "k"))
        async with other.hold("s", "k"):
            await other.put("s", "k", CachedResponse("winner", {}, time.time() + 60))
        resume.set()
        await task
        assert getattr(await other.get("s", "k"), "payload_hash", None) == "winner"


async def test_holds_serialize_across_backend_objects(backend) -> None:
    """Two backend objects (as two processes would have) on one store: never two holders."""
    async with (
        StorageIdempotencyBackend(backend.target()) as one,
        StorageIdempotencyBackend(backend.target()) as two,
    ):
        inside = 0
        most = 0

        async def work(idem: StorageIdempotencyBackend) -> None:
            nonlocal inside, most
            async with idem.hold("scope", "key"):
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(work(one if i % 2 else two) for i in range(8)))
        assert most == 1


async def test_webhook_dedup_claims(backend) -> None:
    async with StorageIdempotencyBackend(backend.target()) as idem:
        dedup = WebhookDedupStore(idem, processing_ttl_seconds=1)
        claims = await asyncio.gather(*(dedup.claim("sender", "key-1", "hash") for _ in range(4)))
        statuses = sorted(c.status for c in claims)
        assert statuses == ["claimed", "in_progress", "in_progress", "in_progress"]
        owner = next(c for c in claims if c.status == "claimed")
        assert owner.claim_token is not None
        assert (await dedup.claim("sender", "key-1", "other-hash")).status == "conflict"
        assert await dedup.complete("sender", "key-1", "hash", owner.claim_token)
        assert (await dedup.claim("sender", "key-1", "hash")).status == "handled"
        # a released claim can be claimed again; a lease past its TTL too
        second = await dedup.claim("sender", "key-2", "hash")
        assert second.claim_token is not None
        assert await dedup.release("sender", "key-2", "hash", second.claim_token) is True
        third = await dedup.claim("sender", "key-2", "hash")
        assert third.status == "claimed"
        await asyncio.sleep(1.1)
        assert (await dedup.claim("sender", "key-2", "hash")).status == "claimed"
