"""What a plugin tells core about a backend it provides, without importing the backend.

Everything backend-specific that core needs comes from here: the URL setting it reads and the
schemes it accepts (so ``open_storage(url)`` and inference find it), its own settings model
and environment prefix, how to install it, how it ranks when several URLs are configured,
what it can do (for listings that build no instance).

A spec is checked when it registers (:func:`check_spec`, called by the registry): each field's
type and shape, without importing anything (a listing must not import a driver). A bad one is a
:class:`~ad_buyer_storage.errors.PluginValidationError` naming the plugin and every bad field;
a plugin found through an entry point is then listed as failed to load, and skipped.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from pydantic_settings import BaseSettings

from ad_buyer_storage.contract.protocol import Capability, StorageBackend
from ad_buyer_storage.errors import PluginLoadError, PluginValidationError

__all__ = ["RANKS", "BackendFactory", "BackendSpec", "check_spec", "load_object", "spec_problems"]

#: The ranks a spec may take (ours: memory -10, SQLite 0, Redis 10, PostgreSQL 20).
RANKS = range(-100, 101)
#: A backend name: what ``STORAGE_TYPE``, ``--backend`` and route tables say (they lower-case it).
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
#: A URL scheme (RFC 3986: a letter, then letters, digits, ``+``, ``-``, ``.``), lower case.
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")
#: A URL setting: a field of core's settings model and an environment variable in upper case.
_URL_SETTING = re.compile(r"[a-z][a-z0-9_]{0,58}_url")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
#: ``"package.module:attribute.path"``, as :func:`load_object` takes it.
_REFERENCE = re.compile(rf"{_DOTTED}:{_DOTTED}")

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
        """Why this backend cannot be built (its factory's module, the driver that imports, or
        its settings model is missing), None if it can. Imports the backend's modules: for
        diagnostics (the ``backends`` listing), never for discovery."""
        try:
            self.load_factory()
            self.settings_model()
        except PluginLoadError as exc:
            return str(exc)
        return None

    def settings_model(self) -> type[BaseSettings] | None:
        """The backend's own settings model, imported if given as a path."""
        if self.settings is None or isinstance(self.settings, type):
            return self.settings
        try:
            model = load_object(self.settings)
        except Exception as exc:
            raise PluginLoadError(
                f"backend {self.name!r}: its settings model {self.settings!r} could not be loaded "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        if not (isinstance(model, type) and issubclass(model, BaseSettings)):
            raise PluginLoadError(f"backend {self.name!r}: {self.settings!r} is not a settings model")
        return model


def spec_problems(spec: BackendSpec) -> list[tuple[str, str]]:
    """Every bad field of *spec*, as ``(field, why)``; nothing is imported."""
    # Read as plain objects: a plugin's code is not type-checked against ours.
    raw: dict[str, object] = dict(vars(spec))
    found: list[tuple[str, str]] = []

    def bad(name: str, why: str) -> None:
        found.append((name, f"{why}, not {raw[name]!r}"))

    def reference(value: object) -> bool:
        return isinstance(value, str) and _REFERENCE.fullmatch(value) is not None

    name, url_setting, schemes, default, settings, rank = (
        raw[n] for n in ("name", "url_setting", "url_schemes", "url_default", "settings", "rank")
    )
    if not (isinstance(name, str) and _NAME.fullmatch(name)):
        bad("name", "a lower-case word: a letter, then letters, digits or '_' (at most 63)")
    if not (callable(raw["factory"]) or reference(raw["factory"])):
        bad("factory", "a callable, or a reference to one: 'package.module:attribute'")
    if not isinstance(raw["description"], str):
        bad("description", "a str")
    if url_setting is not None and not (isinstance(url_setting, str) and _URL_SETTING.fullmatch(url_setting)):
        bad("url_setting", "None or a lower-case setting name ending in '_url' ('database_url', 'dbm_url')")
    if not isinstance(schemes, tuple):
        bad("url_schemes", "a tuple of URL schemes ('sqlite',)")
    elif not all(isinstance(scheme, str) and _SCHEME.fullmatch(scheme) for scheme in schemes):
        bad("url_schemes", "lower-case URL schemes, without '://' (a letter, then letters, digits, '+', '-', '.')")
    if default is not None:
        if not isinstance(default, str) or "://" not in default:
            bad("url_default", "None or a URL (scheme://...)")
        elif url_setting is None:
            bad("url_default", "None when there is no url_setting (a default of which setting?)")
        elif isinstance(schemes, tuple) and schemes and default.split("://", 1)[0].lower() not in schemes:
            bad("url_default", "a URL of one of url_schemes")
    if settings is not None and not (
        reference(settings) or (isinstance(settings, type) and issubclass(settings, BaseSettings))
    ):
        bad("settings", "None, a pydantic-settings model, or a reference to one: 'package.module:Model'")
    if raw["install_hint"] is not None and not isinstance(raw["install_hint"], str):
        bad("install_hint", "None or a str")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank not in RANKS:
        bad("rank", f"an int from {RANKS.start} to {RANKS.stop - 1}")
    for flag in ("fast", "composite"):
        if not isinstance(raw[flag], bool):
            bad(flag, "True or False")
    capabilities = raw["capabilities"]
    if capabilities is not None and not (
        isinstance(capabilities, frozenset) and all(isinstance(c, Capability) for c in capabilities)
    ):
        bad("capabilities", "None or a frozenset of Capability")
    return found


def check_spec(spec: object, plugin: str) -> BackendSpec:
    """*spec*, if it is a valid :class:`BackendSpec`; else a :class:`PluginValidationError` naming
    *plugin* (who registered it) and each bad field."""
    if not isinstance(spec, BackendSpec):
        raise PluginValidationError(
            f"storage plugin {plugin}: returned {type(spec).__name__}, not a BackendSpec", plugin=plugin
        )
    problems = spec_problems(spec)
    if problems:
        raise PluginValidationError(
            f"storage plugin {plugin}: BackendSpec {spec.name!r} is invalid: "
            + "; ".join(f"{name} must be {why}" for name, why in problems),
            plugin=plugin,
            fields=[name for name, _ in problems],
        )
    return spec
