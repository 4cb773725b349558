"""Entry point of the backends built into core (memory, hybrid, mirror), registered exactly
like a third-party plugin. Importing it imports none of them."""

from __future__ import annotations

from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.plugins.hookspecs import hookimpl
from ad_buyer_storage.plugins.spec import BackendSpec


@hookimpl
def ad_buyer_storage_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            "memory",
            "ad_buyer_storage.backends.memory:create_backend",
            description="in-process dict: the contract's reference implementation, for tests",
            url_schemes=("memory",),
            rank=-10,
            capabilities=frozenset(
                {Capability.EXPIRY, Capability.ATOMIC, Capability.PUBSUB, Capability.TRANSACTIONS, Capability.REFRESH}
            ),
        ),
        BackendSpec(
            "hybrid",
            "ad_buyer_storage.plugins.composition:create_hybrid",
            description="routes keys by prefix over installed backends (default: ephemeral keyspaces on the fast "
            "store, the rest on the durable one)",
            composite=True,
        ),
        BackendSpec(
            "mirror",
            "ad_buyer_storage.plugins.composition:create_mirror",
            description="dual-write to two stores for zero-downtime moves (MIRROR_PRIMARY, MIRROR_SECONDARY)",
            settings="ad_buyer_storage.plugins.composition:MirrorSettings",
            composite=True,
        ),
    ]
