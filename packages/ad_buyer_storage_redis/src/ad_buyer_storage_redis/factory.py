"""Build a :class:`RedisBackend` from the core settings plus ``REDIS_*`` settings."""

from __future__ import annotations

from typing import Any

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.settings import StorageSettings
from pydantic import ValidationError

from .backend import RedisBackend, RedisClusterBackend, is_cluster_url
from .settings import RedisSettings

__all__ = ["create_backend"]


def create_backend(settings: StorageSettings, /, **overrides: Any) -> RedisBackend | RedisClusterBackend:
    """``overrides`` may name any ``REDIS_*`` setting (``key_prefix=``, ``cluster=``...) or ``url=``."""
    url = overrides.pop("url", None) or settings.redis_url
    if not url:
        raise ConfigurationError("the 'redis' backend needs REDIS_URL (for example redis://127.0.0.1:6379/0)")
    try:
        redis_settings = RedisSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"REDIS_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid Redis settings: {problems}") from None
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
