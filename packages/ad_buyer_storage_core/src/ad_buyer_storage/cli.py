"""``ad-buyer-storage``: backends, doctor, demo, and get/set/delete/keys for operators."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .domain import ENTITIES
from .errors import InvalidTTLError, StorageError
from .factory import get_storage_backend, open_storage, resolve
from .hybrid import HybridBackend
from .migrate import MAX_BATCH_SIZE
from .redaction import redact_text
from .registry import BackendSpec, PluginFailure, registry
from .settings import StorageSettings, load_settings, url_scheme
from .storage import Storage
from .validation import ttl_to_ms

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
            caps = _capabilities_of(spec)
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


def _capabilities_of(spec: BackendSpec) -> str:
    """Capabilities live on the backend (and may depend on its configuration): build one
    unconnected instance (no I/O) from the current settings, or from a placeholder URL."""
    if spec.name in ("hybrid", "mirror"):
        return "what its routes offer"
    factory = spec.load_factory()
    settings = load_settings(storage_type=spec.name)
    if (
        spec.url_setting
        and spec.url_schemes
        and url_scheme(getattr(settings, spec.url_setting)) not in spec.url_schemes
    ):
        settings = settings.model_copy(update={spec.url_setting: f"{spec.url_schemes[0]}://localhost/0"})
    try:
        backend = factory(settings)
    except StorageError as exc:
        return f"unknown ({type(exc).__name__})"
    return ", ".join(sorted(c.value for c in backend.capabilities))


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
        "storage_routes",
    ):
        value = getattr(settings, field)
        print(f"  {field.upper():<26} {settings.shown(field) if value is not None else '(unset)'}")
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
        print(f"UNHEALTHY: {_describe(exc)}")
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
            print(f"  {label}: UNAVAILABLE ({_describe(exc)})")
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


async def _cmd_migrate(args: argparse.Namespace) -> int:
    from .migrate import Progress, migrate

    async with open_storage(args.source) as source, open_storage(args.target) as target:
        bar: Progress | None = None

        def progress(done: int, total: int | None) -> None:
            nonlocal bar
            bar = bar or Progress(total)
            bar.update(done)

        report = await migrate(
            source, target, pattern=args.pattern, batch_size=args.batch_size, overwrite=args.overwrite,
            dry_run=args.dry_run, progress=None if args.quiet else progress,
        )  # fmt: skip
        if bar is not None:
            bar.update(report.scanned, final=True)
        verb = "would copy" if report.dry_run else "copied"
        print(
            f"{verb} {report.copied:,} of {report.scanned:,} keys in {report.seconds:.1f} s "
            f"({report.rate:,.0f} keys/s); already there: {report.already_present:,}; "
            f"kept on target (different there): {report.kept_on_target:,}; overwritten: {report.overwritten:,}; "
            f"expired, skipped: {report.expired:,}"
        )
        if report.differing_keys:
            print("  kept (use --overwrite to replace): " + ", ".join(map(repr, report.differing_keys)))
        if args.dry_run or args.no_verify:
            return 0
        return await _verify(source, target, args.pattern)


async def _verify(source: Storage, target: Storage, pattern: str) -> int:
    from .migrate import verify

    result = await verify(source, target, pattern=pattern)
    print(f"verification ({pattern!r}):")
    print(f"  {'prefix':<18} {'source':>9} {'target':>9}  checksums")
    for prefix, (s_count, t_count, s_sum, t_sum) in result.prefixes.items():
        mark = "ok" if s_count == t_count and s_sum == t_sum else "MISMATCH"
        print(f"  {prefix:<18} {s_count:>9,} {t_count:>9,}  {s_sum} {t_sum}  {mark}")
    for label, keys in (("missing on target", result.missing_on_target), ("only on target", result.extra_on_target),
                        ("different", result.different)):  # fmt: skip
        if keys:
            print(f"  {label}: " + ", ".join(map(repr, keys)))
    print("verified: source and target agree" if result.ok else "VERIFY FAILED: see the differences above")
    return 0 if result.ok else 1


async def _cmd_verify(args: argparse.Namespace) -> int:
    async with open_storage(args.source) as source, open_storage(args.target) as target:
        return await _verify(source, target, args.pattern)


async def _cmd_mirror_repair(args: argparse.Namespace) -> int:
    from .mirror import MirrorBackend, repair

    async with _storage(args) as storage:
        mirror = storage.backend
        if not isinstance(mirror, MirrorBackend):
            print("mirror-repair needs STORAGE_TYPE=mirror (MIRROR_PRIMARY, MIRROR_SECONDARY)", file=sys.stderr)
            return 2
        repaired = await repair(mirror)
    print(f"copied {repaired} recorded key(s) again from the primary to the secondary")
    return 0


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit 2 (argparse would add the usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _ttl(text: str) -> float:
    """``--ttl``: the rule of ``Storage.set``, checked before anything is opened."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    try:
        ttl_to_ms(seconds)
    except InvalidTTLError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return seconds


