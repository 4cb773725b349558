"""What a backend implements: the protocol, the glob grammar patterns arrive in, clocks.

Backend authors import from here:
``from ad_buyer_storage.contract import StorageBackend, Record, Write``.
Each name is imported from its module on first use, so importing one module of this package
loads no other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ad_buyer_storage.contract.clock import Clock as Clock
    from ad_buyer_storage.contract.clock import ManualClock as ManualClock
    from ad_buyer_storage.contract.glob import GlobPattern as GlobPattern
    from ad_buyer_storage.contract.glob import compile_glob as compile_glob
    from ad_buyer_storage.contract.glob import escape_glob as escape_glob
    from ad_buyer_storage.contract.protocol import FLAG_METHODS as FLAG_METHODS
    from ad_buyer_storage.contract.protocol import INT64_MAX as INT64_MAX
    from ad_buyer_storage.contract.protocol import INT64_MIN as INT64_MIN
    from ad_buyer_storage.contract.protocol import NO_EXPIRY as NO_EXPIRY
    from ad_buyer_storage.contract.protocol import NO_KEY as NO_KEY
    from ad_buyer_storage.contract.protocol import Capability as Capability
    from ad_buyer_storage.contract.protocol import Check as Check
    from ad_buyer_storage.contract.protocol import Condition as Condition
    from ad_buyer_storage.contract.protocol import Filter as Filter
    from ad_buyer_storage.contract.protocol import Peer as Peer
    from ad_buyer_storage.contract.protocol import PoolUsage as PoolUsage
    from ad_buyer_storage.contract.protocol import Record as Record
    from ad_buyer_storage.contract.protocol import StorageBackend as StorageBackend
    from ad_buyer_storage.contract.protocol import SupportsAtomic as SupportsAtomic
    from ad_buyer_storage.contract.protocol import SupportsExpiry as SupportsExpiry
    from ad_buyer_storage.contract.protocol import SupportsParts as SupportsParts
    from ad_buyer_storage.contract.protocol import SupportsPubSub as SupportsPubSub
    from ad_buyer_storage.contract.protocol import SupportsQuery as SupportsQuery
    from ad_buyer_storage.contract.protocol import SupportsRefresh as SupportsRefresh
    from ad_buyer_storage.contract.protocol import SupportsReleaseNamespace as SupportsReleaseNamespace
    from ad_buyer_storage.contract.protocol import SupportsRemovePrefix as SupportsRemovePrefix
    from ad_buyer_storage.contract.protocol import SupportsRouting as SupportsRouting
    from ad_buyer_storage.contract.protocol import SupportsTelemetry as SupportsTelemetry
    from ad_buyer_storage.contract.protocol import SupportsTransactions as SupportsTransactions
    from ad_buyer_storage.contract.protocol import SupportsTurns as SupportsTurns
    from ad_buyer_storage.contract.protocol import Write as Write
    from ad_buyer_storage.contract.protocol import new_version as new_version
    from ad_buyer_storage.contract.protocol import new_versions as new_versions
    from ad_buyer_storage.contract.protocol import unimplemented as unimplemented

_WHERE = {
    "INT64_MAX": "ad_buyer_storage.contract.protocol",
    "INT64_MIN": "ad_buyer_storage.contract.protocol",
    "NO_EXPIRY": "ad_buyer_storage.contract.protocol",
    "NO_KEY": "ad_buyer_storage.contract.protocol",
    "Capability": "ad_buyer_storage.contract.protocol",
    "Check": "ad_buyer_storage.contract.protocol",
    "Condition": "ad_buyer_storage.contract.protocol",
    "Filter": "ad_buyer_storage.contract.protocol",
    "Peer": "ad_buyer_storage.contract.protocol",
    "PoolUsage": "ad_buyer_storage.contract.protocol",
    "Record": "ad_buyer_storage.contract.protocol",
    "unimplemented": "ad_buyer_storage.contract.protocol",
    "SupportsParts": "ad_buyer_storage.contract.protocol",
    "SupportsExpiry": "ad_buyer_storage.contract.protocol",
    "SupportsAtomic": "ad_buyer_storage.contract.protocol",
    "FLAG_METHODS": "ad_buyer_storage.contract.protocol",
    "StorageBackend": "ad_buyer_storage.contract.protocol",
    "SupportsPubSub": "ad_buyer_storage.contract.protocol",
    "SupportsQuery": "ad_buyer_storage.contract.protocol",
    "SupportsRefresh": "ad_buyer_storage.contract.protocol",
    "SupportsReleaseNamespace": "ad_buyer_storage.contract.protocol",
    "SupportsRemovePrefix": "ad_buyer_storage.contract.protocol",
    "SupportsRouting": "ad_buyer_storage.contract.protocol",
    "SupportsTelemetry": "ad_buyer_storage.contract.protocol",
    "SupportsTransactions": "ad_buyer_storage.contract.protocol",
    "SupportsTurns": "ad_buyer_storage.contract.protocol",
    "Write": "ad_buyer_storage.contract.protocol",
    "new_version": "ad_buyer_storage.contract.protocol",
    "new_versions": "ad_buyer_storage.contract.protocol",
    "GlobPattern": "ad_buyer_storage.contract.glob",
    "compile_glob": "ad_buyer_storage.contract.glob",
    "escape_glob": "ad_buyer_storage.contract.glob",
    "Clock": "ad_buyer_storage.contract.clock",
    "ManualClock": "ad_buyer_storage.contract.clock",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
