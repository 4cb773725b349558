"""Redis Cluster failures are typed on every path: connect, every primitive, scans, pipelines.

redis-py's cluster errors (RedisClusterException) do not derive from RedisError, and the
cluster's own refusals (CLUSTERDOWN) are server replies: neither may reach a caller raw or as a
plain BackendError, or the CLI, doctor and the mirror's record mode miss them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from ad_buyer_storage import (
    ConfigurationError,
    Storage,
    StorageError,
    UnavailableError,
    open_storage,
)
from ad_buyer_storage_redis import RedisClusterBackend
from tests._support.servers import RedisServer, redis_cluster

pytestmark = pytest.mark.slow


def _ops(storage: Storage) -> dict[str, Callable[[], Awaitable[object]]]:
    """Every path of the cluster client: single-key calls, scripts, pipelines, scans."""
    many = [f"deal:{i}" for i in range(40)]  # spread over every node's slots
    return {
        "get": lambda: storage.get("deal:1"),
        "set": lambda: storage.set("deal:1", {"x": 1}),
        "set_if_absent": lambda: storage.set_if_absent("deal:new", 1),
        "set_if_version": lambda: storage.set("deal:1", 2, if_version="0"),
        "update": lambda: storage.update("deal:2", lambda v: (v or 0) + 1, default=0),
        "incr": lambda: storage.incr("rate_limit:x"),
        "delete": lambda: storage.delete("deal:1"),
        "exists": lambda: storage.exists("deal:1"),
        "get_many": lambda: storage.get_many(many),
        "set_many": lambda: storage.set_many(dict.fromkeys(many, 1)),
        "delete_many": lambda: storage.delete_many(many),
        "count": lambda: storage.count("deal:*"),
        "keys": lambda: storage.keys("deal:*"),
        "ttl": lambda: storage.ttl("deal:3"),
        "expire": lambda: storage.expire("deal:3", 60),
        "persist": lambda: storage.persist("deal:3"),
        "ping": lambda: storage.ping(),
        "info": lambda: storage.info(),
        "clear": lambda: storage.clear(),
    }


async def _outcomes(storage: Storage) -> dict[str, str]:
    """Run every op: "ok" or the storage error it raised (anything else escapes: the test fails)."""
    outcomes: dict[str, str] = {}
    for name, op in _ops(storage).items():
        try:
            await op()
        except StorageError as exc:
            outcomes[name] = type(exc).__name__
        else:
            outcomes[name] = "ok"
    return outcomes


# Answers that are not about the cluster: ttl() of a missing key, a stale if_version.
NOT_FAILURES = {"ok", "KeyNotFoundError", "VersionConflictError"}
UNAVAILABLE = {"UnavailableError", "StorageTimeoutError", "OutcomeUnknownError"}


def _wait_for_state(node: RedisServer, state: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while f"cluster_state:{state}" not in node.cli("cluster", "info"):
        assert time.monotonic() < deadline, f"the cluster never reached cluster_state:{state}"
        time.sleep(0.1)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[RedisServer]]:
    with redis_cluster(tmp_path / "cluster") as servers:
        yield servers


async def test_a_dead_node_then_a_dead_cluster_fail_typed_on_every_path(nodes: list[RedisServer], tmp_path) -> None:
    log = tmp_path / "repair.log"
    backend_url = f"redis+cluster://127.0.0.1:{nodes[0].port}"
    backend = RedisClusterBackend(backend_url, key_prefix="abs-test:", connect_timeout=1, command_timeout=2)
    mirror = open_storage(  # in record mode, a copy the dead cluster refuses is logged, not raised
        "mirror", primary="memory", secondary=backend_url, on_secondary_failure="record", repair_log=str(log)
    )
    async with Storage(backend) as storage, mirror as mirrored:
        await mirrored.set("deal:before", 1)
        with pytest.raises(ConfigurationError, match="overlaps"):  # the registry lives in one slot
            async with Storage(RedisClusterBackend(backend_url, key_prefix="abs-test:nested:")):
                pass
        assert set((await _outcomes(storage)).values()) <= NOT_FAILURES
        nodes[1].kill()
        assert set((await _outcomes(storage)).values()) <= NOT_FAILURES | UNAVAILABLE  # its slots are gone
        _wait_for_state(nodes[0], "fail")
        down = await _outcomes(storage)  # CLUSTERDOWN from the nodes still up: unavailable, not a bug
        assert set(down.values()) <= NOT_FAILURES | UNAVAILABLE, down
        assert "UnavailableError" in down.values()
        for node in nodes:
            node.kill()
        gone = await _outcomes(storage)  # the client cannot even rediscover the cluster
        assert set(gone.values()) <= UNAVAILABLE, gone
        await mirrored.set("deal:after", 2)
        assert await mirrored.get("deal:after") == 2
    assert '"deal:after"' in log.read_text()
    with pytest.raises(UnavailableError):
        async with open_storage(f"redis+cluster://127.0.0.1:{nodes[0].port}", storage_connect_timeout=1):
            pass


async def test_a_cluster_url_nothing_listens_on_is_unavailable() -> None:
    with pytest.raises(UnavailableError, match="Cluster"):
        async with open_storage("redis+cluster://127.0.0.1:1/0", storage_connect_timeout=1):
            pass


async def test_a_cluster_url_at_a_single_redis_says_so() -> None:
    with pytest.raises(ConfigurationError, match="single Redis"):
        async with open_storage("redis+cluster://127.0.0.1:6379/0", storage_connect_timeout=1):
            pass


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ad_buyer_storage.cli", *args],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **env},
    )  # fmt: skip


@pytest.mark.parametrize(
    "env",
    [
        {"STORAGE_TYPE": "redis", "REDIS_URL": "redis+cluster://127.0.0.1:1"},
        {"STORAGE_TYPE": "hybrid", "STORAGE_ROUTES": "session:=redis+cluster://127.0.0.1:1,*=memory"},
    ],
    ids=["redis", "hybrid"],
)
def test_doctor_reports_a_dead_cluster_as_unhealthy(env: dict[str, str]) -> None:
    done = _cli("doctor", STORAGE_CONNECT_TIMEOUT="1", **env)
    assert done.returncode == 1, done.stderr
    assert "UNHEALTHY" in done.stdout
    assert "Traceback" not in done.stderr
