"""pluggy hook specifications: what a storage plugin module implements."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .registry import BackendSpec

__all__ = ["PROJECT", "BackendHookSpecs", "hookimpl", "hookspec"]

PROJECT = "ad_buyer_storage"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class BackendHookSpecs:
    @hookspec
    def ad_buyer_storage_backends(self) -> list[BackendSpec]:  # type: ignore[empty-body]
        """Return the backends this plugin provides. Must not import any driver."""
