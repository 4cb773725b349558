"""What every command shares: settings from the command line, the storage they select, and
error messages that never show a secret."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ad_buyer_storage.domain.factory import get_storage_backend
from ad_buyer_storage.domain.storage import Storage
from ad_buyer_storage.kit.redaction import redact_or_withhold, redact_text
from ad_buyer_storage.plugins.settings import StorageSettings, load_settings, settings_model

__all__ = [
    "describe",
    "known_urls",
    "print_json",
    "redact_known",
    "settings_from",
    "storage_from",
    "url_options",
    "withhold_known",
]

# Whatever held a URL this run (variables, options): hidden again in anything printed.
_known: list[str] = []


def url_options() -> tuple[str, ...]:
    """The URL settings the installed backends read (``database_url``...): each is an option."""
    return settings_model().URL_SETTINGS


def settings_from(args: argparse.Namespace) -> StorageSettings:
    overrides: dict[str, Any] = {}
    if args.backend:
        overrides["storage_type"] = args.backend
    for setting in url_options():
        value = getattr(args, setting, None)
        if value:
            overrides[setting] = value
    return load_settings(**overrides)


def storage_from(args: argparse.Namespace) -> Storage:
    return get_storage_backend(settings=settings_from(args))


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False))


def known_urls(args: argparse.Namespace, variables: tuple[str, ...]) -> None:
    """Remember what may hold a URL: these environment *variables* and the options' values."""
    _known[:] = [os.environ.get(v) or "" for v in variables]
    _known.extend(str(value) for name, value in vars(args).items() if isinstance(value, str) and name != "command")


def redact_known(text: str) -> str:
    """*text* with the secrets of every URL this run knows of hidden."""
    return redact_text(text, *_known)


def withhold_known(text: str, what: str) -> str:
    """*text* redacted, or withheld whole if it quotes a secret of a known URL outside the URL
    (text we did not write, such as a traceback: starring the secret in place would show it)."""
    return redact_or_withhold(text, *_known, what=what)


def describe(exc: BaseException) -> str:
    """``Type: message``, the message already redacted where it was made and redacted again here."""
    return redact_known(f"{type(exc).__name__}: {exc}")
