"""For backend authors who format a name into SQL (a table, a schema): refuse any that is not a
plain identifier.

Keys and values are always bound parameters; a table name cannot be, so it is checked instead
and then quoted. The rule is PostgreSQL's unquoted identifier (63 bytes at most), which SQLite
accepts too: a name that works on one SQL backend works on the other.
"""

from __future__ import annotations

import re

from ad_buyer_storage.errors import ConfigurationError

__all__ = ["DEFAULT_INDEXED_FIELDS", "check_identifier", "indexed_fields", "is_identifier"]

#: The top-level JSON fields SQL backends index by default: what the buyer agent filters by.
DEFAULT_INDEXED_FIELDS = "status,campaign_id,deal_id,buyer_id,seller_id"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_identifier(setting: str, name: str) -> str:
    """*name*, if it is an identifier; else a :class:`ConfigurationError` naming *setting*
    (``POSTGRES_TABLE``...). The whole name must match: ``"kv\\n"`` is refused too."""
    if not _IDENTIFIER.fullmatch(name):
        raise ConfigurationError(
            f"{setting} must be an identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters), not {name!r}"
        )
    return name


def is_identifier(name: str) -> bool:
    return bool(_IDENTIFIER.fullmatch(name))


def indexed_fields(setting: str, value: str) -> tuple[str, ...]:
    """The field names of a comma-separated *value* (``"status,campaign_id"``), each checked
    as an identifier (it is written into index definitions and queries)."""
    return tuple(dict.fromkeys(check_identifier(setting, f.strip()) for f in value.split(",") if f.strip()))
