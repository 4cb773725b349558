"""PostgreSQL URLs: the schemes we accept, ports checked before any I/O, several read URLs in
one setting, and whether a URL insists on TLS. Pure functions: no driver, no I/O."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

from ad_buyer_storage.errors import ConfigurationError
from ad_buyer_storage.kit.redaction import redact_url
from ad_buyer_storage.kit.urls import encode_credentials

__all__ = ["SCHEME_START", "normalise_dsn", "split_urls", "tls_required"]

#: Where a URL starts: one of the schemes we accept (``postgresql+asyncpg`` is the seed's).
SCHEME_START = re.compile(r"(?i)(postgresql|postgres|postgresql\+asyncpg)://")
_HOST_PORT = re.compile(r"(?:\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?")
_TLS_REQUIRED = frozenset({"require", "verify-ca", "verify-full"})


def normalise_dsn(url: str) -> str:
    """Accept ``postgresql://``, ``postgres://`` and the seed's ``postgresql+asyncpg://``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise ConfigurationError(
            f"not a PostgreSQL URL: {redact_url(url)}; expected postgresql://user:password@host:5432/database"
        )
    dsn = encode_credentials("postgresql://" + rest)  # asyncpg itself refuses "+asyncpg"
    _check_ports(url, dsn)
    return dsn


def _check_ports(url: str, dsn: str) -> None:
    """Each host's port, if given, is a TCP port (1 to 65535): ``:99999`` would otherwise fail
    at the first connect as a driver error, ``:0`` as an unreachable server. Not quoted: a
    malformed URL's authority may hold a piece of a password."""
    authority = re.split(r"[/?]", dsn.partition("://")[2], maxsplit=1)[0].rpartition("@")[2]
    for host in authority.split(","):
        match = _HOST_PORT.fullmatch(host.strip())
        port = match.group("port") if match else None
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigurationError(
                f"PostgreSQL URL {redact_url(url)}: each host's port must be a number from 1 to 65535"
            )


def split_urls(text: str | Sequence[str] | None) -> list[str]:
    """``POSTGRES_READ_URL``: one URL or several, comma-separated. A comma also separates the
    hosts of a multi-host URL and may sit in a password, so a new URL starts only at a piece
    that starts with a scheme (``postgresql://``...)."""
    if text is None:
        return []
    if not isinstance(text, str):
        return [u for u in text if u]
    urls: list[str] = []
    for piece in text.split(","):
        if urls and not SCHEME_START.match(piece.strip()):
            urls[-1] += "," + piece
        elif piece.strip():
            urls.append(piece.strip())
    return urls


def tls_required(url: str) -> bool:
    """Whether *url* (or PGSSLMODE, which asyncpg also reads) insists on TLS."""
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:  # urlsplit's one refusal, an unclosed "[" in the host: no query to read
        query = {}
    mode = (query.get("sslmode") or query.get("ssl") or [os.environ.get("PGSSLMODE", "")])[0]
    return mode.lower() in _TLS_REQUIRED or mode.lower() == "true"
