"""Build a :class:`RedisBackend` from the core settings plus ``REDIS_*`` settings."""

from __future__ import annotations

from typing import Any

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.plugins.settings import StorageSettings, load_backend_settings

from .backend import RedisBackend, RedisClusterBackend
from .settings import RedisSettings
from .urls import is_cluster_url

__all__ = ["create_backend"]


def create_backend(settings: StorageSettings, /, **overrides: Any) -> RedisBackend | RedisClusterBackend:
    """``overrides`` may name any ``REDIS_*`` setting (``key_prefix=``, ``cluster=``...) or ``url=``."""
    redis_settings = load_backend_settings(RedisSettings, overrides)
    url = overrides.get("url") or settings.url("redis_url")
    if not url:
        raise ConfigurationError("the 'redis' backend needs REDIS_URL (for example redis://127.0.0.1:6379/0)")
    # The URL core's settings chose (REDIS_URL, or the one open_storage() was given).
    redis_settings = redis_settings.model_copy(update={"url": url})
    backend_class = RedisClusterBackend if (redis_settings.cluster or is_cluster_url(url)) else RedisBackend
    return backend_class(
        redis_settings,
        connect_timeout=settings.storage_connect_timeout,
        command_timeout=settings.storage_command_timeout,
    )
