"""The shared servers every test may use (never FLUSHDB'd, never dropped): where they are, and
how a test removes what it made there."""

from __future__ import annotations

import os
import subprocess
import uuid

from ad_buyer_storage_redis.namespaces import NAMESPACES_KEY

POSTGRES_URL = os.environ.get("AD_BUYER_STORAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("AD_BUYER_STORAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def new_schema() -> str:
    return f"abs_test_{uuid.uuid4().hex[:12]}"


def new_prefix() -> str:
    return f"abs-test:{uuid.uuid4().hex}:"


def drop_pg_schema(schema: str) -> None:
    """Drop a schema a test made on the shared server (psql: works with or without a loop)."""
    subprocess.run(
        ["psql", POSTGRES_URL, "-qc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
        capture_output=True,
        timeout=60,
        check=False,
    )


def drop_redis_prefix(prefix: str) -> None:
    """Delete the keys a test left under *prefix* on the shared Redis (never FLUSHDB), and
    unregister the namespace (see ad_buyer_storage_redis.namespaces)."""
    cli = ["redis-cli", "-h", "127.0.0.1", "-p", "6379"]
    found = subprocess.run([*cli, "--scan", "--pattern", prefix + "*"], capture_output=True, text=True, timeout=30,
                           check=False).stdout.split()  # fmt: skip
    if found:
        subprocess.run([*cli, "DEL", *found], capture_output=True, timeout=30, check=False)
    subprocess.run([*cli, "SREM", NAMESPACES_KEY, prefix], capture_output=True, timeout=30, check=False)
