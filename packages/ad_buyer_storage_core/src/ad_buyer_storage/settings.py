"""Settings shared by every backend, read from the environment and ``.env``.

Backend-specific settings (``SQLITE_*``, ``REDIS_*``, ``POSTGRES_*`` beyond the pool size) live
in each backend's own package. Secrets never reach a repr, log line or error message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .codec import DEFAULT_MAX_VALUE_BYTES
from .errors import ConfigurationError, InvalidTTLError
from .redaction import redact_routes, redact_url
from .validation import INT64_MAX, INT64_MIN, ttl_to_ms

__all__ = [
    "BackendChoice",
    "SettingsBase",
    "StorageSettings",
    "choose_backend",
    "load_backend_settings",
    "load_settings",
    "url_scheme",
]

POSTGRES_SCHEMES = frozenset({"postgres", "postgresql", "postgresql+asyncpg"})


class SettingsBase(BaseSettings):
    """Base of every settings model, core's and each backend's.

    * Its repr and str show no secret: any string setting may hold a URL (a name field may be
      given one by mistake), so every string is shown redacted, route tables route by route.
    * Numbers are finite (``inf`` and ``nan`` parse as floats, then break the first call that
      uses them) and integers fit in 64 bits (every server takes them as such); each field
      adds its own bounds. Refused at load time, naming the setting.
    """

    model_config = SettingsConfigDict(allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _fits_in_64_bits(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            raise ValueError("must fit in a signed 64-bit integer")
        return value

    def shown(self, name: str) -> object:
        """The value of setting *name* as it may be printed."""
        value = getattr(self, name)
        if not isinstance(value, str):
            return value
        return redact_routes(value) if name.endswith("routes") else redact_url(value)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, self.shown(name) if name is not None else value


class StorageSettings(SettingsBase):
    """``STORAGE_TYPE``, ``DATABASE_URL``, ``REDIS_URL``, pool sizes, timeouts, TTL defaults."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    #: ``sqlite``, ``redis``, ``postgres``, ``hybrid``, ``memory`` or any installed plugin name.
    #: Unset: chosen from the URLs (see :func:`choose_backend`).
    storage_type: str | None = None
    database_url: str = "sqlite:///./ad_buyer.db"
    redis_url: str | None = None
    postgres_pool_min: int = Field(2, ge=0)
    postgres_pool_max: int = Field(10, ge=1)
    #: Seconds allowed to open a connection.
    storage_connect_timeout: float = Field(5.0, gt=0)
    #: Seconds allowed for one command or query before a typed timeout error.
    storage_command_timeout: float = Field(10.0, gt=0)
    #: Default TTL of ``set_session`` (seconds).
    session_default_ttl: float = Field(86_400, gt=0)
    #: Largest encoded value accepted (bytes of UTF-8 JSON).
    storage_max_value_bytes: int = Field(DEFAULT_MAX_VALUE_BYTES, gt=0)
    #: Hybrid route table: ``"session:=redis,cache:=redis,*=postgres"`` or JSON; names or URLs.
    storage_routes: str | None = None

    @field_validator("storage_type", mode="before")
    @classmethod
    def _normalise_type(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return value or None
        return value

    @field_validator("session_default_ttl")
    @classmethod
    def _a_ttl_set_session_accepts(cls, value: float) -> float:
        try:
            ttl_to_ms(value)
        except InvalidTTLError as exc:
            raise ValueError(f"must be a TTL set_session accepts ({exc})") from None
        return value

    @field_validator("redis_url", "storage_routes", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _pool_bounds(self) -> StorageSettings:
        if self.postgres_pool_min > self.postgres_pool_max:
            raise ValueError(
                f"POSTGRES_POOL_MIN ({self.postgres_pool_min}) must be <= POSTGRES_POOL_MAX ({self.postgres_pool_max})"
            )
        return self


def load_settings(**overrides: Any) -> StorageSettings:
    """Read settings (environment, ``.env``) with *overrides* on top; raise ConfigurationError.

    The error lists each bad setting and why, never the offending input (it may be a URL
    with a password in it).
    """
    try:
        return StorageSettings(**overrides)
    except ValidationError as exc:
        error = ConfigurationError(f"invalid storage settings: {_problems(exc)}")
    # Raised outside the handler, so not chained to pydantic's error: that one quotes the inputs.
    raise error


def _problems(exc: ValidationError, env_prefix: str = "") -> str:
    """Each bad setting and why, by its variable name; never the input (it may hold a password)."""
    return "; ".join(
        f"{(env_prefix + '.'.join(map(str, e['loc']))).upper() or 'settings'}: {e['msg']}" for e in exc.errors()
    )


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_backend_settings(
    model: type[SettingsT], overrides: dict[str, Any], *, extra: tuple[str, ...] = ()
) -> SettingsT:
    """A backend's settings (``REDIS_*``...) from the environment, with keyword *overrides* on top.

    An override may use the field name (``key_prefix``) or the variable name
    (``redis_key_prefix``). A name that is neither, nor in *extra*, is a ConfigurationError:
    a silently ignored misspelling could point a deployment at the wrong namespace.
    """
    env_prefix = str(model.model_config.get("env_prefix", "")).lower()
    fields: dict[str, Any] = {}
    for name, value in overrides.items():
        if name in extra:
            continue
        field = name[len(env_prefix) :] if env_prefix and name.lower().startswith(env_prefix) else name
        if field not in model.model_fields:
            valid = sorted(model.model_fields) + list(extra)
            raise ConfigurationError(f"unknown setting {name!r}; valid here: {', '.join(valid)}")
        fields[field] = value
    try:
        return model(**fields)
    except ValidationError as exc:
        error = ConfigurationError(f"invalid settings: {_problems(exc, env_prefix)}")
    raise error  # outside the handler: see load_settings


def url_scheme(url: str | None) -> str:
    if not url or "://" not in url:
        return ""
    return url.split("://", 1)[0].lower()


@dataclass(frozen=True, slots=True)
class BackendChoice:
    name: str
    reason: str


def choose_backend(settings: StorageSettings) -> BackendChoice:
    """Which backend the settings select, and why (the CLI and the logs show the reason)."""
    if settings.storage_type:
        return BackendChoice(settings.storage_type, f"STORAGE_TYPE={settings.storage_type}")
    postgres = url_scheme(settings.database_url) in POSTGRES_SCHEMES
    if postgres and settings.redis_url:
        return BackendChoice("hybrid", "STORAGE_TYPE unset; DATABASE_URL is PostgreSQL and REDIS_URL is set")
    if postgres:
        return BackendChoice("postgres", "STORAGE_TYPE unset; DATABASE_URL is PostgreSQL")
    if settings.redis_url:
        return BackendChoice("redis", "STORAGE_TYPE unset; REDIS_URL is set and DATABASE_URL is not PostgreSQL")
    return BackendChoice(
        "sqlite", "STORAGE_TYPE unset; no PostgreSQL DATABASE_URL and no REDIS_URL: the embedded default"
    )
