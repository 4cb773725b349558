"""Getting a generic store: by settings, by name, or by URL; and the process-wide instance.

* ``build_store(target=None, **overrides)`` - a new, unconnected :class:`~ad_buyer_storage.Store`.
* ``async with open_store("sqlite:///./x.db") as store:`` - scoped use, by URL or name.
* ``await get_store()`` - the connected process-wide store (one per event loop, process and
  profile; concurrent first callers share one connect; a failed connect is not cached).
* ``await close_store()`` - close it.

Nothing here knows a domain: a domain passes what the factory needs to know about its keys as a
:class:`~ad_buyer_storage.plugins.profile.StoreProfile` (the buyer agent's ``open_storage`` does,
in :mod:`ad_buyer_storage.domain.factory`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from pydantic import ValidationError

from ad_buyer_storage.client.store import Store
from ad_buyer_storage.composed.breaker import BreakerPolicy, guarded
from ad_buyer_storage.contract.protocol import StorageBackend
from ad_buyer_storage.errors import ConfigurationError, StorageError
from ad_buyer_storage.kit.redaction import raise_redacted, redact_or_withhold, redact_url
from ad_buyer_storage.plugins.profile import GENERIC, StoreProfile
from ad_buyer_storage.plugins.registry import Registry, registry
from ad_buyer_storage.plugins.settings import (
    BackendChoice,
    StorageSettings,
    choose_backend,
    load_settings,
    problems,
    settings_model,
    url_scheme,
)
from ad_buyer_storage.plugins.spec import BackendSpec

__all__ = [
    "backend_from_target",
    "build_backend",
    "build_store",
    "close_store",
    "get_store",
    "open_store",
    "resolve",
    "store_settings",
]

log = logging.getLogger("ad_buyer_storage")


def _split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Core settings (URLs included), and the rest, for the backend's factory."""
    names = settings_model().model_fields
    core = {k: v for k, v in overrides.items() if k in names}
    backend = {k: v for k, v in overrides.items() if k not in names}
    return core, backend


def resolve(
    name: str | None = None, *, settings: StorageSettings | None = None, reg: Registry | None = None
) -> tuple[BackendChoice, BackendSpec, StorageSettings]:
    """Which backend would be built, why, and with which settings (checked for mismatches)."""
    settings = settings if settings is not None else load_settings()
    choice = (
        BackendChoice(name.strip().lower(), f"requested by name ({name})") if name else choose_backend(settings, reg)
    )
    _check_name(choice.name)
    spec = (reg or registry).get(choice.name)
    if spec.url_setting:
        url = settings.url(spec.url_setting)
        if not url:
            raise ConfigurationError(f"the {spec.name!r} backend needs {spec.url_setting.upper()} to be set")
        scheme = url_scheme(url)
        if spec.url_schemes and scheme not in spec.url_schemes:
            accepted = ", ".join(f"{s}://" for s in spec.url_schemes)
            raise ConfigurationError(
                f"{choice.reason} selects the {spec.name!r} backend, but {spec.url_setting.upper()} is "
                f"{redact_url(url)!s}; {spec.name!r} accepts {accepted} URLs. "
                "Fix the URL or choose the backend that matches it."
            )
    return choice, spec, settings


_NAME = re.compile(r"\s*[A-Za-z0-9_.\-]+\s*")


def _check_name(name: str) -> None:
    """A backend name is a word: anything else is a URL that lost its ``://`` (``redis:/:pw@h``),
    refused here with its credentials hidden rather than quoted as an unknown name."""
    if not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"{redact_url(name)} is neither a backend name nor a URL (scheme://host/..., with :// after the scheme)"
        )


