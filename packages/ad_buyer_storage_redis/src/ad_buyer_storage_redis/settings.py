"""``REDIS_*`` settings (the server comes from ``REDIS_URL``; timeouts from core's settings)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ad_buyer_storage.plugins.settings import SettingsBase

__all__ = ["RedisSettings"]


class RedisSettings(SettingsBase):
    model_config = SettingsConfigDict(env_prefix="REDIS_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    #: Every key is stored as PREFIX + key; nothing outside the prefix is read, listed or deleted.
    key_prefix: str = Field("ad_buyer:", min_length=1)
    #: Connections per server (per node in a cluster).
    max_connections: int = Field(50, gt=0)
    #: Seconds to wait for a free connection when all are busy, then BusyError.
    pool_timeout: float = Field(5.0, gt=0)
    #: Seconds between PINGs on idle connections (0: off).
    health_check_interval: float = Field(30.0, ge=0)
    #: Treat REDIS_URL as a Redis Cluster seed node (also implied by a redis+cluster:// URL).
    cluster: bool = False
    #: Keys asked per SCAN round trip.
    scan_count: int = Field(1000, gt=0)
