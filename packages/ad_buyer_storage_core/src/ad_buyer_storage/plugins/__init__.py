"""Discovery and configuration: backend specs, the registry (entry points, pluggy), settings,
and the factories that build a store from them.

Plugin authors import from here:
``from ad_buyer_storage.plugins import BackendSpec, hookimpl``.
Each name is imported from its module on first use, so importing one module of this package
loads no other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ad_buyer_storage.plugins.hookspecs import hookimpl as hookimpl
    from ad_buyer_storage.plugins.registry import register_backend as register_backend
    from ad_buyer_storage.plugins.spec import BackendSpec as BackendSpec

_WHERE = {
    "BackendSpec": "ad_buyer_storage.plugins.spec",
    "hookimpl": "ad_buyer_storage.plugins.hookspecs",
    "register_backend": "ad_buyer_storage.plugins.registry",
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