def build_backend(
    spec: BackendSpec, settings: StorageSettings, label: str, *, profile: StoreProfile = GENERIC, **overrides: Any
) -> StorageBackend:
    """*spec*'s backend from *settings*, behind a circuit breaker (``STORAGE_BREAKER_*``)
    unless breakers are off or it is made of other backends (which get one each).

    A composite's factory (``spec.composite``: the hybrid router, the mirror) also receives the
    domain's *profile* (``profile=``), to route by keyspace; a single backend's never does.
    """
    factory = spec.load_factory()
    if spec.composite:
        overrides["profile"] = profile
    elif profile.indexed_fields is not None and "indexed_fields" not in overrides:
        _index_for(spec, profile.indexed_fields, overrides)
    try:
        backend = factory(settings, **overrides)
    except StorageError:
        raise
    except ValidationError as exc:  # a plugin reading its settings model itself: pydantic quotes the input
        error: StorageError = ConfigurationError(
            f"backend {spec.name!r}: invalid settings: {problems(exc, _env_prefix(spec))}"
        )
    except Exception as exc:  # noqa: BLE001 - a plugin's factory failing: one typed error
        url = settings.url(spec.url_setting) if spec.url_setting else None
        words = redact_or_withhold(str(exc), url, what="its message")
        raise_redacted(
            ConfigurationError(f"backend {spec.name!r} could not be built: {type(exc).__name__}: {words}"),
            url,
            cause=exc,
        )
    else:
        return _breaker(spec, settings, backend, label)
    raise error  # outside the handler: not chained to pydantic's error, which quotes the inputs


def _index_for(spec: BackendSpec, fields: tuple[str, ...], overrides: dict[str, Any]) -> None:
    """The profile's indexed fields for a backend whose settings have ``indexed_fields``,
    unless the environment sets them (``SQLITE_INDEXED_FIELDS``...): the operator's word wins."""
    try:
        model = spec.settings_model()
    except (ImportError, AttributeError):  # a broken plugin: its factory reports it
        return
    if model is None or "indexed_fields" not in model.model_fields:
        return
    variable = str(model.model_config.get("env_prefix", "")).upper() + "INDEXED_FIELDS"
    if variable not in {name.upper() for name in os.environ}:
        overrides["indexed_fields"] = ",".join(fields)


def _env_prefix(spec: BackendSpec) -> str:
    try:
        model = spec.settings_model()
    except Exception:  # noqa: BLE001 - only for naming the settings in a message
        return ""
    return str(model.model_config.get("env_prefix", "")) if model is not None else ""


def _breaker(spec: BackendSpec, settings: StorageSettings, backend: StorageBackend, label: str) -> StorageBackend:
    if spec.composite or settings.storage_breaker_threshold == 0:
        return backend
    policy = BreakerPolicy(settings.storage_breaker_threshold, settings.storage_breaker_cooldown)
    return guarded(backend, policy, label)


def backend_from_target(
    target: str, settings: StorageSettings, profile: StoreProfile = GENERIC
) -> tuple[StorageBackend, str]:
    """A backend for a route or mirror target: a name (built from *settings*) or a URL.

    Returns the backend and a label for reports (the name, and the redacted URL if any).
    """
    if "://" in target:
        spec = registry.for_url(target)
        child = settings.model_copy(update={spec.url_setting: target}) if spec.url_setting else settings
        label = f"{spec.name} {redact_url(target)}"
        return build_backend(spec, child, label, profile=profile), label
    _, spec, child = resolve(target, settings=settings)
    return build_backend(spec, child, spec.name, profile=profile), spec.name


def store_settings(
    target: str | None = None, *, settings: StorageSettings | None = None, **overrides: Any
) -> tuple[str | None, StorageSettings, dict[str, Any]]:
    """The backend name (None: the settings choose), the settings and the backend factory's
    keywords for *target* (a URL, a backend name, or None) and keyword *overrides*: those that
    are settings (``postgres_pool_max=20``, ``database_url=``) override the environment, the
    rest go to the backend's factory (``path=``, ``clock=``...)."""
    name: str | None = target
    if target is not None and "://" in target:
        spec = registry.for_url(target)
        name = spec.name
        if spec.url_setting:
            overrides[spec.url_setting] = target
    core, backend_overrides = _split_overrides(overrides)
    if settings is None:
        settings = load_settings(**core)
    elif core:
        settings = settings.model_copy(update=core)
    return name, settings, backend_overrides


