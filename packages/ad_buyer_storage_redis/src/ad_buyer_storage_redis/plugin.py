"""Entry point of the ``redis`` backend. Imports no driver: redis-py loads only when chosen."""

from __future__ import annotations

from ad_buyer_storage import BackendSpec, hookimpl


@hookimpl
def ad_buyer_storage_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            "redis",
            "ad_buyer_storage_redis.factory:create_backend",
            description="Redis or Redis Cluster (redis.asyncio): native TTL, pub/sub",
            url_setting="redis_url",
            url_schemes=("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"),
        )
    ]
