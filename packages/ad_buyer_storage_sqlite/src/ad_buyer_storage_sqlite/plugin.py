"""Entry point of the ``sqlite`` backend. Imports no driver: aiosqlite loads only when chosen."""

from __future__ import annotations

from ad_buyer_storage import Capability
from ad_buyer_storage.plugins import BackendSpec, hookimpl


@hookimpl
def ad_buyer_storage_backends() -> list[BackendSpec]:
    return [
        BackendSpec(
            "sqlite",
            "ad_buyer_storage_sqlite.factory:create_backend",
            description="embedded SQLite file (aiosqlite): the default, one host",
            url_setting="database_url",
            url_schemes=("sqlite", "sqlite+aiosqlite"),
            url_default="sqlite:///./ad_buyer.db",  # the embedded default, with nothing configured
            settings="ad_buyer_storage_sqlite.settings:SQLiteSettings",
            install_hint="pip install ad-buyer-storage-sqlite",
            rank=0,
            capabilities=frozenset(
                {
                    Capability.EXPIRY,
                    Capability.ATOMIC,
                    Capability.TRANSACTIONS,
                    Capability.DURABLE,
                    Capability.MULTI_PROCESS,
                    Capability.REFRESH,
                    Capability.TURNS,
                }
            ),
        )
    ]
