"""``REDIS_*`` settings, each spelled once here: the factory reads them from the environment, a
direct constructor (``RedisBackend(url, key_prefix=...)``) from its arguments alone.

The timeouts are core's (``STORAGE_CONNECT_TIMEOUT``/``STORAGE_COMMAND_TIMEOUT``), not ours.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.plugins.settings import SettingsBase, problems

__all__ = ["RedisSettings", "given_settings"]

#: False while a direct constructor builds its settings: from its arguments, never the environment.
_FROM_ENVIRONMENT: ContextVar[bool] = ContextVar("ad_buyer_storage_redis_environment", default=True)


class RedisSettings(SettingsBase):
    model_config = SettingsConfigDict(env_prefix="REDIS_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    #: The server (``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``, ``redis+sentinel://``).
    #: The factory sets it to the URL core's settings chose (``REDIS_URL``, or the one given).
    url: str | None = None
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if not _FROM_ENVIRONMENT.get():
            return (init_settings,)
        return init_settings, env_settings, dotenv_settings, file_secret_settings


@contextmanager
def _arguments_only() -> Iterator[None]:
    token = _FROM_ENVIRONMENT.set(False)
    try:
        yield
    finally:
        _FROM_ENVIRONMENT.reset(token)


def given_settings(settings: RedisSettings | str, fields: Mapping[str, Any]) -> RedisSettings:
    """The settings of a backend constructed with *settings* (a model, used as it is, or a URL)
    and keyword *fields* (the model's field names: ``key_prefix=``...). Built from these alone,
    never from the environment (``REDIS_KEY_PREFIX`` set there changes no direct constructor).
    An unknown name is a ConfigurationError naming the closest valid one."""
    if isinstance(settings, RedisSettings) and not fields:
        return settings
    valid = sorted(RedisSettings.model_fields)
    if "url" in fields and isinstance(settings, str):
        raise ConfigurationError("RedisBackend(url, url=...): the URL is given twice")
    if fields.get("key_prefix") == "":
        raise ConfigurationError("REDIS_KEY_PREFIX must not be empty: it is what keeps other data out of reach")
    for name in fields:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close and close[0] != name else ""
            raise ConfigurationError(f"unknown Redis setting {name!r}: {hint}valid: {', '.join(valid)}")
    base = settings.model_dump() if isinstance(settings, RedisSettings) else {"url": settings}
    try:
        with _arguments_only():
            return RedisSettings(**{**base, **fields})
    except ValidationError as exc:
        error = ConfigurationError(f"invalid Redis settings: {problems(exc, 'redis_')}")
    raise error  # outside the handler: pydantic's error quotes the inputs
