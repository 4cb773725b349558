"""Entry point of the ``postgres`` backend. Imports no driver: asyncpg loads only when chosen."""

from __future__ import annotations

from ad_buyer_storage import Capability
from ad_buyer_storage.plugins import BackendSpec, hookimpl


@hookimpl
def ad_buyer_storage_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            "postgres",
            "ad_buyer_storage_postgres.factory:create_backend",
            description="PostgreSQL table (asyncpg pool): durable, many writers, LISTEN/NOTIFY",
            url_setting="database_url",
            url_schemes=("postgresql", "postgres", "postgresql+asyncpg"),
            settings="ad_buyer_storage_postgres.settings:PostgresSettings",
            install_hint="pip install ad-buyer-storage-postgres   (or: pip install 'ad-buyer-storage[postgres]')",
            rank=20,
            capabilities=frozenset(Capability),
        )
    ]
