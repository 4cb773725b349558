"""``ad-buyer-storage``: backends, doctor, demo, get/set/delete/keys/clear for operators, and
migrate/verify/mirror-repair for moving between stores."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from ad_buyer_storage.client.validation import ttl_to_ms
from ad_buyer_storage.errors import InvalidTTLError, StorageError
from ad_buyer_storage.ops.migrate import MAX_BATCH_SIZE
from ad_buyer_storage.plugins.settings import problems

from . import data, diagnose, moves
from .common import describe, known_urls, url_options, withhold_known

__all__ = ["main"]

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


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
    for setting in url_options():  # learned from the installed backends: --database-url, --redis-url...
        parser.add_argument(f"--{setting.replace('_', '-')}", dest=setting, help=f"overrides {setting.upper()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run: Command, text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=text)
        cmd.set_defaults(run=run)
        return cmd

    command("backends", diagnose.backends, "list installed backends, their capabilities, and plugins that failed")
    command("doctor", diagnose.doctor, "show the configuration, the chosen backend and why; connect and ping")
    demo = command("demo", data.demo, "run a short buyer-agent scenario against the configured backend")
    demo.add_argument("--keep", action="store_true", help="leave the demo's keys in the store to look at")
    command("get", data.get, "print the JSON value of KEY").add_argument("key")
    put = command("set", data.put, "store the JSON VALUE under KEY")
    put.add_argument("key")
    put.add_argument("value", help="a JSON document")
    put.add_argument("--ttl", type=_ttl, help="seconds before the key expires (> 0)")
    command("delete", data.delete, "delete KEY").add_argument("key")
    keys = command("keys", data.keys, "list keys matching a glob PATTERN (Redis grammar)")
    keys.add_argument("pattern", nargs="?", default="*")
    keys.add_argument("--limit", type=_count(0, sys.maxsize), help="print at most N keys (N >= 0)")
    for name, run, text in (
        ("migrate", moves.migrate, "copy keys (with their TTL) from one store to another, then verify"),
        ("verify", moves.verify, "compare two stores: counts and checksums per prefix"),
    ):
        cmd = command(name, run, text)
        cmd.add_argument("--from", dest="source", required=True, help="URL or backend name")
        cmd.add_argument("--to", dest="target", required=True, help="URL or backend name")
        cmd.add_argument("--pattern", default="*", help="glob of the keys to take (default: all)")
        if name == "migrate":
            cmd.add_argument("--dry-run", action="store_true", help="count what would be copied; write nothing")
            cmd.add_argument("--overwrite", action="store_true", help="replace values that differ on the target")
            cmd.add_argument(
                "--batch-size", type=_count(1, MAX_BATCH_SIZE), default=1000, help="keys read and written at once"
            )
            cmd.add_argument("--no-verify", action="store_true", help="skip the verification pass")
            cmd.add_argument("--quiet", action="store_true", help="no progress output")
    command("mirror-repair", moves.mirror_repair, "copy the keys a mirror recorded (secondary failures) again")
    command("clear", data.clear, "delete every key of the configured namespace (and nothing else)").add_argument(
        "--yes", action="store_true", help="confirm"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Any variable that may carry credentials (a URL, a route table...): hidden in whatever is printed.
    known_urls(args, tuple(name for name, value in os.environ.items() if "@" in value or "://" in value))
    try:
        command: Command = args.run
        return asyncio.run(command(args))
    except StorageError as exc:
        print(f"error: {describe(exc)}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # a settings model read outside load_*settings: pydantic quotes inputs
        print(f"error: invalid settings: {problems(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: report it whole, but never a secret in it
        text = "".join(traceback.format_exception(exc))
        shown = withhold_known(text, what=f"the traceback of an unexpected {type(exc).__name__}")
        print(shown if shown.endswith("\n") else f"error: {shown}\n", file=sys.stderr, end="")
        return 1
