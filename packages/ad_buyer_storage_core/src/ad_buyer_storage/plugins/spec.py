"""What a plugin tells core about a backend it provides, without importing the backend.

Everything backend-specific that core needs comes from here: the URL setting it reads and the
schemes it accepts (so ``open_storage(url)`` and inference find it), its own settings model
and environment prefix, how to install it, how it ranks when several URLs are configured,
what it can do (for listings that build no instance).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic_settings import BaseSettings

from ad_buyer_storage.contract.protocol import Capability, StorageBackend
from ad_buyer_storage.errors import PluginLoadError

__all__ = ["BackendFactory", "BackendSpec", "load_object"]

#: ``factory(settings, **overrides)``: *settings* are the core ones (URLs, timeouts...),
#: *overrides* the caller's keywords meant for this backend (``key_prefix=``, ``clock=``...).
BackendFactory = Callable[..., StorageBackend]


def load_object(path: str) -> Any:
    """``"package.module:attribute.path"`` imported and looked up."""
    module_name, _, attr = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        target = getattr(target, part)
    return target


@dataclass(frozen=True)
class BackendSpec:
    """How to build a backend, without importing it until it is chosen."""

    name: str
    #: ``"package.module:callable"`` (imported lazily) or the callable itself (see BackendFactory).
    factory: str | BackendFactory
    description: str = ""
    #: The setting holding this backend's URL (``"database_url"``, ``"redis_url"``, a
    #: plugin's own ``"dbm_url"``); core reads it from the environment in upper case.
    url_setting: str | None = None
    #: URL schemes the backend accepts, for ``open_storage(url)``, inference and mismatch checks.
    url_schemes: tuple[str, ...] = ()
    #: The URL used while the setting is unset (SQLite's ``sqlite:///./ad_buyer.db``).
    url_default: str | None = None
    #: Its own settings model (``"package.module:Model"``, a pydantic-settings class with its
    #: ``env_prefix``), for ``doctor``; its factory loads it.
    settings: str | type[BaseSettings] | None = None
    #: What to run when the backend is installed but its driver is missing.
    install_hint: str | None = None
    #: When URLs are set for several backends and ``STORAGE_TYPE`` is not, the highest rank
    #: is chosen (SQLite 0, Redis 10, PostgreSQL 20; a plugin picks its place).
    rank: int = 0
    #: An in-memory server suited to ephemeral keyspaces (sessions, caches, locks): the hybrid
    #: router's default routes put those on it when its URL is set beside a durable store's.
    fast: bool = False
    #: The capabilities it may offer (its configuration may offer fewer): listings read it
    #: instead of building an instance. None: it depends (routers, mirrors).
    capabilities: frozenset[Capability] | None = None
    #: Made of other backends that its factory builds with
    #: :func:`~ad_buyer_storage.plugins.factory.backend_from_target` (the hybrid router, the
    #: mirror): those get the circuit breakers, not the composite itself.
    composite: bool = False
    distribution: str | None = field(default=None, compare=False)
    version: str | None = field(default=None, compare=False)

    def load_factory(self) -> BackendFactory:
        if callable(self.factory):
            return self.factory
        try:
            factory = load_object(self.factory)
        except Exception as exc:
            hint = f"; try: {self.install_hint}" if self.install_hint else ""
            raise PluginLoadError(
                f"backend {self.name!r} could not be loaded ({type(exc).__name__}: {exc}){hint}"
            ) from exc
        if not callable(factory):
            raise PluginLoadError(f"backend {self.name!r}: {self.factory!r} is not callable")
        return cast(BackendFactory, factory)

    def unusable(self) -> str | None:
        """Why this backend cannot be built (its factory's module, or the driver that imports,
        is missing), None if it can. Imports the backend's module: for diagnostics (the
        ``backends`` listing), never for discovery."""
        try:
            self.load_factory()
        except PluginLoadError as exc:
            return str(exc)
        return None

    def settings_model(self) -> type[BaseSettings] | None:
        """The backend's own settings model, imported if given as a path."""
        if self.settings is None or isinstance(self.settings, type):
            return self.settings
        model = load_object(self.settings)
        if not (isinstance(model, type) and issubclass(model, BaseSettings)):
            raise PluginLoadError(f"backend {self.name!r}: {self.settings!r} is not a settings model")
        return model
