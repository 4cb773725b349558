"""Backend discovery through the entry-point group ``ad_buyer_storage.backends`` (pluggy).

A plugin is one light module (it must not import its driver at import time), named by one
entry point whose name is the backend name::

    [project.entry-points."ad_buyer_storage.backends"]
    dbm = "my_package.plugin"

and implementing the hook::

    from ad_buyer_storage.plugins import BackendSpec, hookimpl

    @hookimpl
    def ad_buyer_storage_backends():
        return [BackendSpec("dbm", "my_package.backend:create_backend",
                            url_setting="dbm_url", url_schemes=("dbm",))]

pluggy checks each plugin's hook against the specification when it is registered; each
:class:`BackendSpec` it returns is checked field by field
(:func:`~ad_buyer_storage.plugins.spec.check_spec`: a bad one is a
:class:`~ad_buyer_storage.errors.PluginValidationError` naming the plugin and the field); and the
hook is called through the plugin manager, one plugin at a time, so that a plugin that fails
(to import, to register, in its hook, with an invalid spec) is recorded with the reason
(``ad-buyer-storage backends`` shows it) and skipped: it never breaks the host. Resolving one name loads only
that entry point, so selecting ``sqlite`` imports neither redis nor asyncpg; listing and
inference load every plugin module (never a driver). Apps and tests can register in code
with :func:`register_backend`.
"""

from __future__ import annotations

import difflib
import importlib.metadata as metadata
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from types import ModuleType
from typing import cast

import pluggy

from ad_buyer_storage.contract.protocol import StorageBackend
from ad_buyer_storage.errors import BackendNotFoundError, PluginLoadError, PluginValidationError
from ad_buyer_storage.kit.redaction import redact_url
from ad_buyer_storage.plugins.hookspecs import PROJECT, BackendHookSpecs
from ad_buyer_storage.plugins.spec import BackendSpec, check_spec

__all__ = ["ENTRY_POINT_GROUP", "PluginFailure", "Registry", "register_backend", "registry", "unknown_scheme"]

log = logging.getLogger("ad_buyer_storage.registry")

ENTRY_POINT_GROUP = "ad_buyer_storage.backends"
_SCHEME_NAME = re.compile(r"[a-z][a-z0-9+.\-]*")
_BACKEND_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def unknown_scheme(scheme: str, offered: Iterable[str], *, slashes: bool = True) -> str:
    """``unknown scheme 'postgress' (did you mean 'postgres'?); installed schemes: ...``.

    *scheme* is what stands before ``://``, quoted only if it looks like a scheme: otherwise it
    may be a piece of a pasted password. Without *slashes* (no ``://`` at all) nothing of the
    value is quoted, and a scheme is suggested only if the value starts with an offered one.
    """
    choices = sorted(set(offered))
    installed = f"installed schemes: {', '.join(f'{s}://' for s in choices) or 'none'}"
    if not slashes:
        hint = f" (did you mean {scheme}://...?)" if scheme in choices else ""
        return f"not a URL: expected scheme://...{hint}; {installed}"
    if not _SCHEME_NAME.fullmatch(scheme):
        return f"not a URL with a scheme (scheme://...); {installed}"
    close = difflib.get_close_matches(scheme, choices, n=1)
    return f"unknown scheme {scheme!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + f"; {installed}"


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
        """Register a backend in code (apps, tests); an invalid *spec* raises
        :class:`~ad_buyer_storage.errors.PluginValidationError`, as pluggy's ``register`` does."""
        check_spec(spec, "registered in code")
        if spec.name in self._specs and not replace_existing and self._specs[spec.name] != spec:
            raise ValueError(f"a backend named {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def _entry_points(self, name: str | None = None) -> list[metadata.EntryPoint]:
        eps = metadata.entry_points(group=self.group)
        return list(eps.select(name=name) if name is not None else eps)

    def _declared_by(self, plugin: ModuleType) -> list[object]:
        """Call the hook of *plugin* alone, through the plugin manager."""
        others = [p for p in self._pm.get_plugins() if p is not plugin]
        results = self._pm.subset_hook_caller("ad_buyer_storage_backends", remove_plugins=others)()
        return [spec for declared in results if declared for spec in cast(Iterable[object], declared)]

    def _load(self, ep: metadata.EntryPoint) -> None:
        key = f"{ep.name}={ep.value}"
        if key in self._loaded:
            return
        self._loaded.add(key)
        dist = ep.dist
        dist_name, dist_version = (dist.name, dist.version) if dist is not None else (None, None)
        try:
            plugin = ep.load()
            if not self._pm.is_registered(plugin):  # one module may stand behind several names
                self._pm.register(plugin, name=key)  # pluggy validates the hook's signature
            specs = self._declared_by(plugin)
            if not specs:
                raise PluginLoadError("the plugin declares no backend (no ad_buyer_storage_backends hook result)")
        except Exception as exc:  # noqa: BLE001 - isolate every plugin failure
            # Recorded once and reported where it matters: `backends`, `doctor`, and an error
            # when that backend is asked for. Not a warning on every start of every program.
            self._failures[ep.name] = PluginFailure(ep.name, dist_name, f"{type(exc).__name__}: {exc}")
            log.info("storage plugin %r (%s) failed to load: %s", ep.name, dist_name, exc)
            return
        who = f"{ep.name!r} ({dist_name} {dist_version})" if dist_name else repr(ep.name)
        for declared in specs:
            try:
                spec = check_spec(declared, who)
            except PluginValidationError as exc:  # listed as broken, like a plugin that fails to import
                self._fail(ep.name, dist_name, f"{type(exc).__name__}: {exc}")
                log.info("storage plugin %r (%s) declares an invalid backend: %s", ep.name, dist_name, exc)
                continue
            known = self._specs.get(spec.name)
            if known is not None:
                if known.factory != spec.factory:
                    log.warning("storage backend %r from %s ignored: name already taken", spec.name, dist_name)
                continue
            self._specs[spec.name] = replace(spec, distribution=dist_name, version=dist_version)

    def _fail(self, name: str, distribution: str | None, error: str) -> None:
        """Record a failure of plugin *name* (after any recorded before: one plugin, several specs)."""
        before = self._failures.get(name)
        self._failures[name] = PluginFailure(name, distribution, f"{before.error}; {error}" if before else error)

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
        # The hint names a distribution only for a word: anything else may be a pasted URL.
        hint = f"pip install ad-buyer-storage-{name}" if _BACKEND_NAME.fullmatch(name) else "see its documentation"
        raise BackendNotFoundError(
            f"unknown storage backend {redact_url(name)!r}; installed: {', '.join(known) or 'none'}. Install the "
            f"distribution that provides it; if it is one of this project's: {hint}"
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
        offered = {s for spec in specs.values() for s in spec.url_schemes}
        raise BackendNotFoundError(f"no installed backend accepts this URL: {unknown_scheme(scheme, offered)}")

    def create(self, name: str, settings: object, **overrides: object) -> StorageBackend:
        """A new, unconnected backend *name* built by its factory."""
        return self.get(name).load_factory()(settings, **overrides)

    def url_settings(self) -> dict[str, str | None]:
        """Every URL setting an installed backend reads, with its default (None: unset)."""
        specs, _ = self.discover()
        found: dict[str, str | None] = {}
        for spec in specs.values():
            if spec.url_setting:
                found[spec.url_setting] = found.get(spec.url_setting) or spec.url_default
        return dict(sorted(found.items()))


registry = Registry()


def register_backend(spec: BackendSpec, *, replace_existing: bool = False) -> None:
    """Register a backend in code on the default registry."""
    registry.register(spec, replace_existing=replace_existing)
