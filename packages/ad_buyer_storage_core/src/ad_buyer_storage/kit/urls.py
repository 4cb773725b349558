"""URL helpers shared by core and the network backends: schemes, credentials, route tables."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

__all__ = ["SCHEME", "encode_credentials", "query_secret_spans", "server_of", "split_routes"]

#: A URL's scheme, its colon and however many slashes follow (none, one, two: malformed URLs too).
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/*")

_SCHEME_AND_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>.*)@(?P<rest>[^@]*)$", re.S)
_NEEDS_ENCODING = re.compile(r"[@/#?\[\] ]|%(?![0-9A-Fa-f]{2})")

#: The query parameters whose value is a secret (``?password=``, ``?sentinel_password=``...).
SECRET_PARAMETER = re.compile(
    r"(?i)[?&;](?:password|passwd|pwd|pass|token|secret|sslpassword|sslkey_password|sentinel_password|auth|api_key|"
    r"access_token)="
)
# What ends a secret parameter's value: "&" (or ";") starting the next "name=" pair. Nothing
# else does: a "#" or an "&" not followed by "name=" is part of the password.
_NEXT_PARAMETER = re.compile(r"[&;][A-Za-z_][A-Za-z0-9_.\-]*=")
# Characters of a secret value that would end it for a URL parser: encoded by encode_credentials.
_QUERY_RESERVED = re.compile(r"[#&\s]|%(?![0-9A-Fa-f]{2})")


def query_secret_spans(text: str) -> list[tuple[int, int]]:
    """Where the value of each password-like query parameter of *text* starts and ends.

    The value runs from its ``=`` to the next ``&name=`` (or ``;name=``) or the end of *text*:
    a ``#`` inside it does not start a fragment and an ``&`` not followed by ``name=`` does not
    start a parameter (``?password=Sent#1nel&Pw&db=0`` has the password ``Sent#1nel&Pw``).
    Redaction hides these spans and :func:`encode_credentials` encodes them, so a driver takes
    as the password exactly what is hidden.
    """
    spans = []
    position = 0
    while match := SECRET_PARAMETER.search(text, position):
        end_of_value = _NEXT_PARAMETER.search(text, match.end())
        end = end_of_value.start() if end_of_value else len(text)
        spans.append((match.end(), end))
        position = end
    return spans


def _encode_query_secrets(url: str) -> str:
    """*url* with the ``#``, ``&``, blanks and stray ``%`` of its secret query values encoded."""
    start = url.find("?", url.rfind("@") + 1)
    if start < 0:
        return url
    pieces, done = [url[:start]], start
    for begin, end in query_secret_spans(url[start:]):
        begin, end = begin + start, end + start
        value = url[begin:end]
        pieces += [url[done:begin], _QUERY_RESERVED.sub(lambda m: quote(m.group(), safe=""), value)]
        done = end
    return "".join([*pieces, url[done:]])


def encode_credentials(url: str) -> str:
    """Percent-encode a user name and password that were pasted into *url* unencoded, and the
    ``#``, ``&``, blanks and stray ``%`` in the value of a password-like query parameter (see
    :func:`query_secret_spans`).

    ``postgresql://u:p@ss:w/rd#%@host/db`` becomes ``postgresql://u:p%40ss%3Aw%2Frd%23%25@host/db``:
    the credentials run from ``//`` to the LAST ``@``, the password from the first ``:``.
    Credentials that are already encoded (no reserved character, every ``%`` followed by
    two hex digits) are left untouched, so encoding twice is harmless.
    """
    url = _encode_query_secrets(url)
    match = _SCHEME_AND_USERINFO.match(url)
    if not match:
        return url
    user, sep, password = match.group("userinfo").partition(":")
    if not (_NEEDS_ENCODING.search(user) or _NEEDS_ENCODING.search(password)):
        return url
    encoded = quote(user, safe="") + (sep + quote(password, safe="") if sep else "")
    return f"{match.group('scheme')}{encoded}@{match.group('rest')}"


def split_routes(text: str) -> list[str]:
    """Split a ``PREFIX=TARGET,PREFIX=TARGET`` route table into its items.

    A comma may belong to a password pasted unencoded into a target URL: a piece without
    ``=``, or whose target holds an ``@`` without starting with a scheme (a backend name never
    holds one), continues the item before it. So does a bare ``host[:port]`` after a URL whose
    host list is still open: the next host of a multi-host URL. Parsing and redaction split alike, so no piece
    of a password ever stands alone as an "item" to quote.
    """
    pieces = text.split(",")
    items: list[str] = []
    for i, piece in enumerate(pieces):
        if items and (_continues(pieces, i) or _next_host(items[-1], piece)):
            items[-1] += "," + piece
        else:
            items.append(piece)
    return items


_HOST = re.compile(r"\s*(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:\d+)?\s*")


def _next_host(item: str, piece: str) -> bool:
    """Whether *piece* is one more host of a multi-host URL (``postgresql://u:p@h1:5432,h2:5433/db``,
    ``redis+sentinel://h1,h2/mymaster``) that *item* ends in: the URL's host list is still open
    (nothing after ``//`` and the credentials has ended it with ``/`` or ``?``), and the piece
    starts with a bare ``host[:port]``."""
    target = item.partition("=")[2].strip() if "=" in item.split("://", 1)[0] else item.strip()
    scheme = SCHEME.match(target)
    if not scheme or not scheme.group().endswith("//"):
        return False
    authority = target[scheme.end() :].rpartition("@")[2]
    if "/" in authority or "?" in authority:
        return False
    head = re.split(r"[/?]", piece, maxsplit=1)[0]
    return _HOST.fullmatch(head) is not None


def _continues(pieces: list[str], i: int) -> bool:
    piece = pieces[i]
    if not piece.strip():  # ",," or a trailing comma: inside a password only if what follows is
        return i + 1 < len(pieces) and _continues(pieces, i + 1)
    _, sep, target = piece.partition("=")
    return not sep or ("@" in target and not SCHEME.match(target.strip()))


def server_of(url: str, default_port: int | None = None) -> tuple[str | None, int | None, str]:
    """``(host, port, path)`` of *url*, credentials left out: what telemetry may record as
    ``server.address``/``server.port`` (and the path, for the database name). A URL that cannot
    be parsed gives ``(None, None, "")``."""
    try:
        parts = urlsplit(encode_credentials(url))
        host, port = parts.hostname, parts.port
    except ValueError:
        return None, None, ""
    if host is None:
        return None, None, unquote(parts.path)
    return host, port if port is not None else default_port, unquote(parts.path)
