"""StorageProposalStore, StorageTaskRegistry, StorageMediaBuyContextStore: the SDK's protocols and
their documented rules (from the SDK's docstrings), on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from adcp.decisioning import (
    AdcpError,
    MediaBuyContexts,
    MediaBuyContextStore,
    ProposalState,
    ProposalStore,
    Recipe,
    TaskRegistry,
)

from ad_buyer_storage import Capability
from ad_buyer_storage_adcp import StorageMediaBuyContextStore, StorageProposalStore, StorageTaskRegistry


class DemoRecipe(Recipe):
    recipe_kind: str = "demo"
    line_item_id: str = "li"


def decode(payload):
    return DemoRecipe.model_validate(payload)


FAR = datetime(2099, 1, 2, tzinfo=UTC)
# The backends that declare Capability.DURABLE (Redis does not: its persistence is the server's configuration).
DURABLE = {"sqlite", "postgres", "hybrid"}


async def _committed(store: StorageProposalStore, pid: str = "p1", account: str = "acct") -> None:
    await store.put_draft(proposal_id=pid, account_id=account, recipes={"prod": DemoRecipe(line_item_id="x")},
                          proposal_payload={"proposal_id": pid, "n": 2**70})  # fmt: skip
    await store.commit(pid, expires_at=FAR, proposal_payload={"final": True}, expected_account_id=account)


async def test_proposal_lifecycle(backend) -> None:
    async with StorageProposalStore(backend.target(), recipe_decoder=decode) as store:
        assert isinstance(store, ProposalStore)
        assert store.is_durable is (Capability.DURABLE in store.store.capabilities_for("adcp:proposal:x"))
        assert store.is_durable is (backend.name in DURABLE)
        await store.put_draft(proposal_id="p\x01:*", account_id="acct", recipes={"prod": DemoRecipe(line_item_id="1")},
                              proposal_payload={"proposal_id": "p", "n": 2**70})  # fmt: skip
        record = await store.get("p\x01:*", expected_account_id="acct")
        assert record is not None
        assert record.state == ProposalState.DRAFT
        assert getattr(record.recipes["prod"], "line_item_id", None) == "1"
        assert record.proposal_payload == {"proposal_id": "p", "n": 2**70}
        assert await store.get("p\x01:*", expected_account_id="other") is None  # cross-tenant: None
        await store.commit("p\x01:*", expires_at=FAR, proposal_payload={"f": 1}, expected_account_id="acct")
        await store.commit(
            "p\x01:*", expires_at=FAR, proposal_payload={"f": 1}, expected_account_id="acct"
        )  # equal: ok
        with pytest.raises(AdcpError) as caught:
            await store.commit("p\x01:*", expires_at=FAR, proposal_payload={"f": 2}, expected_account_id="acct")
        assert caught.value.code == "INTERNAL_ERROR"
        with pytest.raises(AdcpError):
            await store.put_draft(proposal_id="p\x01:*", account_id="acct", recipes={}, proposal_payload={})
        reserved = await store.try_reserve_consumption("p\x01:*", expected_account_id="acct")
        assert reserved.state == ProposalState.CONSUMING
        await store.release_consumption("p\x01:*", expected_account_id="acct")
        await store.release_consumption("p\x01:*", expected_account_id="acct")  # idempotent on COMMITTED
        await store.try_reserve_consumption("p\x01:*", expected_account_id="acct")
        await store.finalize_consumption("p\x01:*", media_buy_id="mb1", expected_account_id="acct")
        await store.finalize_consumption("p\x01:*", media_buy_id="mb1", expected_account_id="acct")
        found = await store.get_by_media_buy_id("mb1", expected_account_id="acct")
        assert found is not None
        assert found.state == ProposalState.CONSUMED
        assert found.media_buy_id == "mb1"
        assert await store.get_by_media_buy_id("mb1", expected_account_id="other") is None
        with pytest.raises(AdcpError) as caught:
            await store.try_reserve_consumption("p\x01:*", expected_account_id="acct")
        assert caught.value.code == "PROPOSAL_NOT_COMMITTED"
        with pytest.raises(AdcpError) as caught:
            await store.try_reserve_consumption("nope", expected_account_id="acct")
        assert caught.value.code == "PROPOSAL_NOT_FOUND"
        await store.discard("p\x01:*", expected_account_id="other")  # a cross-tenant probe deletes nothing
        assert await store.get("p\x01:*", expected_account_id="acct") is not None
        await store.discard("p\x01:*", expected_account_id="acct")
        assert await store.get_by_media_buy_id("mb1", expected_account_id="acct") is None


async def test_one_consumption_winner_across_store_objects(backend) -> None:
    async with (
        StorageProposalStore(backend.target(), recipe_decoder=decode) as one,
        StorageProposalStore(backend.target(), recipe_decoder=decode) as two,
    ):
        await _committed(one)

        async def attempt(store: StorageProposalStore) -> str:
            try:
                await store.try_reserve_consumption("p1", expected_account_id="acct")
                return "ok"
            except AdcpError as exc:
                return exc.code

        results = await asyncio.gather(*(attempt(one if i % 2 else two) for i in range(6)))
        assert sorted(results) == ["PROPOSAL_NOT_COMMITTED"] * 5 + ["ok"]


async def test_drafts_expire_after_draft_ttl(backend) -> None:
    async with StorageProposalStore(backend.target(), recipe_decoder=decode, draft_ttl=timedelta(seconds=1)) as store:
        await store.put_draft(proposal_id="d", account_id="a", recipes={}, proposal_payload={})
        await asyncio.sleep(0.5)
        await store.put_draft(proposal_id="d", account_id="a", recipes={}, proposal_payload={"v": 2})  # keeps deadline
        await asyncio.sleep(0.7)
        assert await store.get("d", expected_account_id="a") is None


async def test_task_registry(backend) -> None:
    async with StorageTaskRegistry(backend.target()) as registry:
        assert isinstance(registry, TaskRegistry)
        assert registry.is_durable is (backend.name in DURABLE)
        with pytest.raises(ValueError, match="account_id"):
            await registry.issue(account_id="<unset>", task_type="create_media_buy")
        tid = await registry.issue(account_id="acct", task_type="create_media_buy", request_context={"c": None},
                                   webhook_url="https://buyer.example/hook")  # fmt: skip
        record = await registry.get(tid, expected_account_id="acct")
        assert record is not None
        assert record["state"] == "submitted"
        assert record["context"] == {"c": None}
        assert await registry.get(tid, expected_account_id="other") is None
        await registry.update_progress(tid, {"pct": 50})
        assert (await registry.get(tid) or {}).get("state") == "working"
        await registry.complete(tid, {"media_buy_id": "mb"})
        await registry.complete(tid, {"media_buy_id": "mb"})  # equal: idempotent
        with pytest.raises(ValueError, match="different result"):
            await registry.complete(tid, {"media_buy_id": "other"})
        with pytest.raises(ValueError, match="terminal"):
            await registry.fail(tid, {"code": "X"})
        await registry.update_progress(tid, {"pct": 99})  # dropped after the end
        assert (await registry.get(tid) or {}).get("progress") == {"pct": 50}
        other = await registry.issue(account_id="acct", task_type="sync_creatives")
        await registry.fail(other, {"code": "X"})
        await registry.issue(account_id="someone-else", task_type="sync_creatives")
        page = await registry.list(account_id="acct")
        assert sorted(t["task_id"] for t in page["tasks"]) == sorted([tid, other])
        await registry.discard(other)
        await registry.discard(other)
        assert await registry.get(other) is None


async def test_media_buy_contexts_first_write_wins(backend) -> None:
    async with StorageMediaBuyContextStore(backend.target()) as store:
        assert isinstance(store, MediaBuyContextStore)
        first = MediaBuyContexts(context={"b": 1, "a": None, "big": 2**70, "f": 1.0},
                                 package_contexts={"pk1": {"x": 1}})  # fmt: skip
        await store.save_contexts("acct", "mb1", first)
        await store.save_contexts(
            "acct", "mb1", MediaBuyContexts(context={"other": 1}, package_contexts={"pk1": {"y": 2}, "pk2": {"z": 3}})
        )
        loaded = await store.load_contexts("acct", ["mb1", "missing"])
        assert list(loaded) == ["mb1"]
        assert loaded["mb1"].context == {"b": 1, "a": None, "big": 2**70, "f": 1.0}
        assert list(loaded["mb1"].context) == ["b", "a", "big", "f"]
        assert isinstance(loaded["mb1"].context["f"], float)
        assert dict(loaded["mb1"].package_contexts) == {"pk1": {"x": 1}, "pk2": {"z": 3}}
        assert await store.load_contexts("other", ["mb1"]) == {}
