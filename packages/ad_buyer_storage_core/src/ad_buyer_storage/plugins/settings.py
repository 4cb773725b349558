"""Settings, read from the environment and ``.env``.

Core owns ``STORAGE_*`` and ``SESSION_DEFAULT_TTL``. The URL settings (``DATABASE_URL``,
``REDIS_URL``, a plugin's ``DBM_URL``...) are learned from the installed backends'
registrations, and each backend reads its own settings model (``SQLITE_*``, ``REDIS_*``,
``POSTGRES_*``...) in its factory. Which backend the settings select when ``STORAGE_TYPE`` is
unset is decided from the registrations too (:func:`choose_backend`). Secrets never reach a
repr, log line or error message.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import Field, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ad_buyer_storage.client.codec import DEFAULT_MAX_VALUE_BYTES
from ad_buyer_storage.client.validation import ttl_to_ms
from ad_buyer_storage.contract.protocol import INT64_MAX, INT64_MIN
from ad_buyer_storage.errors import ConfigurationError, InvalidTTLError
from ad_buyer_storage.kit.redaction import redact_routes, redact_url
from ad_buyer_storage.plugins.registry import Registry, registry, unknown_scheme
from ad_buyer_storage.plugins.spec import BackendSpec

__all__ = [
    "BackendChoice",
    "CORE_PREFIXES",
    "Candidate",
    "check_environment",
    "SettingsBase",
    "StorageSettings",
    "choose_backend",
    "composition",
    "load_backend_settings",
    "load_settings",
    "problems",
    "settings_model",
    "url_candidates",
    "url_scheme",
]


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
    """``STORAGE_TYPE``, timeouts, value size, route table, session TTL; and, in the model
    :func:`settings_model` builds, every URL setting the installed backends read."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    #: The URL settings of this model (``database_url``...), learned from the registrations.
    URL_SETTINGS: ClassVar[tuple[str, ...]] = ()

    #: ``sqlite``, ``redis``, ``postgres``, ``hybrid``, ``memory`` or any installed plugin name.
    #: Unset: chosen from the URLs (see :func:`choose_backend`).
    storage_type: str | None = None
    #: Seconds allowed to open a connection.
    storage_connect_timeout: float = Field(5.0, gt=0)
    #: Seconds allowed for one command or query before a typed timeout error.
    storage_command_timeout: float = Field(10.0, gt=0)
    #: Default TTL of ``set_session`` (seconds).
    session_default_ttl: float = Field(86_400, gt=0)
    #: ``get_session`` renews a session's expiry to the TTL it was written with (sliding).
    session_sliding_ttl: bool = False
    #: Largest encoded value accepted (bytes of UTF-8 JSON).
    storage_max_value_bytes: int = Field(DEFAULT_MAX_VALUE_BYTES, gt=0)
    #: Hybrid route table: ``"session:=redis,cache:=redis,*=postgres"`` or JSON; names or URLs.
    storage_routes: str | None = None
    #: Consecutive unavailability failures (timeouts, refused, reset) after which a backend (each
    #: route of the hybrid router) fails fast with ``CircuitOpenError``; 0 turns breakers off.
    storage_breaker_threshold: int = Field(5, ge=0, le=1_000_000)
    #: Seconds an open breaker fails fast before it lets one probe call through.
    storage_breaker_cooldown: float = Field(5.0, gt=0, le=86_400)
    #: Environment variables under a prefix we share that belong to another program
    #: (``REDIS_HOST,MYAPP_*``: names or globs): not refused as misspelt settings.
    storage_allow_env: str | None = None

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

    @field_validator("storage_routes", mode="before")
    @classmethod
    def _empty_routes_are_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="before")
    @classmethod
    def _empty_urls_are_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in cls.URL_SETTINGS:
                if isinstance(data.get(name), str) and not data[name].strip():
                    data[name] = None
        return data

    def url(self, setting: str) -> str | None:
        """The URL in *setting* (``"database_url"``...), its default if unset, None if neither."""
        if setting not in type(self).URL_SETTINGS:
            return None
        value = getattr(self, setting)
        return value if isinstance(value, str) else None


@functools.lru_cache(maxsize=16)
def _model_with(urls: tuple[tuple[str, str | None], ...]) -> type[StorageSettings]:
    fields: dict[str, Any] = {name: (str | None, default) for name, default in urls}
    model = create_model("StorageSettings", __base__=StorageSettings, **fields)
    model.URL_SETTINGS = tuple(name for name, _ in urls)
    return model


