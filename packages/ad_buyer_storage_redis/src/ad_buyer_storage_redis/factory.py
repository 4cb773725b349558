"""Build a :class:`RedisBackend` from the core settings plus ``REDIS_*`` settings."""

from __future__ import annotations

from typing import Any

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.plugins.settings import StorageSettings, load_backend_settings

from .backend import RedisBackend, RedisClusterBackend, is_cluster_url
from .settings import RedisSettings

__all__ = ["create_backend"]


def create_backend(settings: StorageSettings, /, **overrides: Any) -> RedisBackend | RedisClusterBackend:
    """``overrides`` may name any ``REDIS_*`` setting (``key_prefix=``, ``cluster=``...) or ``url=``."""
    redis_settings = load_backend_settings(RedisSettings, overrides, extra=("url",))
    url = overrides.get("url") or settings.url("redis_url")
    if not url:
        raise ConfigurationError("the 'redis' backend needs REDIS_URL (for example redis://127.0.0.1:6379/0)")
    backend_class = RedisClusterBackend if (redis_settings.cluster or is_cluster_url(url)) else RedisBackend
    return backend_class(
        url,
        key_prefix=redis_settings.key_prefix,
        max_connections=redis_settings.max_connections,
        pool_timeout=redis_settings.pool_timeout,
        connect_timeout=settings.storage_connect_timeout,
        command_timeout=settings.storage_command_timeout,
        health_check_interval=redis_settings.health_check_interval,
        scan_count=redis_settings.scan_count,
    )
