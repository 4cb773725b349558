"""ad-buyer-storage: the pluggable async storage layer of the ad buyer agent.

>>> from ad_buyer_storage import open_storage
>>> async def main():
...     async with open_storage("sqlite:///./ad_buyer.db") as storage:
...         await storage.set_deal("d1", {"status": "active", "spend": 0})
...         return await storage.list_deals({"status": "active"})

The public names are listed once, in ``__init__.pyi`` (which type checkers read); each is
imported from its module on first use (PEP 562), so ``from ad_buyer_storage import Store``
loads the store and nothing else, and resolving one backend imports no other driver. Names
that moved to their audience's module (authors: ``.contract``, ``.plugins``; operators:
``.composed``) still import from here, with a ``DeprecationWarning``, for one minor release.
``__all__`` (and so ``dir()``, ``help()``, ``pydoc`` and ``import *``) lists only the names
whose module can be imported: without the ``otel`` extra, ``StorageInstrumentor`` is left out,
and importing it says which extra to install.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import warnings
from pathlib import Path
from typing import Any


def _public_names() -> dict[str, str]:
    """name -> module, from the ``from module import name as name`` lines of ``__init__.pyi``."""
    tree = ast.parse(Path(__file__).with_suffix(".pyi").read_text(encoding="utf-8"))
    return {
        alias.asname or alias.name: node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }


_WHERE = _public_names()
#: Names that moved to their audience's module (0.2): still importable from here for one minor
#: release, with a DeprecationWarning; not in ``__all__``. Backend authors import from
#: ``ad_buyer_storage.contract`` / ``.plugins`` / ``.kit`` / ``.testing``; operators from ``.composed``.
_MOVED = {
    "BackendSpec": "ad_buyer_storage.plugins",
    "BreakerPolicy": "ad_buyer_storage.composed",
    "Check": "ad_buyer_storage.contract",
    "CircuitBreaker": "ad_buyer_storage.composed",
    "Condition": "ad_buyer_storage.contract",
    "Filter": "ad_buyer_storage.contract",
    "GlobPattern": "ad_buyer_storage.contract",
    "HybridBackend": "ad_buyer_storage.composed",
    "MirrorBackend": "ad_buyer_storage.composed",
    "NO_EXPIRY": "ad_buyer_storage.contract",
    "NO_KEY": "ad_buyer_storage.contract",
    "Peer": "ad_buyer_storage.contract",
    "PoolUsage": "ad_buyer_storage.contract",
    "Record": "ad_buyer_storage.contract",
    "Requirement": "ad_buyer_storage.composed",
    "Route": "ad_buyer_storage.composed",
    "StorageBackend": "ad_buyer_storage.contract",
    "SupportsPubSub": "ad_buyer_storage.contract",
    "SupportsQuery": "ad_buyer_storage.contract",
    "SupportsRefresh": "ad_buyer_storage.contract",
    "SupportsReleaseNamespace": "ad_buyer_storage.contract",
    "SupportsRemovePrefix": "ad_buyer_storage.contract",
    "SupportsRouting": "ad_buyer_storage.contract",
    "SupportsTelemetry": "ad_buyer_storage.contract",
    "SupportsTransactions": "ad_buyer_storage.contract",
    "SupportsTurns": "ad_buyer_storage.contract",
    "Write": "ad_buyer_storage.contract",
    "compile_glob": "ad_buyer_storage.contract",
    "escape_glob": "ad_buyer_storage.contract",
    "guarded": "ad_buyer_storage.composed",
    "hookimpl": "ad_buyer_storage.plugins",
    "mirror_of": "ad_buyer_storage.composed",
    "new_version": "ad_buyer_storage.contract",
    "register_backend": "ad_buyer_storage.plugins",
    "registry": "ad_buyer_storage.plugins.registry",
    "unwrap": "ad_buyer_storage.composed",
}
#: Modules that need an extra: (the distribution a missing one is imported from, the extra).
_EXTRAS = {"ad_buyer_storage.otel": ("opentelemetry.trace", "otel")}


def _installed(module: str) -> bool:
    """Whether *module*'s extra is installed (found, not imported: ``help()`` and ``import *``
    must work without it, listing only what can be imported)."""
    needed = _EXTRAS.get(module)
    if needed is None:
        return True
    try:
        return importlib.util.find_spec(needed[0]) is not None
    except (ImportError, ValueError):
        return False


def _listed() -> list[str]:
    """``__all__``, worked out on first use: every public name whose module can be imported."""
    names = sorted(name for name, module in _WHERE.items() if _installed(module))
    globals()["__all__"] = names
    return names


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return _listed()
    module = _WHERE.get(name)
    if module is None and name in _MOVED:
        warnings.warn(
            f"ad_buyer_storage.{name} moved: import it from {_MOVED[name]}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        if module not in _EXTRAS:
            raise
        extra = _EXTRAS[module][1]
        raise ModuleNotFoundError(
            f"{name} needs the {extra!r} extra: pip install 'ad-buyer-storage-core[{extra}]' ({exc})",
            name=exc.name,
        ) from exc
    value = getattr(imported, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    listed = globals().get("__all__")
    return list(listed if listed is not None else _listed())
