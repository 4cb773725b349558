"""The host agent's own models and state machines, imported when a store needs them.

They belong to the agent (``ad_buyer.models...``), never to this package's dependencies: the
facade runs inside the agent, which has them. Without the agent (our own tests), each lookup
gives None and the stores behave as upstream does for statuses its machine does not know
(deal transitions unchecked); campaign transitions and the pacing and ad server models need
the host and say so.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["host", "require"]


def host(module: str, *names: str) -> tuple[Any, ...] | None:
    """``ad_buyer.<module>``'s *names*, or None when the host does not provide them."""
    try:
        found = importlib.import_module(f"ad_buyer.{module}")
    except ImportError:
        return None
    try:
        return tuple(getattr(found, name) for name in names)
    except AttributeError:
        return None


def require(module: str, *names: str) -> tuple[Any, ...]:
    """As :func:`host`, but the host must provide them."""
    found = host(module, *names)
    if found is None:
        raise ImportError(
            f"ad_buyer.{module} ({', '.join(names)}) is needed here: this store runs inside the buyer agent, "
            "which provides its models and state machines"
        )
    return found
