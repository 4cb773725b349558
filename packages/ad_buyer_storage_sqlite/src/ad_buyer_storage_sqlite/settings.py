"""``SQLITE_*`` settings (the file itself comes from ``DATABASE_URL``): each spelled once, here.

The plugin's factory loads them from the environment (:func:`load_backend_settings`); a
:class:`~ad_buyer_storage_sqlite.backend.SQLiteBackend` built directly from keywords gets them
through :meth:`SQLiteSettings.given`, which reads no environment and no ``.env`` file.
"""

from __future__ import annotations

import difflib
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.kit.identifiers import DEFAULT_INDEXED_FIELDS, indexed_fields, is_identifier
from ad_buyer_storage.plugins.settings import SettingsBase, problems

__all__ = ["MAX_BUSY_TIMEOUT", "SQLiteSettings"]

#: Set while :meth:`SQLiteSettings.given` builds a model: its keywords are then the only source.
_KEYWORDS_ONLY: ContextVar[bool] = ContextVar("ad_buyer_storage_sqlite_keywords_only", default=False)

#: Seconds. PRAGMA busy_timeout holds milliseconds in a C int: above that, SQLite silently waits 0.
MAX_BUSY_TIMEOUT = (2**31 - 1) // 1000


class SQLiteSettings(SettingsBase):
    model_config = SettingsConfigDict(env_prefix="SQLITE_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    #: Table holding this deployment's keys: one table per namespace.
    table: str = "kv_store"
    #: Seconds a writer waits for another process's write lock before a BusyError.
    busy_timeout: float = Field(5.0, gt=0, le=MAX_BUSY_TIMEOUT)
    #: Seconds between background purges of expired rows (0 disables the sweeper).
    sweep_interval: float = Field(60.0, ge=0)
    #: Rows deleted per purge statement, so a purge never holds the write lock for long.
    sweep_batch: int = Field(500, gt=0)
    #: NORMAL: a commit survives the process dying (WAL); FULL: also a power cut (an fsync per commit).
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    #: Top-level JSON fields given an index, comma-separated: filtered lists on them read only
    #: the matching rows (each index costs every write a little; empty: none).
    indexed_fields: str = DEFAULT_INDEXED_FIELDS

    @field_validator("table")
    @classmethod
    def _table_is_an_identifier(cls, value: str) -> str:
        if not is_identifier(value):  # written into every statement; the value is never quoted
            raise ValueError("must be an identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters)")
        return value

    @field_validator("synchronous", mode="before")
    @classmethod
    def _normal_or_full(cls, value: Any) -> Any:
        if isinstance(value, str) and value.upper() in ("NORMAL", "FULL"):
            return value.upper()  # SQLite's PRAGMA takes either case
        raise ValueError("SQLITE_SYNCHRONOUS is NORMAL or FULL")  # the value is never quoted

    @field_validator("indexed_fields")
    @classmethod
    def _plain_field_names(cls, value: str) -> str:
        indexed_fields("SQLITE_INDEXED_FIELDS", value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _KEYWORDS_ONLY.get():  # given(): no environment, no .env, no secrets directory
            return (init_settings,)
        return super().settings_customise_sources(
            settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
        )

    @classmethod
    def given(cls, **fields: Any) -> SQLiteSettings:
        """The settings made of *fields* alone (the rest at their defaults), the environment and
        ``.env`` unread: what a backend constructed in code is given is all it uses. A name that is
        not a field is refused, naming the closest one; a bad value names its ``SQLITE_*`` setting."""
        for name in fields:
            if name not in cls.model_fields:
                close = difflib.get_close_matches(name, list(cls.model_fields), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigurationError(
                    f"unknown SQLite setting {name!r}{hint}; valid here: {', '.join(sorted(cls.model_fields))}"
                )
        keywords_only = _KEYWORDS_ONLY.set(True)
        try:
            return cls(**fields)
        except ValidationError as exc:
            error = ConfigurationError(f"invalid SQLite settings: {problems(exc, 'SQLITE_')}")
        finally:
            _KEYWORDS_ONLY.reset(keywords_only)
        raise error  # outside the handler: pydantic's error quotes the input
