"""Where the database lives: ``sqlite://`` URLs to paths, the file created private, its mode."""

from __future__ import annotations

import os
from pathlib import Path

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.kit.redaction import redact_url

__all__ = ["create_private_file", "file_mode", "on_read_only_file_system", "parse_sqlite_url"]


def parse_sqlite_url(url: str) -> str:
    """``sqlite:///./x.db`` -> ``./x.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``; memory forms."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("sqlite", "sqlite+aiosqlite"):
        raise ConfigurationError(
            f"not a sqlite URL: {redact_url(url)}; expected sqlite:///relative.db or sqlite:////abs.db"
        )
    rest = rest.split("?", 1)[0]
    if rest in ("", "/", "/:memory:", ":memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise ConfigurationError(
            f"sqlite URLs name a file after three slashes: sqlite:///path.db (got {redact_url(url)})"
        )
    return rest[1:]  # "/./x.db" -> "./x.db", "//abs/x.db" -> "/abs/x.db"


def on_read_only_file_system(path: str) -> bool:
    try:
        return bool(os.statvfs(Path(path).resolve().parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def file_mode(path: str) -> str:
    try:
        return oct(os.stat(path).st_mode & 0o777)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"


def create_private_file(path: str) -> None:
    """Create the database file 0600 if it does not exist (SQLite would use 0644). An OSError
    (no such directory, no permission) is left to the translator, as connect() runs this."""
    if os.path.exists(path):
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return  # another process created it first
    os.close(fd)
