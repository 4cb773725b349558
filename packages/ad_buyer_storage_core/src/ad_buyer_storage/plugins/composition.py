"""Factories of the backends made of others, from settings: the hybrid router and the mirror.

Route targets and mirror sides are backend names (built from the settings, each with its own
URL setting: ``session:=redis`` takes ``REDIS_URL``) or URLs (``session:=redis://h:6379/1``).
Without ``STORAGE_ROUTES``, the hybrid router takes the default composition the URLs call
for (:func:`~ad_buyer_storage.plugins.settings.composition`): the ephemeral keyspaces of the
domain's :class:`~ad_buyer_storage.plugins.profile.StoreProfile` on the fast store, everything
else on the durable one (with the generic profile, which declares none: every key on the
durable store).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ad_buyer_storage.composed.hybrid import HybridBackend, Route
from ad_buyer_storage.composed.mirror import DEFAULT_REPAIR_LOG, MirrorBackend, mirror_of
from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.kit.redaction import redact_routes
from ad_buyer_storage.kit.urls import split_routes
from ad_buyer_storage.plugins.factory import backend_from_target
from ad_buyer_storage.plugins.profile import GENERIC, StoreProfile
from ad_buyer_storage.plugins.registry import registry
from ad_buyer_storage.plugins.settings import SettingsBase, StorageSettings, composition, load_backend_settings

__all__ = ["MirrorSettings", "create_hybrid", "create_mirror", "parse_routes"]


def parse_routes(text: str) -> dict[str, str]:
    """``STORAGE_ROUTES``: ``"session:=redis,cache:=redis,*=postgres"`` or a JSON object."""
    text = text.strip()
    if text.startswith("{"):
        try:
            loaded: Any = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"STORAGE_ROUTES is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ConfigurationError(
                'STORAGE_ROUTES as JSON maps prefixes to backends: {"session:": "redis", "": "postgres"}'
            )
        pairs = list(loaded.items())
    else:
        pairs = []
        for number, item in enumerate(split_routes(text), 1):
            prefix, sep, target = item.partition("=")
            if not item.strip():
                continue
            if not sep or not target.strip():
                # Not quoted: a malformed item may be a piece of a URL, password included.
                raise ConfigurationError(
                    f"STORAGE_ROUTES item {number} is not PREFIX=BACKEND (use *=... for the default): "
                    f"{redact_routes(text)}"
                )
            pairs.append((prefix.strip(), target.strip()))
    return {("" if prefix in ("*", "") else prefix): target for prefix, target in pairs}


def create_hybrid(settings: StorageSettings, /, *, profile: StoreProfile = GENERIC, **overrides: Any) -> HybridBackend:
    """Registry factory: routes from ``routes=`` / ``STORAGE_ROUTES``, else the default
    composition of the configured URLs (*profile*'s ephemeral keyspaces on the fast store)."""
    unknown = set(overrides) - {"routes"}
    if unknown:
        raise ConfigurationError(f"unknown setting(s) {', '.join(sorted(unknown))} for hybrid; valid: routes")
    spec: Any = overrides.get("routes") or settings.storage_routes
    if isinstance(spec, str):
        table = parse_routes(spec)
    elif isinstance(spec, Mapping):
        table = {("" if p == "*" else p): str(t) for p, t in spec.items()}
    else:
        pair = composition(settings)
        if pair is None:
            specs, _ = registry.discover()
            fast = sorted({s.url_setting.upper() for s in specs.values() if s.fast and s.url_setting})
            raise ConfigurationError(
                "STORAGE_TYPE=hybrid needs STORAGE_ROUTES, or the URL of a fast store "
                f"({', '.join(fast) or 'no fast store is installed'}) beside a durable store's that ranks as high; "
                "for example STORAGE_ROUTES='session:=redis,cache:=redis,lock:=redis,*=sqlite'"
            )
        durable, fast_store = pair
        table = profile.default_routes(fast_store.spec.name, durable.spec.name)
    if "hybrid" in table.values():
        raise ConfigurationError("a hybrid route cannot point to 'hybrid' itself")
    built = {target: backend_from_target(target, settings, profile) for target in dict.fromkeys(table.values())}
    return HybridBackend([Route(prefix, *built[target]) for prefix, target in table.items()], profile.requirements())


class MirrorSettings(SettingsBase):
    model_config = SettingsConfigDict(env_prefix="MIRROR_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    #: Where reads come from and writes go first: a backend name or URL.
    primary: str = ""
    #: Where every write is copied: a backend name or URL.
    secondary: str = ""
    #: Fraction of reads also made on the secondary and compared (0 = none, 1 = all).
    shadow_reads: float = Field(0.0, ge=0.0, le=1.0)
    #: ``fail``: a write the secondary refuses raises; ``record``: logged for ``mirror-repair``.
    on_secondary_failure: str = Field("fail", pattern="^(fail|record)$")
    #: The repair log (one JSON line per key to copy again).
    repair_log: str = DEFAULT_REPAIR_LOG


def _same_store(primary: str, secondary: str, settings: StorageSettings) -> bool:
    """Whether two mirror targets (names or URLs) are one store: the same backend with the same
    URL (``sqlite`` and ``sqlite:///./ad_buyer.db`` when that is ``DATABASE_URL``), or the same
    composite (``hybrid`` twice). Two ``memory`` stores are two stores."""
    first, second = _store_identity(primary, settings), _store_identity(secondary, settings)
    return first is not None and first == second


_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_SCHEME_ALIASES = {"postgres": "postgresql", "postgresql+asyncpg": "postgresql", "sqlite+aiosqlite": "sqlite"}


def _store_identity(target: str, settings: StorageSettings) -> tuple[str, str] | None:
    """``(backend, normalised URL)`` for *target*, or None for a store with no URL of its own."""
    target = target.strip()
    if "://" in target:
        spec = registry.for_url(target)
        url = target
    else:
        if not _NAME.fullmatch(target):
            return None  # not a name: backend_from_target refuses it, without quoting it
        spec = registry.get(target.lower())
        found = settings.url(spec.url_setting) if spec.url_setting else None
        if found is None:
            return (spec.name, "") if spec.composite else None
        url = found
    scheme, _, rest = url.strip().partition("://")
    scheme = _SCHEME_ALIASES.get(scheme.lower(), scheme.lower())
    if scheme == "sqlite" and rest.startswith("/"):  # one file, however its path is spelt
        rest = "/" + os.path.abspath(rest[1:])
    return spec.name, f"{scheme}://{rest.rstrip('/')}"


def create_mirror(settings: StorageSettings, /, *, profile: StoreProfile = GENERIC, **overrides: Any) -> MirrorBackend:
    """Registry factory: ``MIRROR_*`` settings (or the same names as keyword overrides)."""
    options = load_backend_settings(MirrorSettings, overrides)
    if not options.primary or not options.secondary:
        raise ConfigurationError("STORAGE_TYPE=mirror needs MIRROR_PRIMARY and MIRROR_SECONDARY (names or URLs)")
    if "mirror" in (options.primary, options.secondary):
        raise ConfigurationError("a mirror cannot contain 'mirror' itself")
    if _same_store(options.primary, options.secondary, settings):
        raise ConfigurationError(
            "MIRROR_PRIMARY and MIRROR_SECONDARY name the same store: a mirror copies from one store to another"
        )
    return mirror_of(
        backend_from_target(options.primary, settings, profile)[0],
        backend_from_target(options.secondary, settings, profile)[0],
        shadow_reads=options.shadow_reads,
        on_secondary_failure=options.on_secondary_failure,
        repair_log=options.repair_log,
    )