def _count(low: int, high: int) -> Callable[[str], int]:
    """A whole number from *low* to *high* (a negative ``--limit`` would slice from the end)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("must be a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high:,}, not {value}")
        return value

    parse.__name__ = "count"  # argparse names the type in its own messages
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ad-buyer-storage", description=__doc__)
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
    put.add_argument("--ttl", type=_ttl, help="seconds before the key expires (> 0)")
    delete = sub.add_parser("delete", help="delete KEY")
    delete.add_argument("key")
    keys = sub.add_parser("keys", help="list keys matching a glob PATTERN (Redis grammar)")
    keys.add_argument("pattern", nargs="?", default="*")
    keys.add_argument("--limit", type=_count(1, sys.maxsize), help="print at most N keys (N >= 1)")
    for command, text in (("migrate", "copy keys (with their TTL) from one store to another, then verify"),
                          ("verify", "compare two stores: counts and checksums per prefix")):  # fmt: skip
        cmd = sub.add_parser(command, help=text)
        cmd.add_argument("--from", dest="source", required=True, help="URL or backend name")
        cmd.add_argument("--to", dest="target", required=True, help="URL or backend name")
        cmd.add_argument("--pattern", default="*", help="glob of the keys to take (default: all)")
        if command == "migrate":
            cmd.add_argument("--dry-run", action="store_true", help="count what would be copied; write nothing")
            cmd.add_argument("--overwrite", action="store_true", help="replace values that differ on the target")
            cmd.add_argument(
                "--batch-size", type=_count(1, MAX_BATCH_SIZE), default=1000, help="keys read and written at once"
            )
            cmd.add_argument("--no-verify", action="store_true", help="skip the verification pass")
            cmd.add_argument("--quiet", action="store_true", help="no progress output")
    sub.add_parser("mirror-repair", help="copy the keys a mirror recorded (secondary failures) again")
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
    "migrate": _cmd_migrate,
    "verify": _cmd_verify,
    "mirror-repair": _cmd_mirror_repair,
}


# Where URLs come from, so that whatever an error quotes of them is hidden once more.
_URL_VARIABLES = ("DATABASE_URL", "REDIS_URL", "STORAGE_ROUTES", "MIRROR_PRIMARY", "MIRROR_SECONDARY", "STORAGE_TYPE")
_URL_OPTIONS = ("database_url", "redis_url", "backend", "source", "target")
_known_urls: list[str] = []


def _describe(exc: BaseException) -> str:
    """``Type: message``, the message already redacted where it was made and redacted again here."""
    return redact_text(f"{type(exc).__name__}: {exc}", *_known_urls)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _known_urls[:] = [os.environ.get(v) or "" for v in _URL_VARIABLES]
    _known_urls.extend(str(getattr(args, o, None) or "") for o in _URL_OPTIONS)
    try:
        return asyncio.run(_COMMANDS[args.command](args))
    except StorageError as exc:
        print(f"error: {_describe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: report it whole, but never a secret in it
        text = "".join(traceback.format_exception(exc))
        print(redact_text(text, *_known_urls), file=sys.stderr, end="")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
