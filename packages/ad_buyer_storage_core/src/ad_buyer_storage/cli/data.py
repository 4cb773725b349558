"""``get``, ``set``, ``delete``, ``keys``, ``clear`` and ``demo``: the data, for operators."""

from __future__ import annotations

import argparse
import json
import sys

from .common import print_json, storage_from
from .demo import run_demo

__all__ = ["clear", "delete", "demo", "get", "keys", "put"]


async def demo(args: argparse.Namespace) -> int:
    async with storage_from(args) as storage:
        result = await run_demo(storage, keep=args.keep)
    bookings = result.get("bookings", {"booked": 100, "spent": "1000.00"})  # absent: no transactions
    exact = result["final_spend"] == "250.00" and bookings["booked"] == 100 and bookings["spent"] == "1000.00"
    return 0 if exact else 1


async def get(args: argparse.Namespace) -> int:
    async with storage_from(args) as storage:
        missing = object()
        value = await storage.get(args.key, default=missing)
    if value is missing:
        print(f"(no key {args.key!r})", file=sys.stderr)
        return 1
    print_json(value)
    return 0


async def put(args: argparse.Namespace) -> int:
    try:
        value = json.loads(args.value)
    except json.JSONDecodeError as exc:
        print(f"error: VALUE must be JSON ({exc}); quote strings: '\"text\"'", file=sys.stderr)
        return 2
    async with storage_from(args) as storage:
        version = await storage.set(args.key, value, ttl=args.ttl)
    print(f"stored {args.key!r} (version {version})")
    return 0


async def delete(args: argparse.Namespace) -> int:
    async with storage_from(args) as storage:
        deleted = await storage.delete(args.key)
    print("deleted" if deleted else "(no such key)")
    return 0 if deleted else 1


async def keys(args: argparse.Namespace) -> int:
    async with storage_from(args) as storage:
        found = await storage.keys(args.pattern)
    print_json(found if args.limit is None else found[: args.limit])
    return 0


async def clear(args: argparse.Namespace) -> int:
    if not args.yes:
        print("refusing to delete every key of the namespace without --yes", file=sys.stderr)
        return 2
    async with storage_from(args) as storage:
        deleted = await storage.clear()
    print(f"deleted {deleted} keys")
    return 0
