"""``backends`` and ``doctor``: what is installed, what the settings select, and is it healthy."""

from __future__ import annotations

import argparse

from ad_buyer_storage.composed.hybrid import HybridBackend, RouteHealth
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
    if isinstance(storage.backend, HybridBackend):
        return _route_report(storage.backend, await storage.backend.route_health(standalone=True))
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


def _route_report(router: HybridBackend, report: list[RouteHealth]) -> int:
    """Each route on its own, so one dead store still gives a report for the others."""
    print("route table (longest prefix wins):")
    for route in router.routes:
        print(f"  {route.prefix or '* (default)':<18} -> {route.label}")
    broken: list[str] = []
    healthy: list[str] = []
    for health in report:
        names = [e.name for e in ENTITIES.values() if router.route_for(e.prefix).label == health.label]
        if health.error is not None:
            print(f"  {health.label}: UNAVAILABLE ({describe(health.error)})")
            broken.append(f"{health.label} unavailable: {', '.join(names) or 'default route'} affected")
        else:
            breaker = f" (circuit breaker {health.breaker})" if health.breaker else ""
            print(f"  {health.label}: ok in {health.latency_ms or 0:.1f} ms {health.version}{breaker}")
            healthy.extend(names)
    if broken:
        print("UNHEALTHY: " + "; ".join(broken) + (f"; {', '.join(healthy)} OK" if healthy else ""))
        return 1
    print("healthy")
    return 0
