"""The AdCP SDK's stores on ad-buyer-storage: every backend, shared by every process.

Each adapter is built from a URL (``StorageReplayStore("redis://127.0.0.1:6379/0")``), a backend
name (``"hybrid"``), None (the backend the settings choose) or one of our stores.
"""

from __future__ import annotations

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
