"""ad-buyer-storage: the pluggable async storage layer of the ad buyer agent.

>>> from ad_buyer_storage import open_storage
>>> async def main():
...     async with open_storage("sqlite:///./ad_buyer.db") as storage:
...         await storage.set_deal("d1", {"status": "active", "spend": 0})
...         return await storage.list_deals({"status": "active"})

The public names are listed once, in ``__init__.pyi`` (which type checkers read); each is
imported from its module on first use (PEP 562), so ``from ad_buyer_storage import registry``
loads the registry and nothing else, and resolving one backend imports no other driver.
``__all__`` (and so ``dir()``, ``help()``, ``pydoc`` and ``import *``) lists only the names
whose module can be imported: without the ``otel`` extra, ``StorageInstrumentor`` is left out,
and importing it says which extra to install.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
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
