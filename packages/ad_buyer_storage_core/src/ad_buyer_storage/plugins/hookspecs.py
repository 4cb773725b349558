"""The one hook a storage plugin implements (pluggy), and its markers."""

from __future__ import annotations

import pluggy

from ad_buyer_storage.plugins.spec import BackendSpec

__all__ = ["PROJECT", "BackendHookSpecs", "hookimpl", "hookspec"]

PROJECT = "ad_buyer_storage"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class BackendHookSpecs:
    @hookspec
    def ad_buyer_storage_backends(self) -> list[BackendSpec]:
        """Return the backends this plugin provides. Must not import any driver.

        Each :class:`BackendSpec` is checked as it registers (``check_spec``): a bad one makes a
        :class:`~ad_buyer_storage.errors.PluginValidationError` naming this plugin and the field,
        is listed as failed to load (``ad-buyer-storage backends``) and skipped; the host runs on.
        """
        return []  # a specification: pluggy calls the plugins' implementations, never this
