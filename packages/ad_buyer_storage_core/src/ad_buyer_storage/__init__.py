"""ad-buyer-storage: the pluggable async storage layer of the ad buyer agent.

>>> from ad_buyer_storage import open_storage
>>> async def main():
...     async with open_storage("sqlite:///./ad_buyer.db") as storage:
...         await storage.set_deal("d1", {"status": "active", "spend": 0})
...         return await storage.list_deals({"status": "active"})
"""

from __future__ import annotations

# Imports are lazy (PEP 562): `from ad_buyer_storage import registry` loads the registry and
# nothing else, so resolving a backend by name stays fast and imports no other driver.
import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        TLSError,
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

_WHERE: dict[str, str] = {
    "AuthenticationError": "errors",
    "BackendError": "errors",
    "BackendNotFoundError": "errors",
    "BackendSpec": "registry",
    "BusyError": "errors",
    "Capability": "protocol",
    "Condition": "protocol",
    "ConfigurationError": "errors",
    "ENTITIES": "domain",
    "Entity": "domain",
    "EntityCollection": "domain",
    "GlobPattern": "glob",
    "HybridBackend": "hybrid",
    "InvalidInputError": "errors",
    "InvalidKeyError": "errors",
    "InvalidPatternError": "errors",
    "InvalidTTLError": "errors",
    "InvalidValueError": "errors",
    "JsonCodec": "codec",
    "KeyNotFoundError": "errors",
    "KeyTypeError": "errors",
    "LeaseLock": "coordination",
    "LifecycleError": "errors",
    "LockError": "errors",
    "LockNotOwnedError": "errors",
    "LockTimeoutError": "errors",
    "ManualClock": "clock",
    "NO_EXPIRY": "protocol",
    "NO_KEY": "protocol",
    "NotConnectedError": "errors",
    "OutcomeUnknownError": "errors",
    "PluginLoadError": "errors",
    "RateLimitResult": "coordination",
    "RateLimiter": "coordination",
    "ReadOnlyError": "errors",
    "TLSError": "errors",
    "Record": "protocol",
    "Route": "hybrid",
    "Storage": "storage",
    "StorageBackend": "protocol",
    "StorageClosedError": "errors",
    "StorageError": "errors",
    "StorageFullError": "errors",
    "StorageSettings": "settings",
    "StorageTimeoutError": "errors",
    "SupportsPubSub": "protocol",
    "UnavailableError": "errors",
    "UnsupportedOperationError": "errors",
    "VersionConflictError": "errors",
    "Versioned": "storage",
    "Write": "protocol",
    "close_storage": "factory",
    "compile_glob": "glob",
    "escape_glob": "glob",
    "get_storage": "factory",
    "get_storage_backend": "factory",
    "hookimpl": "hookspecs",
    "load_settings": "settings",
    "open_storage": "factory",
    "redact_url": "redaction",
    "register_backend": "registry",
    "register_entity": "domain",
    "registry": "registry",
}

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
    "TLSError",
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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """``registry`` names both a submodule and the default Registry it holds. Once a submodule is
    loaded, the import system binds it on its package, and that binding would shadow the lazy
    attribute: ``from ad_buyer_storage import registry`` would give the module or the Registry
    depending on what was imported first. Submodules are reached through ``sys.modules`` anyway."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in _WHERE:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
