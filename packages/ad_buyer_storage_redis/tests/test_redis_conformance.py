"""The conformance kit against the machine's real Redis (127.0.0.1:6379), one namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ad_buyer_storage.testing import Harness, StorageContract
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


class TestRedisClusterContract(StorageContract):
    @pytest.fixture
    def harness(self, cluster_url: str) -> Harness:
        prefix = f"abs-test:{uuid.uuid4().hex}:"
        return Harness(
            lambda clock: RedisClusterBackend(cluster_url, key_prefix=prefix),
            uses_clock=False,
            child_backend=("tests._support.recipes:redis", (cluster_url, prefix)),
            storage_options={"max_value_bytes": 64 * 1024},
            fail_writes_to=lambda key: redis_refuses(cluster_url, prefix, key),
        )
