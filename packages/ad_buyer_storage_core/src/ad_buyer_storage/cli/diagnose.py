"""``backends`` and ``doctor``: what is installed, what the settings select, and is it healthy.

``doctor`` walks any backend made of backends (the hybrid router, the mirror, a stranger's
sharding router) through :class:`~ad_buyer_storage.contract.protocol.SupportsParts`, never by its
class: each part is connected, pinged and described on its own, so one dead store still leaves
a report for the others; behind a router (``SupportsRouting``) it also says which part serves
each keyspace.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from ad_buyer_storage.client.store import check_claims
from ad_buyer_storage.contract.protocol import StorageBackend, SupportsParts, SupportsRouting
from ad_buyer_storage.domain.entities import ENTITIES
from ad_buyer_storage.domain.factory import get_storage_backend
from ad_buyer_storage.errors import StorageError
from ad_buyer_storage.plugins.factory import resolve
from ad_buyer_storage.plugins.registry import registry
from ad_buyer_storage.plugins.settings import SettingsBase, StorageSettings, load_backend_settings
from ad_buyer_storage.plugins.spec import BackendSpec

from .common import describe, redact_known, settings_from

__all__ = ["backends", "doctor"]


async def backends(args: argparse.Namespace) -> int:
    """Every installed backend with what it offers (from its registration: nothing is built),
    whether it can be used (its module and driver import), and every plugin that failed to
    load, with why."""
    specs, failures = registry.discover()
    print("installed storage backends:")
    for spec in specs.values():
        dist = f"{spec.distribution or '(in code)'} {spec.version or ''}".strip()
        print(f"  {spec.name:<10} {dist:<36} [{_offers(spec)}]  {spec.description}")
        problem = spec.unusable()
        if problem is not None:
            print(f"  {'':<10} UNUSABLE until fixed: {redact_known(problem)}")
    if failures:
        print("failed to load (skipped):")
        for name, failure in failures.items():
            print(f"  {name:<10} {failure.distribution or '?'}: {failure.error}")
    return 0


def _offers(spec: BackendSpec) -> str:
    if spec.capabilities is None:
        return "depends on its configuration"
    return ", ".join(sorted(c.value for c in spec.capabilities)) or "the mandatory primitives only"


async def doctor(args: argparse.Namespace) -> int:
    """The configuration, the backend it selects and why; then connect and ping it."""
    settings = settings_from(args)
    choice, spec, _ = resolve(settings=settings)
    print("configuration:")
    _print_settings(settings, sorted(type(settings).model_fields))
    own = spec.settings_model()
    if own is not None:
        try:  # as the factory reads them: a bad value is named, never quoted (pydantic's would be)
            backend_settings = load_backend_settings(own, {})
        except StorageError as exc:
            print(f"  ({spec.name} settings: {describe(exc)})")
        else:
            if isinstance(backend_settings, SettingsBase):
                prefix = str(own.model_config.get("env_prefix", ""))
                _print_settings(backend_settings, sorted(own.model_fields), prefix)
    print(f"chosen backend: {spec.name}  ({choice.reason})")
    _, failures = registry.discover()
    for name, failure in failures.items():  # recorded once, shown here and by `backends`
        print(f"plugin {name!r} ({failure.distribution or '?'}) failed to load and is skipped: {failure.error}")
    storage = get_storage_backend(settings=settings)
    parts = labelled_parts(storage.backend)
    if parts:
        try:
            check_claims(storage.backend)
        except StorageError as exc:
            print(f"UNHEALTHY: {describe(exc)}")
            return 1
        return _parts_report(storage.backend, parts, list(await asyncio.gather(*(_check(p) for p in parts.values()))))
    try:
        async with storage:
            latency = await storage.ping()
            info = await storage.info()
    except StorageError as exc:
        print(f"UNHEALTHY: {describe(exc)}")
        return 1
    print(f"ping: {latency * 1000:.2f} ms")
    for key, value in info.items():
        print(f"  {key:<26} {value}")
    print("healthy")
    return 0


def _print_settings(settings: SettingsBase | StorageSettings, fields: list[str], prefix: str = "") -> None:
    for name in fields:
        value = settings.shown(name)
        print(f"  {(prefix + name).upper():<26} {'(unset)' if value is None else value}")


def labelled_parts(backend: StorageBackend) -> dict[str, StorageBackend]:
    """The labelled parts of a composite, through wrappers standing for their one part (a
    breaker); empty for a backend that is not made of others."""
    while isinstance(backend, SupportsParts):
        parts = list(backend.parts())
        if len(parts) == 1 and not parts[0][0]:
            backend = parts[0][1]
            continue
        return dict(parts)
    return {}


@dataclass(frozen=True)
class PartHealth:
    """One part, checked on its own: how long it took, its server's version, its breaker's state."""

    error: StorageError | None = None
    latency_ms: float = 0.0
    version: str = ""
    breaker: str = ""


async def _check(part: StorageBackend) -> PartHealth:
    """Connect, ping, describe and close *part* on its own (the composite is not connected)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await part.connect()
        try:
            await part.ping()
            facts = await part.info()
        finally:
            await part.aclose()
    except StorageError as exc:
        return PartHealth(exc)
    version = next((str(v) for k, v in facts.items() if k.endswith("_version")), "")
    described = facts.get("breaker")
    breaker = str(described.get("state", "")) if isinstance(described, Mapping) else ""
    return PartHealth(None, (loop.time() - started) * 1000, version, breaker)


def _parts_report(backend: StorageBackend, parts: dict[str, StorageBackend], report: list[PartHealth]) -> int:
    """Each part on its own, so one dead store still gives a report for the others; behind a
    router, which part serves each keyspace."""
    served: dict[str, list[str]] = {}
    if isinstance(backend, SupportsRouting):
        print("route table (keyspace -> part):")
        for name, prefix in [*((e.name, e.prefix) for e in ENTITIES.values()), ("", "")]:
            label = backend.route_of(prefix)
            print(f"  {prefix or '* (default)':<18} -> {label}")
            if name:
                served.setdefault(str(label), []).append(name)
    else:
        print(f"parts of {backend.name}:")
    broken: list[str] = []
    healthy: list[str] = []
    for (label, _), health in zip(parts.items(), report, strict=True):
        names = served.get(label, [])
        if health.error is not None:
            print(f"  {label}: UNAVAILABLE ({describe(health.error)})")
            affected = ", ".join(names) or ("default route" if served else "its data")
            broken.append(f"{label} unavailable: {affected} affected")
        else:
            breaker = f" (circuit breaker {health.breaker})" if health.breaker else ""
            print(f"  {label}: ok in {health.latency_ms:.1f} ms {health.version}{breaker}")
            healthy.extend(names or [label])
    if broken:
        print("UNHEALTHY: " + "; ".join(broken) + (f"; {', '.join(healthy)} OK" if healthy else ""))
        return 1
    print("healthy")
    return 0
