"""What every adapter shares: one of our stores (built from a URL or given), connected on first
use, and the mapping of the SDK's identifiers to keys of ours.

The SDK's identifiers (scope keys, idempotency keys, key ids, nonces, account and proposal
ids...) are opaque text: they may be long, hold ``:``, glob characters, control characters or
lone surrogates. :func:`part` maps each to a valid key segment, injectively: percent-encoding
of its UTF-8 bytes (alphanumerics and ``-_.~`` kept), or, past :data:`MAX_PART`, ``#`` and the
SHA-256 of those bytes (``#`` never appears in an encoded part). Segments are joined with
``:``, which no segment holds, so distinct tuples never share a key.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import urllib.parse
from typing import Any

from ad_buyer_storage import Capability, ConfigurationError, Keyspace, Store, StoreProfile
from ad_buyer_storage import build_store as core_build_store

__all__ = ["MAX_PART", "StoreHolder", "Target", "build_store", "part"]

#: The longest encoded segment kept as it is; longer ones become their SHA-256 (65 characters).
MAX_PART = 200

_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")

#: What an adapter is built from: a URL (``redis://...``), a backend name (``"hybrid"``,
#: ``"memory"``), None (the one the settings choose: STORAGE_TYPE, DATABASE_URL...), or a Store.
Target = str | Store | None


def part(text: str) -> str:
    """A key segment for *text*: the same text always maps to the same segment, distinct texts never do."""
    if not isinstance(text, str):
        raise TypeError(f"identifiers are str, not {type(text).__name__}")
    raw = text.encode("utf-8", "surrogatepass")
    encoded = urllib.parse.quote_from_bytes(raw, safe="")
    if len(encoded) > MAX_PART or not encoded:
        return "#" + hashlib.sha256(raw).hexdigest()
    return encoded


def build_store(target: Target, *, namespace: str = "adcp", **overrides: Any) -> tuple[Store, bool]:
    """The store for *target*, and whether the adapter owns it (then it closes it).

    A URL or a name is built by the core's :func:`ad_buyer_storage.build_store`, with a profile
    that declares the adapters' keyspace (``<namespace>:``: durable data that needs atomics,
    expiry and transactions), so a hybrid store keeps it on its durable route and refuses a
    route that cannot hold it.
    """
    if isinstance(target, Store):
        if overrides:
            raise ConfigurationError("settings overrides apply to a URL or a backend name, not to a Store")
        return target, False
    if target is not None and not isinstance(target, str):
        raise ConfigurationError(f"a store target is a URL, a name, a Store or None, not {type(target).__name__}")
    needs = frozenset({Capability.ATOMIC, Capability.EXPIRY, Capability.TRANSACTIONS})
    profile = StoreProfile((Keyspace(f"{namespace}:", "adcp", durable=True, needs=needs),))
    return core_build_store(target, profile=profile, **overrides), True


class StoreHolder:
    """One store under a namespace, connected on first use, closed by :meth:`aclose` if owned."""

    def __init__(self, target: Target, *, namespace: str = "adcp", kind: str, **overrides: Any) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise ConfigurationError("namespace is 1 to 64 characters among A-Z a-z 0-9 _ . -")
        self._store, self._owned = build_store(target, namespace=namespace, **overrides)
        self._prefix = f"{namespace}:{kind}:"
        self._connect_lock: asyncio.Lock | None = None

    @property
    def prefix(self) -> str:
        """Every key of this adapter starts with it (and no other adapter's does)."""
        return self._prefix

    def key(self, *parts: str) -> str:
        return self._prefix + ":".join(part(p) for p in parts)

    @property
    def raw_store(self) -> Store:
        """The store, connected or not."""
        return self._store

    @property
    def durable(self) -> bool:
        """Whether this adapter's keys land on a durable store (per route, behind a router)."""
        return Capability.DURABLE in self._store.capabilities_for(self._prefix + "x")

    async def store(self) -> Store:
        """The store, connected (once)."""
        if self._store.is_open:
            return self._store
        return await self._store.connect()

    async def aclose(self) -> None:
        """Close the store if this adapter built it (idempotent); a given store stays open."""
        if self._owned:
            await self._store.aclose()
