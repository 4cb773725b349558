"""ad-buyer-storage: the pluggable async storage layer of the ad buyer agent.

>>> from ad_buyer_storage import open_storage
>>> async def main():
...     async with open_storage("sqlite:///./ad_buyer.db") as storage:
...         await storage.set_deal("d1", {"status": "active", "spend": 0})
...         return await storage.list_deals({"status": "active"})
"""

from __future__ import annotations

from .clock import ManualClock
from .codec import JsonCodec
from .coordination import LeaseLock, RateLimiter, RateLimitResult
from .domain import ENTITIES, Entity, EntityCollection, register_entity
from .errors import (
    AuthenticationError,
    BackendError,
    BackendNotFoundError,
    BusyError,
    ConfigurationError,
    InvalidInputError,
    InvalidKeyError,
    InvalidPatternError,
    InvalidTTLError,
    InvalidValueError,
    KeyNotFoundError,
    KeyTypeError,
    LifecycleError,
    LockError,
    LockNotOwnedError,
    LockTimeoutError,
    NotConnectedError,
    OutcomeUnknownError,
    PluginLoadError,
    ReadOnlyError,
    StorageClosedError,
    StorageError,
    StorageFullError,
    StorageTimeoutError,
    UnavailableError,
    UnsupportedOperationError,
    VersionConflictError,
)
from .factory import close_storage, get_storage, get_storage_backend, open_storage
from .glob import GlobPattern, compile_glob, escape_glob
from .hookspecs import hookimpl
from .hybrid import HybridBackend, Route
from .protocol import NO_EXPIRY, NO_KEY, Capability, Condition, Record, StorageBackend, SupportsPubSub, Write
from .redaction import redact_url
from .registry import BackendSpec, register_backend, registry
from .settings import StorageSettings, load_settings
from .storage import Storage, Versioned

__all__ = [
    "ENTITIES",
    "NO_EXPIRY",
    "NO_KEY",
    "AuthenticationError",
    "BackendError",
    "BackendNotFoundError",
    "BackendSpec",
    "BusyError",
    "Capability",
    "Condition",
    "ConfigurationError",
    "Entity",
    "EntityCollection",
    "GlobPattern",
    "InvalidInputError",
    "InvalidKeyError",
    "InvalidPatternError",
    "InvalidTTLError",
    "InvalidValueError",
    "JsonCodec",
    "KeyNotFoundError",
    "KeyTypeError",
    "HybridBackend",
    "LeaseLock",
    "LifecycleError",
    "LockError",
    "LockNotOwnedError",
    "LockTimeoutError",
    "ManualClock",
    "NotConnectedError",
    "OutcomeUnknownError",
    "PluginLoadError",
    "RateLimitResult",
    "RateLimiter",
    "Route",
    "ReadOnlyError",
    "Record",
    "Storage",
    "StorageBackend",
    "StorageClosedError",
    "StorageError",
    "StorageFullError",
    "StorageSettings",
    "StorageTimeoutError",
    "SupportsPubSub",
    "UnavailableError",
    "UnsupportedOperationError",
    "VersionConflictError",
    "Versioned",
    "Write",
    "close_storage",
    "compile_glob",
    "escape_glob",
    "get_storage",
    "get_storage_backend",
    "hookimpl",
    "load_settings",
    "open_storage",
    "redact_url",
    "register_backend",
    "register_entity",
    "registry",
]
