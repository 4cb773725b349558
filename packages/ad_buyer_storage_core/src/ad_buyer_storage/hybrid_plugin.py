"""Entry point of the built-in ``hybrid`` router: registered exactly like any other backend."""

from __future__ import annotations

from .hookspecs import hookimpl
from .registry import BackendSpec


@hookimpl
def ad_buyer_storage_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            "hybrid",
            "ad_buyer_storage.hybrid:create_backend",
            description="routes keys by prefix over installed backends (default: ephemeral on Redis, rest durable)",
        )
    ]
