"""``POSTGRES_*`` settings: every setting of the backend, spelled once.

The server is ``DATABASE_URL`` (core's setting, which the factory passes on as ``url``); the
timeouts default to core's ``STORAGE_CONNECT_TIMEOUT`` / ``STORAGE_COMMAND_TIMEOUT``.
:meth:`PostgresSettings.given` builds the model from keyword fields alone (what
``PostgresBackend(url, schema=..., pool_max=...)`` does): the environment and ``.env`` are
not read, unknown names are refused naming the closest valid one.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.kit.identifiers import DEFAULT_INDEXED_FIELDS, indexed_fields
from ad_buyer_storage.plugins.settings import SettingsBase, StorageSettings

from .dsn import SCHEME_START, split_urls

__all__ = ["COMPATIBLE_NAMES", "DEFAULT_COMMAND_TIMEOUT", "DEFAULT_CONNECT_TIMEOUT", "PostgresSettings"]

#: Core's defaults, for a model whose timeouts were left unset and that no factory completed.
DEFAULT_CONNECT_TIMEOUT: float = StorageSettings.model_fields["storage_connect_timeout"].default
DEFAULT_COMMAND_TIMEOUT: float = StorageSettings.model_fields["storage_command_timeout"].default
#: Keywords ``PostgresBackend`` took before it was built from this model -> their field.
COMPATIBLE_NAMES = {"schema": "schema_name", "read_urls": "read_url"}
_PREFIX = "postgres_"
# False while given() builds a model: only the fields it was given, at their defaults otherwise.
_READ_ENVIRONMENT: ContextVar[bool] = ContextVar("ad_buyer_storage_postgres_read_environment", default=True)


class PostgresSettings(SettingsBase):
    model_config = SettingsConfigDict(
        env_prefix="POSTGRES_", env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    #: The server: ``DATABASE_URL`` (``postgresql://``, ``postgres://``, ``postgresql+asyncpg://``).
    url: str | None = Field(None, alias="DATABASE_URL")
    #: Schema and table of this namespace (created on first connect if missing).
    schema_name: str = Field("public", alias="POSTGRES_SCHEMA")
    table: str = "kv_store"
    #: Connections kept open, and the most opened, per process (the backend checks min <= max).
    pool_min: int = Field(2, ge=0)
    pool_max: int = Field(10, ge=1)
    #: Seconds to wait for a free pooled connection, then BusyError.
    acquire_timeout: float = Field(5.0, gt=0)
    #: Seconds allowed to open a connection, and for one statement; unset: core's
    #: ``STORAGE_CONNECT_TIMEOUT`` and ``STORAGE_COMMAND_TIMEOUT``.
    connect_timeout: float | None = Field(None, gt=0)
    command_timeout: float | None = Field(None, gt=0)
    #: Prepared statements cached per connection; 0 behind pgbouncer in transaction mode.
    statement_cache_size: int = Field(100, ge=0)
    #: ``auto`` (probe at connect: direct, a transaction pooler, or unknown: then as under one),
    #: ``transaction`` (PgBouncer ``pool_mode=transaction`` in front: no statement cache, no
    #: session state) or ``session`` (a direct connection, session pooling or a plain TCP proxy:
    #: skips the probe connections, keeps the statement cache).
    pooling: Literal["auto", "transaction", "session"] = "auto"
    #: A direct connection to the server for LISTEN (pub/sub) when DATABASE_URL goes through a
    #: pooler in transaction mode; empty: LISTEN uses DATABASE_URL.
    listen_url: str | None = None
    #: Read replicas (hot standbys) for listing and filtered reads: one URL or several,
    #: comma-separated (or, given as a keyword, a list). Read-your-writes per backend object
    #: (see the README); empty: none.
    read_url: str | None = None
    #: Seconds between purges of expired rows (0, or None as a keyword: never); one instance
    #: sweeps at a time.
    sweep_interval: float = Field(60.0, ge=0)
    #: Rows deleted per purge statement.
    sweep_batch: int = Field(500, gt=0)
    #: Top-level JSON fields given an index, comma-separated: filtered lists on them read only
    #: the matching rows (each index costs every write a little; empty: none).
    indexed_fields: str = DEFAULT_INDEXED_FIELDS

    @field_validator("indexed_fields")
    @classmethod
    def _plain_field_names(cls, value: str) -> str:
        indexed_fields("POSTGRES_INDEXED_FIELDS", value)
        return value

    @field_validator("sweep_interval", mode="before")
    @classmethod
    def _none_is_never(cls, value: Any) -> Any:
        return 0.0 if value is None else value

    @field_validator("read_url", mode="before")
    @classmethod
    def _a_list_is_one_setting(cls, value: Any) -> Any:
        """A list of URLs (the ``read_urls=`` keyword) as the one comma-separated setting;
        each must be one URL, so that splitting the setting gives them back."""
        if isinstance(value, str) or not isinstance(value, Sequence):
            return value
        urls = [u for u in value if u]
        for url in urls:
            if not isinstance(url, str) or not SCHEME_START.match(url.strip()) or split_urls(url) != [url.strip()]:
                raise ValueError("each read URL must be one postgresql:// URL")
        return ",".join(urls) or None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _READ_ENVIRONMENT.get():
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        return (init_settings,)

    @classmethod
    def of(cls, settings: PostgresSettings | str, fields: Mapping[str, Any]) -> PostgresSettings:
        """What ``PostgresBackend(settings, **fields)`` runs on: the model as given (with
        *fields* on top, validated again), or one built from a URL and *fields* by :meth:`given`."""
        if isinstance(settings, PostgresSettings):
            return cls.given({**settings.model_dump(), **fields}) if fields else settings
        if any(cls.field_of(name) == "url" for name in fields):
            raise ConfigurationError("the PostgreSQL URL is given twice: as the first argument and as url=")
        return cls.given({"url": settings, **fields})

    @classmethod
    def given(cls, fields: Mapping[str, Any]) -> Self:
        """The settings *fields* name (by field name, ``POSTGRES_``-prefixed name, or a
        :data:`COMPATIBLE_NAMES` keyword), every other at its default: the environment and
        ``.env`` are not read. A bad name or value is a ConfigurationError."""
        values = {cls.field_of(name): value for name, value in fields.items()}
        token = _READ_ENVIRONMENT.set(False)
        try:
            return cls(**values)
        except ValidationError as exc:
            error = ConfigurationError(f"invalid settings: {cls._problems(exc)}")
        finally:
            _READ_ENVIRONMENT.reset(token)
        raise error  # outside the handler: not chained to pydantic's error, which quotes the inputs

    @staticmethod
    def _problems(exc: ValidationError) -> str:
        """Each bad setting by its variable name (an alias is one already), never the input."""
        named = []
        for error in exc.errors():
            where = ".".join(map(str, error["loc"]))
            variable = where if where.isupper() else (_PREFIX + where).upper()
            named.append(f"{variable or 'settings'}: {error['msg']}")
        return "; ".join(named)

    @classmethod
    def field_of(cls, name: str) -> str:
        """The field keyword *name* sets; ConfigurationError naming the closest valid one."""
        key = name.lower()
        key = key[len(_PREFIX) :] if key.startswith(_PREFIX) else key
        key = COMPATIBLE_NAMES.get(key, key)
        if key in cls.model_fields:
            return key
        valid = sorted({*cls.model_fields, *COMPATIBLE_NAMES})
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigurationError(f"unknown setting {name!r}; {hint}valid here: {', '.join(valid)}")

    @property
    def timeouts(self) -> tuple[float, float]:
        """Seconds to connect and per statement, core's defaults where unset."""
        connect = DEFAULT_CONNECT_TIMEOUT if self.connect_timeout is None else self.connect_timeout
        command = DEFAULT_COMMAND_TIMEOUT if self.command_timeout is None else self.command_timeout
        return connect, command
