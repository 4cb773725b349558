"""The AdCP SDK's stores on ad-buyer-storage: every backend, shared by every process.

Each adapter is built from a URL (``StorageReplayStore("redis://127.0.0.1:6379/0")``), a backend
name (``"hybrid"``), None (the backend the settings choose) or one of our stores.

Each name is imported on first use: the SDK's packages take long to import, and a program that
uses one adapter imports only what that one needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ad_buyer_storage_adcp.audit import StorageAuditSink
    from ad_buyer_storage_adcp.contexts import StorageMediaBuyContextStore
    from ad_buyer_storage_adcp.idempotency import StorageIdempotencyBackend
    from ad_buyer_storage_adcp.proposals import StorageProposalStore
    from ad_buyer_storage_adcp.replay import StorageReplayStore
    from ad_buyer_storage_adcp.tasks import StorageTaskRegistry

__all__ = [
    "StorageAuditSink",
    "StorageIdempotencyBackend",
    "StorageMediaBuyContextStore",
    "StorageProposalStore",
    "StorageReplayStore",
    "StorageTaskRegistry",
]

_WHERE = {
    "StorageAuditSink": "audit",
    "StorageIdempotencyBackend": "idempotency",
    "StorageMediaBuyContextStore": "contexts",
    "StorageProposalStore": "proposals",
    "StorageReplayStore": "replay",
    "StorageTaskRegistry": "tasks",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
