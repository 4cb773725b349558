"""The conformance kit against the machine's real Redis (127.0.0.1:6379), one namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ad_buyer_storage import BudgetExceededError, Capability, Storage, UnsupportedOperationError
from ad_buyer_storage.testing import (
    AtomicContract,
    CoordinationContract,
    DomainContract,
    Harness,
    KeyValueContract,
    LifecycleContract,
    ListingContract,
    MultiProcessContract,
    PubSubContract,
    StorageContract,
    Subject,
    TransactionsContract,
    TTLContract,
    certifies,
)
from ad_buyer_storage_redis import RedisBackend, RedisClusterBackend
from tests._support.refusals import redis_refuses
from tests._support.servers import redis_cluster
from tests._support.shared import REDIS_URL


class TestRedisContract(StorageContract):
    @pytest.fixture
    def harness(self) -> Harness:
        prefix = f"abs-test:{uuid.uuid4().hex}:"  # never FLUSHDB: each test has its own namespace
        return Harness(
            lambda clock: RedisBackend(REDIS_URL, key_prefix=prefix),
            uses_clock=False,
            child_backend=("tests._support.recipes:redis", (REDIS_URL, prefix)),
            storage_options={"max_value_bytes": 64 * 1024},
            fail_writes_to=lambda key: redis_refuses(REDIS_URL, prefix, key),
        )


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory) -> Iterator[str]:
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as nodes:
        yield f"redis+cluster://127.0.0.1:{nodes[0].port}"


def _cluster_harness(cluster_url: str, prefix: str) -> Harness:
    return Harness(
        lambda clock: RedisClusterBackend(cluster_url, key_prefix=prefix),
        uses_clock=False,
        child_backend=("tests._support.recipes:redis", (cluster_url, prefix)),
        storage_options={"max_value_bytes": 64 * 1024},
        fail_writes_to=lambda key: redis_refuses(cluster_url, prefix, key),
    )


class TestRedisClusterContract(
    LifecycleContract,
    KeyValueContract,
    ListingContract,
    TTLContract,
    AtomicContract,
    PubSubContract,
    MultiProcessContract,
    DomainContract,
    CoordinationContract,
):
    """Every area but transactions: the kit's transactions use keys of several hash slots,
    which a cluster refuses (see test_redis_cluster.py); they run below on one slot."""

    @pytest.fixture
    def harness(self, cluster_url: str) -> Harness:
        return _cluster_harness(cluster_url, f"abs-test:{uuid.uuid4().hex}:")

    async def test_book_order_never_overspends(self, subject: Subject) -> None:
        pytest.skip("book_order's transaction spans hash slots, which a cluster refuses: the one-slot class runs it")


class TestRedisClusterOneSlotTransactions(TransactionsContract):
    """Transactions on a cluster, every key of the namespace in one hash slot (a hash tag)."""

    @certifies("domain", Capability.TRANSACTIONS)
    async def test_book_order_never_overspends(self, subject: Subject) -> None:
        await DomainContract().test_book_order_never_overspends(subject)

    @pytest.fixture
    def harness(self, cluster_url: str) -> Harness:
        return _cluster_harness(cluster_url, f"{{abs-test-{uuid.uuid4().hex}}}:")


async def test_a_cluster_transaction_needs_one_hash_slot(cluster_url: str) -> None:
    prefix = f"abs-test:{uuid.uuid4().hex}:"
    async with Storage(RedisClusterBackend(cluster_url, key_prefix=prefix)) as storage:

        async def two_slots() -> None:
            async with storage.transaction() as tx:
                tx.set("campaign:c1", 1)
                tx.set("order:o1", 2)

        with pytest.raises(UnsupportedOperationError, match="one hash slot; give them one hash tag"):
            await two_slots()
        assert await storage.get_many(["campaign:c1", "order:o1"]) == {}
        await storage.set_campaign("{c1}", {"budget": "20.00", "spent": "0"})
        for order in ("{c1}:o1", "{c1}:o2"):
            await storage.book_order(order, {"n": 1}, campaign_id="{c1}", amount="10.00")
        with pytest.raises(BudgetExceededError):
            await storage.book_order("{c1}:o3", {"n": 1}, campaign_id="{c1}", amount="10.00")
        assert (await storage.get_campaign("{c1}") or {})["spent"] == "20.00"
        await storage.clear()
