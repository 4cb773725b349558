"""Backend discovery through the entry-point group ``ad_buyer_storage.backends`` (pluggy).

A plugin is a light module (it must not import its driver at import time) named by an entry
point whose name is the backend name::

    [project.entry-points."ad_buyer_storage.backends"]
    dynamodb = "my_package.plugin"

and implementing the hook::

    from ad_buyer_storage import BackendSpec, hookimpl

    @hookimpl
    def ad_buyer_storage_backends():
        return [BackendSpec("dynamodb", "my_package.backend:create_backend",
                            url_setting="database_url", url_schemes=("dynamodb",))]

Resolving one name loads only that entry point, so selecting ``sqlite`` imports neither
redis nor asyncpg. A plugin that fails to load is recorded (``ad-buyer-storage backends``
shows why) and skipped: it never breaks the host. Apps and tests can register in code
with :func:`register_backend`.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import pluggy

from .errors import BackendNotFoundError, PluginLoadError
from .hookspecs import PROJECT, BackendHookSpecs
from .protocol import StorageBackend
from .redaction import redact_url

__all__ = ["ENTRY_POINT_GROUP", "BackendSpec", "PluginFailure", "Registry", "register_backend", "registry"]

log = logging.getLogger("ad_buyer_storage.registry")

ENTRY_POINT_GROUP = "ad_buyer_storage.backends"
_SCHEME_NAME = re.compile(r"[a-z][a-z0-9+.\-]*")

#: Where our own backends come from, for the "not installed" hint.
INSTALL_HINTS = {
    "sqlite": "pip install ad-buyer-storage-sqlite",
    "redis": "pip install ad-buyer-storage-redis   (or: pip install 'ad-buyer-storage[redis]')",
    "postgres": "pip install ad-buyer-storage-postgres   (or: pip install 'ad-buyer-storage[postgres]')",
    "hybrid": "pip install 'ad-buyer-storage[production]'",
}

BackendFactory = Callable[..., StorageBackend]


@dataclass(frozen=True)
class BackendSpec:
    """How to build a backend, without importing it until it is chosen."""

    name: str
    #: ``"package.module:callable"`` (imported lazily) or the callable itself. Called as
    #: ``factory(settings, **overrides)`` and returning an unconnected backend.
    factory: str | BackendFactory
    description: str = ""
    #: The setting holding this backend's URL (``"database_url"`` or ``"redis_url"``), if any.
    url_setting: str | None = None
    #: URL schemes the backend accepts, for ``open_storage(url)`` and mismatch checks.
    url_schemes: tuple[str, ...] = ()
    distribution: str | None = field(default=None, compare=False)
    version: str | None = field(default=None, compare=False)

    def load_factory(self) -> BackendFactory:
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except Exception as exc:
            hint = INSTALL_HINTS.get(self.name, "")
            raise PluginLoadError(
                f"backend {self.name!r} could not be loaded ({type(exc).__name__}: {exc})"
                + (f"; try: {hint}" if hint else "")
            ) from exc
        return target  # type: ignore[no-any-return]


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    name: str
    distribution: str | None
    error: str


class Registry:
    """Backend specs by name: entry points (lazily) plus in-code registrations."""

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self.group = group
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(BackendHookSpecs)
        self._specs: dict[str, BackendSpec] = {}
        self._failures: dict[str, PluginFailure] = {}
        self._loaded: set[str] = set()

    def register(self, spec: BackendSpec, *, replace_existing: bool = False) -> None:
        """Register a backend in code (apps, tests)."""
        if spec.name in self._specs and not replace_existing and self._specs[spec.name] != spec:
            raise ValueError(f"a backend named {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def _entry_points(self, name: str | None = None) -> list[metadata.EntryPoint]:
        eps = metadata.entry_points(group=self.group)
        return list(eps.select(name=name) if name is not None else eps)

    def _load(self, ep: metadata.EntryPoint) -> None:
        key = f"{ep.name}={ep.value}"
        if key in self._loaded:
            return
        self._loaded.add(key)
        dist = getattr(ep, "dist", None)
        dist_name = dist.name if dist is not None else None
        dist_version = dist.version if dist is not None else None
        try:
            plugin = ep.load()
            if not self._pm.is_registered(plugin):  # one module may stand behind several names
                self._pm.register(plugin, name=key)
            impls = [i for i in self._pm.hook.ad_buyer_storage_backends.get_hookimpls() if i.plugin is plugin]
            specs: list[object] = []
            for impl in impls:
                declared = impl.function()
                if declared:
                    specs.extend(cast(Iterable[object], declared))
            if not specs:
                raise PluginLoadError("the plugin declares no backend (no ad_buyer_storage_backends hook result)")
        except Exception as exc:  # noqa: BLE001 - isolate every plugin failure
            self._failures[ep.name] = PluginFailure(ep.name, dist_name, f"{type(exc).__name__}: {exc}")
            log.warning("storage plugin %r (%s) failed to load: %s", ep.name, dist_name, exc)
            return
        for spec in specs:
            if not isinstance(spec, BackendSpec):
                self._failures[ep.name] = PluginFailure(ep.name, dist_name, f"returned {spec!r}, not a BackendSpec")
                continue
            known = self._specs.get(spec.name)
            if known is not None:
                if known.factory != spec.factory:
                    log.warning("storage backend %r from %s ignored: name already taken", spec.name, dist_name)
                continue
            self._specs[spec.name] = replace(spec, distribution=dist_name, version=dist_version)

    def get(self, name: str) -> BackendSpec:
        """The spec for *name*, loading only the entry points of that name."""
        if name not in self._specs:
            for ep in self._entry_points(name):
                self._load(ep)
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        if name in self._failures:
            failure = self._failures[name]
            raise PluginLoadError(
                f"storage backend {redact_url(name)!r} is installed but failed to load: {failure.error}"
            )
        known = sorted(set(self._specs) | {ep.name for ep in self._entry_points()})
        hint = INSTALL_HINTS.get(name)
        raise BackendNotFoundError(
            f"unknown storage backend {redact_url(name)!r}; installed: {', '.join(known) or 'none'}"
            + (f". To install it: {hint}" if hint else ". Install the package that provides it.")
        )

    def discover(self) -> tuple[dict[str, BackendSpec], dict[str, PluginFailure]]:
        """Load every entry point; return the specs and the failures."""
        for ep in self._entry_points():
            self._load(ep)
        return dict(sorted(self._specs.items())), dict(sorted(self._failures.items()))

    def for_url(self, url: str) -> BackendSpec:
        """The backend that accepts *url*'s scheme."""
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if not _SCHEME_NAME.fullmatch(scheme):
            scheme = ""  # not a scheme: maybe the start of a pasted password; never quoted
        specs, _ = self.discover()
        for spec in specs.values():
            if scheme in spec.url_schemes:
                return spec
        offered = sorted({s for spec in specs.values() for s in spec.url_schemes})
        raise BackendNotFoundError(
            f"no installed backend accepts {scheme or 'this'}:// URLs; accepted schemes: {', '.join(offered)}"
        )

    def create(self, name: str, settings: Any, **overrides: Any) -> StorageBackend:
        return self.get(name).load_factory()(settings, **overrides)


registry = Registry()


def register_backend(spec: BackendSpec, *, replace_existing: bool = False) -> None:
    """Register a backend in code on the default registry."""
    registry.register(spec, replace_existing=replace_existing)