def build_store(
    target: str | None = None,
    *,
    settings: StorageSettings | None = None,
    profile: StoreProfile = GENERIC,
    coalesce: bool = True,
    **overrides: Any,
) -> Store:
    """A new, unconnected :class:`~ad_buyer_storage.Store` on *target* (a URL, a backend name,
    or None: the one the settings choose). Keyword *overrides* that are settings override the
    environment; the rest go to the backend's factory. *profile* tells a composite store the
    domain's keyspaces (see :mod:`~ad_buyer_storage.plugins.profile`)."""
    name, settings, backend_overrides = store_settings(target, settings=settings, **overrides)
    choice, spec, settings = resolve(name, settings=settings)
    url = settings.url(spec.url_setting) if spec.url_setting else None
    label = f"{spec.name} {redact_url(url)}" if url else spec.name
    backend = build_backend(spec, settings, label, profile=profile, **backend_overrides)
    log.debug("storage backend %s built (%s) url=%s", spec.name, choice.reason, redact_url(url) if url else "-")
    return Store(
        backend,
        max_value_bytes=settings.storage_max_value_bytes,
        describe=redact_url(url) if url else None,
        coalesce=coalesce,
    )


@asynccontextmanager
async def open_store(
    target: str | None = None, *, profile: StoreProfile = GENERIC, **overrides: Any
) -> AsyncIterator[Store]:
    """A connected :class:`~ad_buyer_storage.Store` for the ``async with`` block: *target* is a
    URL, a backend name, or None (the settings choose); closed when the block exits."""
    async with build_store(target, profile=profile, **overrides) as store:
        yield store


class Instances:
    """Process-wide connected objects, one per (event loop, process, key): never shared across
    loops or across ``fork()``; concurrent first callers share one connect; a failed connect is
    not cached. ``get_store`` keeps its stores here, the domain's ``get_storage`` its own."""

    def __init__(self) -> None:
        self._made: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[object, tuple[int, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

    def _cached(self, loop: asyncio.AbstractEventLoop, key: object) -> Any:
        entry = self._made.get(loop, {}).get(key)
        if entry is not None and entry[0] == os.getpid() and entry[1].is_open:
            return entry[1]
        return None

    async def get(self, key: object, make: Callable[[], Awaitable[Any]]) -> Any:
        """The open object cached under *key* for the running loop, or ``await make()``'s."""
        loop = asyncio.get_running_loop()
        found = self._cached(loop, key)
        if found is not None:
            return found
        pid = os.getpid()
        lock_entry = self._locks.get(loop)
        if lock_entry is None or lock_entry[0] != pid:
            lock_entry = (pid, asyncio.Lock())
            self._locks[loop] = lock_entry
        async with lock_entry[1]:
            found = self._cached(loop, key)
            if found is not None:
                return found
            made = await make()
            self._made.setdefault(loop, {})[key] = (pid, made)
            return made

    def pop(self, key: object) -> Any:
        """Forget (and return, if this process made it) the object under *key* for the running loop."""
        entry = self._made.get(asyncio.get_running_loop(), {}).pop(key, None)
        return entry[1] if entry is not None and entry[0] == os.getpid() else None


_stores = Instances()


async def get_store(target: str | None = None, *, profile: StoreProfile = GENERIC, **overrides: Any) -> Store:
    """The connected process-wide :class:`~ad_buyer_storage.Store` for the running event loop:
    one per *target* (a URL, a backend name, or None: the settings choose), *profile* and
    keyword *overrides* (as :func:`open_store` takes them)."""

    async def make() -> Store:
        name, settings, backend_overrides = store_settings(target, **overrides)
        store = build_store(name, settings=settings, profile=profile, **backend_overrides)
        await store.connect()  # raises (and caches nothing) if the store is unreachable
        log.info("storage: using %s (%s)", store.name, choose_backend(settings).reason)
        return store

    found: Store = await _stores.get(_instance_key(target, profile, overrides), make)
    return found


def _instance_key(target: str | None, profile: StoreProfile, overrides: dict[str, Any]) -> str:
    return repr((target, profile, sorted(overrides.items())))


async def close_store(target: str | None = None, *, profile: StoreProfile = GENERIC, **overrides: Any) -> None:
    """Close the process-wide store of the running event loop (the one ``get_store`` gives for
    the same arguments), if any."""
    store = _stores.pop(_instance_key(target, profile, overrides))
    if store is not None:
        await store.aclose()
