"""Entry point of the backends built into core (memory, hybrid, mirror), registered exactly
like a third-party plugin. Importing it imports none of them."""

from __future__ import annotations

from .hookspecs import hookimpl
from .registry import BackendSpec


@hookimpl
def ad_buyer_storage_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            "memory",
            "ad_buyer_storage.memory:create_backend",
            description="in-process dict: the contract's reference implementation, for tests",
            url_schemes=("memory",),
        ),
        BackendSpec(
            "hybrid",
            "ad_buyer_storage.hybrid:create_backend",
            description="routes keys by prefix over installed backends (default: ephemeral on Redis, rest durable)",
        ),
        BackendSpec(
            "mirror",
            "ad_buyer_storage.mirror:create_backend",
            description="dual-write to two stores for zero-downtime moves (MIRROR_PRIMARY, MIRROR_SECONDARY)",
        ),
    ]
