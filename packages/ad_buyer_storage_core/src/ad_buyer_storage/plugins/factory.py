"""Getting a storage: by settings, by name, or by URL; and the process-wide instance.

* ``await get_storage()`` - the connected process-wide instance (one per event loop and
  process; concurrent first callers share one connect; a failed connect is not cached).
* ``await close_storage()`` - close it.
* ``get_storage_backend(name=None, **overrides)`` - a new, unconnected :class:`Storage`.
* ``async with open_storage("sqlite:///./x.db") as storage:`` - scoped use, by URL or name.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import ValidationError

from ad_buyer_storage.composed.breaker import BreakerPolicy, guarded
from ad_buyer_storage.contract.protocol import StorageBackend
from ad_buyer_storage.domain.storage import Storage
from ad_buyer_storage.errors import ConfigurationError, StorageError
from ad_buyer_storage.kit.redaction import raise_redacted, redact_or_withhold, redact_url
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
    "close_storage",
    "get_storage",
    "get_storage_backend",
    "open_storage",
    "resolve",
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


def build_backend(spec: BackendSpec, settings: StorageSettings, label: str, **overrides: Any) -> StorageBackend:
    """*spec*'s backend from *settings*, behind a circuit breaker (``STORAGE_BREAKER_*``)
    unless breakers are off or it is made of other backends (which get one each)."""
    factory = spec.load_factory()
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


def backend_from_target(target: str, settings: StorageSettings) -> tuple[StorageBackend, str]:
    """A backend for a route or mirror target: a name (built from *settings*) or a URL.

    Returns the backend and a label for reports (the name, and the redacted URL if any).
    """
    if "://" in target:
        spec = registry.for_url(target)
        child = settings.model_copy(update={spec.url_setting: target}) if spec.url_setting else settings
        label = f"{spec.name} {redact_url(target)}"
        return build_backend(spec, child, label), label
    _, spec, child = resolve(target, settings=settings)
    return build_backend(spec, child, spec.name), spec.name


def get_storage_backend(
    name: str | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    *,
    settings: StorageSettings | None = None,
    **overrides: Any,
) -> Storage:
    """A new, unconnected :class:`Storage`: *name* or the one the settings choose.

    Keyword *overrides* that are settings (``postgres_pool_max=20``) override the
    environment; the rest go to the backend's factory (``path=``, ``clock=``...).
    """
    core, backend_overrides = _split_overrides(overrides)
    if database_url is not None:
        core["database_url"] = database_url
    if redis_url is not None:
        core["redis_url"] = redis_url
    if settings is None:
        settings = load_settings(**core)
    elif core:
        settings = settings.model_copy(update=core)
    choice, spec, settings = resolve(name, settings=settings)
    url = settings.url(spec.url_setting) if spec.url_setting else None
    backend = build_backend(spec, settings, f"{spec.name} {redact_url(url)}" if url else spec.name, **backend_overrides)
    log.debug("storage backend %s built (%s) url=%s", spec.name, choice.reason, redact_url(url) if url else "-")
    return Storage(
        backend,
        max_value_bytes=settings.storage_max_value_bytes,
        default_ttls={"session": settings.session_default_ttl, "session_index": settings.session_default_ttl},
        sliding_sessions=settings.session_sliding_ttl,
        describe=redact_url(url) if url else None,
    )


@asynccontextmanager
async def open_storage(target: str | None = None, **overrides: Any) -> AsyncIterator[Storage]:
    """Connect for the ``async with`` block: *target* is a URL, a backend name, or None."""
    name: str | None = target
    if target is not None and "://" in target:
        spec = registry.for_url(target)
        name = spec.name
        if spec.url_setting:
            overrides[spec.url_setting] = target
    storage = get_storage_backend(name, **overrides)
    async with storage:
        yield storage


# One instance per (event loop, process): never shared across loops or across fork().
_instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, Storage]] = weakref.WeakKeyDictionary()
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, asyncio.Lock]] = weakref.WeakKeyDictionary()


async def get_storage() -> Storage:
    """The connected process-wide storage for the running event loop."""
    loop = asyncio.get_running_loop()
    pid = os.getpid()
    cached = _instances.get(loop)
    if cached is not None and cached[0] == pid and cached[1].is_open:
        return cached[1]
    lock_entry = _locks.get(loop)
    if lock_entry is None or lock_entry[0] != pid:
        lock_entry = (pid, asyncio.Lock())
        _locks[loop] = lock_entry
    async with lock_entry[1]:
        cached = _instances.get(loop)
        if cached is not None and cached[0] == pid and cached[1].is_open:
            return cached[1]
        settings = load_settings()
        storage = get_storage_backend(settings=settings)
        await storage.connect()  # raises (and caches nothing) if the store is unreachable
        _instances[loop] = (pid, storage)
        log.info("storage: using %s (%s)", storage.name, choose_backend(settings).reason)
        return storage


async def close_storage() -> None:
    """Close the process-wide storage of the running event loop, if any."""
    loop = asyncio.get_running_loop()
    cached = _instances.pop(loop, None)
    if cached is not None and cached[0] == os.getpid():
        await cached[1].aclose()