def settings_model(reg: Registry | None = None) -> type[StorageSettings]:
    """The settings model with every URL setting the installed backends read."""
    return _model_with(tuple((reg or registry).url_settings().items()))


def load_settings(**overrides: Any) -> StorageSettings:
    """Read settings (environment, ``.env``) with *overrides* on top; raise ConfigurationError.

    The error lists each bad setting and why, never the offending input (it may be a URL
    with a password in it). An environment variable that looks like one of our settings but
    is none (``POSTGRE_SCHEMA``) is refused too: see :func:`check_environment`.
    """
    check_environment()
    try:
        return settings_model()(**overrides)
    except ValidationError as exc:
        error = ConfigurationError(f"invalid storage settings: {problems(exc)}")
    # Raised outside the handler, so not chained to pydantic's error: that one quotes the inputs.
    raise error


def problems(exc: ValidationError, env_prefix: str = "") -> str:
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
        # By its alias where it has one (``DATABASE_URL``): older pydantic-settings let the
        # environment's value under the alias win over a keyword given by field name.
        alias = model.model_fields[field].alias
        fields[alias if isinstance(alias, str) and alias else field] = value
    try:
        return model(**fields)
    except ValidationError as exc:
        error = ConfigurationError(f"invalid settings: {problems(exc, env_prefix)}")
    raise error  # outside the handler: see load_settings


#: The prefixes of core's own settings; each installed backend's settings model adds its own
#: (``SQLITE_``, ``REDIS_``, ``POSTGRES_``, ``MIRROR_``, a plugin's).
CORE_PREFIXES = ("STORAGE_", "SESSION_")


@functools.lru_cache(maxsize=8)
def _known_variables(reg: Registry) -> tuple[frozenset[str], tuple[str, ...]]:
    """Every environment variable a settings model of ours or of an installed plugin reads,
    and the prefixes they share."""
    names = {name.upper() for name in settings_model(reg).model_fields}
    prefixes = set(CORE_PREFIXES)
    specs, _ = reg.discover()
    for spec in specs.values():
        try:
            model = spec.settings_model()
        except (ImportError, AttributeError):  # a broken plugin: reported by `backends`, not here
            continue
        if model is None:
            continue
        prefix = str(model.model_config.get("env_prefix", "")).upper()
        if prefix:
            prefixes.add(prefix)
        for field, info in model.model_fields.items():
            alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
            names.add(alias.upper() if alias else prefix + field.upper())
    return frozenset(names), tuple(sorted(prefixes))


def check_environment(environ: Mapping[str, str] | None = None, reg: Registry | None = None) -> None:
    """Refuse environment variables that look like our settings but are none of them: a name
    under one of our prefixes (``STORAGE_``, ``SESSION_``, each backend's ``SQLITE_``,
    ``REDIS_``, ``POSTGRES_``...) that no settings model reads, or a name a letter or two away
    from one (``POSTGRE_SCHEMA``, ``DATABASE_URI``). Ignored, either would leave a deployment on
    a default it did not choose (the data in ``public.kv_store``). The error names the closest
    valid setting. Another program's variables under a prefix we share are allowed with
    ``STORAGE_ALLOW_ENV`` (names or globs: ``REDIS_HOST,MYAPP_*``)."""
    environ = os.environ if environ is None else environ
    known, prefixes = _known_variables(reg or registry)
    allowed = [p.strip().upper() for p in environ.get("STORAGE_ALLOW_ENV", "").split(",") if p.strip()]
    wrong: list[str] = []
    for raw in environ:
        name = raw.upper()
        if name in known or any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed):
            continue
        ours = name.startswith(prefixes)
        # Only names sharing a first letter and most of their length with a setting are compared
        # (difflib is slow, and an environment holds dozens of unrelated variables).
        near = [k for k in known if k[0] == name[0] and abs(len(k) - len(name)) <= 2]
        closest = difflib.get_close_matches(name, near, n=1, cutoff=0.85 if not ours else 0.6)
        if ours or closest:
            wrong.append(f"{raw} (did you mean {closest[0]}?)" if closest else raw)
    if wrong:
        raise ConfigurationError(
            f"unknown setting(s) in the environment: {', '.join(sorted(wrong))}. Each looks like one of "
            "ours but none reads it, so it would be ignored. Fix the name, or, if another program owns it, "
            "allow it with STORAGE_ALLOW_ENV (names or globs, comma-separated)."
        )


