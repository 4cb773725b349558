"""Backends made of backends: the hybrid router, the mirror, the circuit breaker, and the
replication they share.

Operators composing stores by hand import from here:
``from ad_buyer_storage.composed import HybridBackend, Route, guarded``.
Each name is imported from its module on first use, so importing one module of this package
loads no other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ad_buyer_storage.composed.breaker import BreakerPolicy as BreakerPolicy
    from ad_buyer_storage.composed.breaker import CircuitBreaker as CircuitBreaker
    from ad_buyer_storage.composed.breaker import guarded as guarded
    from ad_buyer_storage.composed.breaker import unwrap as unwrap
    from ad_buyer_storage.composed.hybrid import HybridBackend as HybridBackend
    from ad_buyer_storage.composed.hybrid import Requirement as Requirement
    from ad_buyer_storage.composed.hybrid import Route as Route
    from ad_buyer_storage.composed.mirror import MirrorBackend as MirrorBackend
    from ad_buyer_storage.composed.mirror import mirror_of as mirror_of

_WHERE = {
    "BreakerPolicy": "ad_buyer_storage.composed.breaker",
    "CircuitBreaker": "ad_buyer_storage.composed.breaker",
    "guarded": "ad_buyer_storage.composed.breaker",
    "unwrap": "ad_buyer_storage.composed.breaker",
    "HybridBackend": "ad_buyer_storage.composed.hybrid",
    "Requirement": "ad_buyer_storage.composed.hybrid",
    "Route": "ad_buyer_storage.composed.hybrid",
    "MirrorBackend": "ad_buyer_storage.composed.mirror",
    "mirror_of": "ad_buyer_storage.composed.mirror",
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
