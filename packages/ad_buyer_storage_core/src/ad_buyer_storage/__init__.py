"""ad-buyer-storage: the pluggable async storage layer of the ad buyer agent.

>>> from ad_buyer_storage import open_storage
>>> async def main():
...     async with open_storage("sqlite:///./ad_buyer.db") as storage:
...         await storage.set_deal("d1", {"status": "active", "spend": 0})
...         return await storage.list_deals({"status": "active"})

The public names are listed once, in ``__init__.pyi`` (which type checkers read); each is
imported from its module on first use (PEP 562), so ``from ad_buyer_storage import registry``
loads the registry and nothing else, and resolving one backend imports no other driver.
"""

from __future__ import annotations

import ast
import importlib
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
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
