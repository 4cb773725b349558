"""Entry point of the ``redis`` backend. Imports no driver: redis-py loads only when chosen."""

from __future__ import annotations

from ad_buyer_storage import Capability
from ad_buyer_storage.plugins import BackendSpec, hookimpl


@hookimpl
def ad_buyer_storage_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            "redis",
            "ad_buyer_storage_redis.factory:create_backend",
            description="Redis, Sentinel or Cluster (redis.asyncio): native TTL, pub/sub (not on a cluster)",
            url_setting="redis_url",
            url_schemes=(
                "redis",
                "rediss",
                "unix",
                "redis+cluster",
                "rediss+cluster",
                "redis+sentinel",
                "rediss+sentinel",
            ),
            settings="ad_buyer_storage_redis.settings:RedisSettings",
            install_hint="pip install ad-buyer-storage-redis   (or: pip install 'ad-buyer-storage[redis]')",
            rank=10,
            fast=True,  # in memory: the hybrid router's home for sessions, caches, locks, rate limits
            capabilities=frozenset(
                {
                    Capability.EXPIRY,
                    Capability.ATOMIC,
                    Capability.MULTI_PROCESS,
                    Capability.PUBSUB,
                    Capability.TRANSACTIONS,
                    Capability.REFRESH,
                    Capability.TURNS,
                }
            ),
        )
    ]
