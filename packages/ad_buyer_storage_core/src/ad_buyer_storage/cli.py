"""``ad-buyer-storage``: backends, doctor, demo, and get/set/delete/keys for operators."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from .domain import ENTITIES
from .errors import StorageError
from .factory import get_storage_backend, resolve
from .hybrid import HybridBackend
from .redaction import redact_url
from .registry import PluginFailure, registry
from .settings import StorageSettings, load_settings
from .storage import Storage

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> StorageSettings:
    overrides: dict[str, Any] = {}
    if args.backend:
        overrides["storage_type"] = args.backend
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.redis_url:
        overrides["redis_url"] = args.redis_url
    return load_settings(**overrides)


def _storage(args: argparse.Namespace) -> Storage:
    return get_storage_backend(settings=_settings(args))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False))


async def _cmd_backends(args: argparse.Namespace) -> int:
    specs, failures = registry.discover()
    rows = []
    for spec in specs.values():
        try:
            backend_cls = spec.load_factory()
            caps = _capabilities_of(spec.name, backend_cls)
        except StorageError as exc:
            failures.setdefault(spec.name, PluginFailure(spec.name, spec.distribution, str(exc)))
            continue
        rows.append(
            (spec.name, f"{spec.distribution or '(in code)'} {spec.version or ''}".strip(), caps, spec.description)
        )
    print("installed storage backends:")
    for name, dist, caps, description in rows:
        print(f"  {name:<10} {dist:<36} [{caps}]  {description}")
    if failures:
        print("failed to load (skipped):")
        for name, failure in failures.items():
            print(f"  {name:<10} {failure.distribution or '?'}: {failure.error}")
    return 0


def _capabilities_of(name: str, factory: Any) -> str:
    # Capabilities live on the backend (and may depend on its configuration): build one
    # unconnected instance from the current settings (no I/O) to read them.
    try:
        backend = factory(load_settings(storage_type=name))
        return ", ".join(sorted(c.value for c in backend.capabilities))
    except Exception as exc:  # noqa: BLE001 - a backend needing a URL cannot be built offline
        caps = getattr(factory, "capabilities", None)
        return ", ".join(sorted(str(c) for c in caps)) if caps else f"unknown ({type(exc).__name__})"


async def _cmd_doctor(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print("configuration:")
    for field in (
        "storage_type",
        "database_url",
        "redis_url",
        "postgres_pool_min",
        "postgres_pool_max",
        "storage_connect_timeout",
        "storage_command_timeout",
        "session_default_ttl",
    ):
        value = getattr(settings, field)
        shown = redact_url(value) if field.endswith("_url") and value else value
        print(f"  {field.upper():<26} {shown if shown is not None else '(unset)'}")
    choice, spec, _ = resolve(settings=settings)
    print(f"chosen backend: {spec.name}  ({choice.reason})")
    storage = get_storage_backend(settings=settings)
    if isinstance(storage.backend, HybridBackend):
        return await _doctor_routes(storage.backend)
    try:
        async with storage:
            latency = await storage.ping()
            info = await storage.info()
    except StorageError as exc:
        print(f"UNHEALTHY: {type(exc).__name__}: {exc}")
        return 1
    print(f"ping: {latency * 1000:.2f} ms")
    for key, value in info.items():
        print(f"  {key:<26} {value}")
    print("healthy")
    return 0


async def _doctor_routes(router: HybridBackend) -> int:
    """Each route on its own, so one dead store still gives a report for the others."""
    print("route table (longest prefix wins):")
    for route in router.routes:
        print(f"  {route.prefix or '* (default)':<18} -> {route.label}")
    broken: list[str] = []
    healthy: list[str] = []
    for label, backend in {r.label: r.backend for r in router.routes}.items():
        names = [e.name for e in ENTITIES.values() if router.route_for(e.prefix).backend is backend]
        started = time.perf_counter()
        try:
            await backend.connect()
            try:
                await backend.ping()
                facts = await backend.info()
            finally:
                await backend.aclose()
        except StorageError as exc:
            print(f"  {label}: UNAVAILABLE ({type(exc).__name__}: {exc})")
            broken.append(f"{label} unavailable: {', '.join(names) or 'default route'} affected")
            continue
        version = next((v for k, v in facts.items() if k.endswith("version") and k != "schema_version"), "")
        print(f"  {label}: ok in {(time.perf_counter() - started) * 1000:.1f} ms {version}")
        healthy.extend(names)
    if broken:
        print("UNHEALTHY: " + "; ".join(broken) + (f"; {', '.join(healthy)} OK" if healthy else ""))
        return 1
    print("healthy")
    return 0


async def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    async with _storage(args) as storage:
        result = await run_demo(storage)
    return 0 if result["final_spend"] == "250.00" else 1


async def _cmd_get(args: argparse.Namespace) -> int:
    async with _storage(args) as storage:
        missing = object()
        value = await storage.get(args.key, default=missing)
    if value is missing:
        print(f"(no key {args.key!r})", file=sys.stderr)
        return 1
    _print_json(value)
    return 0


async def _cmd_set(args: argparse.Namespace) -> int:
    try:
        value = json.loads(args.value)
    except json.JSONDecodeError as exc:
        print(f"error: VALUE must be JSON ({exc}); quote strings: '\"text\"'", file=sys.stderr)
        return 2
    async with _storage(args) as storage:
        version = await storage.set(args.key, value, ttl=args.ttl)
    print(f"stored {args.key!r} (version {version})")
    return 0


async def _cmd_delete(args: argparse.Namespace) -> int:
    async with _storage(args) as storage:
        deleted = await storage.delete(args.key)
    print("deleted" if deleted else "(no such key)")
    return 0 if deleted else 1


async def _cmd_keys(args: argparse.Namespace) -> int:
    async with _storage(args) as storage:
        keys = await storage.keys(args.pattern)
        if args.limit is not None:
            keys = keys[: args.limit]
    _print_json(keys)
    return 0


async def _cmd_clear(args: argparse.Namespace) -> int:
    if not args.yes:
        print("refusing to delete every key of the namespace without --yes", file=sys.stderr)
        return 2
    async with _storage(args) as storage:
        deleted = await storage.clear()
    print(f"deleted {deleted} keys")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ad-buyer-storage", description=__doc__)
    parser.add_argument("--backend", help="backend name (overrides STORAGE_TYPE)")
    parser.add_argument("--database-url", help="overrides DATABASE_URL")
    parser.add_argument("--redis-url", help="overrides REDIS_URL")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backends", help="list installed backends, their capabilities, and plugins that failed")
    sub.add_parser("doctor", help="show the configuration, the chosen backend and why; connect and ping")
    sub.add_parser("demo", help="run a short buyer-agent scenario against the configured backend")
    get = sub.add_parser("get", help="print the JSON value of KEY")
    get.add_argument("key")
    put = sub.add_parser("set", help="store the JSON VALUE under KEY")
    put.add_argument("key")
    put.add_argument("value", help="a JSON document")
    put.add_argument("--ttl", type=float, help="seconds before the key expires")
    delete = sub.add_parser("delete", help="delete KEY")
    delete.add_argument("key")
    keys = sub.add_parser("keys", help="list keys matching a glob PATTERN (Redis grammar)")
    keys.add_argument("pattern", nargs="?", default="*")
    keys.add_argument("--limit", type=int)
    clear = sub.add_parser("clear", help="delete every key of the configured namespace (and nothing else)")
    clear.add_argument("--yes", action="store_true", help="confirm")
    return parser


_COMMANDS = {
    "backends": _cmd_backends,
    "doctor": _cmd_doctor,
    "demo": _cmd_demo,
    "get": _cmd_get,
    "set": _cmd_set,
    "delete": _cmd_delete,
    "keys": _cmd_keys,
    "clear": _cmd_clear,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_COMMANDS[args.command](args))
    except StorageError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