def url_scheme(url: str | None) -> str:
    if not url or "://" not in url:
        return ""
    return url.split("://", 1)[0].lower()


def _check_schemes(settings: StorageSettings, reg: Registry | None) -> None:
    """Refuse a URL setting that no installed backend reading it accepts (``DATABASE_URL=
    postgress://...``): named, with the closest scheme, rather than ignored (which would end
    in "no backend is configured", or in another backend silently chosen)."""
    specs, _ = (reg or registry).discover()
    for setting in type(settings).URL_SETTINGS:
        url = settings.url(setting)
        if url is None:
            continue
        readers = [spec for spec in specs.values() if spec.url_setting == setting]
        if not readers or any(not spec.url_schemes for spec in readers):
            continue  # a reader that names no scheme takes any: nothing to check here
        offered = [s for spec in readers for s in spec.url_schemes]
        slashes = "://" in url
        scheme = url_scheme(url) if slashes else url.partition(":")[0].strip().lower()
        if not slashes or scheme not in offered:
            raise ConfigurationError(f"{setting.upper()}: {unknown_scheme(scheme, offered, slashes=slashes)}")


@dataclass(frozen=True, slots=True)
class BackendChoice:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """A backend the URL in *setting* selects."""

    setting: str
    spec: BackendSpec


def url_candidates(settings: StorageSettings, reg: Registry | None = None) -> list[Candidate]:
    """Per URL setting that holds a URL, the backend that accepts it (several may read one
    setting: ``DATABASE_URL`` is SQLite's or PostgreSQL's by its scheme)."""
    specs, _ = (reg or registry).discover()
    found = []
    for setting in type(settings).URL_SETTINGS:
        scheme = url_scheme(settings.url(setting))
        for spec in specs.values():
            if spec.url_setting == setting and scheme in spec.url_schemes:
                found.append(Candidate(setting, spec))
                break
    return found


def composition(settings: StorageSettings, reg: Registry | None = None) -> tuple[Candidate, Candidate] | None:
    """(durable, fast) when the URLs call for the hybrid router's default composition: a fast
    store's URL (Redis) beside a durable store's that ranks at least as high (PostgreSQL).
    Beside a lower-ranked one (the embedded SQLite), the fast store alone is the choice."""
    candidates = url_candidates(settings, reg)
    durable = [c for c in candidates if not c.spec.fast]
    fast = [c for c in candidates if c.spec.fast]
    if not durable or not fast:
        return None
    best_durable, best_fast = max(durable, key=_rank), max(fast, key=_rank)
    return (best_durable, best_fast) if best_durable.spec.rank >= best_fast.spec.rank else None


def _rank(candidate: Candidate) -> int:
    return candidate.spec.rank


def choose_backend(settings: StorageSettings, reg: Registry | None = None) -> BackendChoice:
    """Which backend the settings select, and why (the CLI and the logs show the reason)."""
    if settings.storage_type:
        return BackendChoice(settings.storage_type, f"STORAGE_TYPE={settings.storage_type}")
    _check_schemes(settings, reg)
    pair = composition(settings, reg)
    if pair is not None:
        durable, fast = pair
        return BackendChoice(
            "hybrid",
            f"STORAGE_TYPE unset; {durable.setting.upper()} selects {durable.spec.name} and {fast.setting.upper()} "
            f"selects {fast.spec.name}: durable keyspaces on {durable.spec.name}, ephemeral ones on {fast.spec.name}",
        )
    candidates = url_candidates(settings, reg)
    if not candidates:
        raise ConfigurationError(
            "no backend is configured: set STORAGE_TYPE, or a URL setting an installed backend reads "
            f"({', '.join(s.upper() for s in type(settings).URL_SETTINGS) or 'none installed'})"
        )
    best = max(candidates, key=_rank)
    others = [c for c in candidates if c is not best]
    if best.setting in settings.model_fields_set:
        why = f"STORAGE_TYPE unset; {best.setting.upper()} selects {best.spec.name}"
    else:
        why = f"STORAGE_TYPE and {best.setting.upper()} unset: {best.spec.name}, the embedded default"
    if others:
        why += " (ranked above " + ", ".join(f"{c.spec.name} from {c.setting.upper()}" for c in others) + ")"
    return BackendChoice(best.spec.name, why)
