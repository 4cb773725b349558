"""Connect, release and close the backends a composed backend (router, mirror) is made of."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from ad_buyer_storage.contract.protocol import StorageBackend, SupportsReleaseNamespace

__all__ = ["close_all", "connect_all", "release_all"]


async def connect_all(backends: Sequence[StorageBackend]) -> list[StorageBackend]:
    """Connect each backend in order; if one fails, close those already open and re-raise."""
    opened: list[StorageBackend] = []
    for backend in backends:
        try:
            await backend.connect()
        except BaseException:
            with contextlib.suppress(Exception):  # the connect error is the one to report
                await close_all(opened)
            with contextlib.suppress(Exception):
                await backend.aclose()
            raise
        opened.append(backend)
    return opened


async def release_all(backends: Sequence[StorageBackend]) -> None:
    """Pass ``release_namespace`` on to the backends that have it (see the protocol), going on
    past failures; raise the first one."""
    first: BaseException | None = None
    for backend in backends:
        if isinstance(backend, SupportsReleaseNamespace):
            try:
                await backend.release_namespace()
            except Exception as exc:  # noqa: BLE001 - release them all, then report
                first = first or exc
    if first is not None:
        raise first


async def close_all(backends: Sequence[StorageBackend]) -> None:
    """Close every backend (last opened first), going on past failures; raise the first one."""
    first: BaseException | None = None
    for backend in reversed(backends):
        try:
            await backend.aclose()
        except Exception as exc:  # noqa: BLE001 - close them all, then report
            first = first or exc
    if first is not None:
        raise first
