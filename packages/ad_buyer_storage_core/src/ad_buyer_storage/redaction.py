"""Keep secrets out of reprs, logs and error messages."""

from __future__ import annotations

import re

# userinfo is everything between "//" and the LAST "@": an unencoded password may itself
# contain "@", ":", "/", "#" or "%". (A query holding "@" gets over-redacted: the safe side.)
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>.*)@(?P<rest>.*?)$", re.S)
_QUERY_SECRET = re.compile(r"(?i)([?&](?:password|passwd|pwd|token|secret|sslpassword)=)[^&#]*")


def redact_url(url: str | None) -> str:
    """Return *url* with any password or token replaced by ``***``.

    ``redis://user:s3cret@host:6379/0`` becomes ``redis://user:***@host:6379/0``;
    a URL without credentials is returned unchanged.
    """
    if url is None:
        return "None"
    text = str(url)
    match = _USERINFO.match(text)
    if match:
        userinfo = match.group("userinfo")
        user, sep, _password = userinfo.partition(":")
        if sep:
            userinfo = f"{user}:***"
        elif match.group("scheme").startswith(("redis", "unix")):
            # redis://token@host: a lone userinfo item is the password (AUTH <token>).
            userinfo = "***"
        text = f"{match.group('scheme')}{userinfo}@{match.group('rest')}"
    return _QUERY_SECRET.sub(r"\1***", text)


def redact_text(text: str, *urls: str | None) -> str:
    """Replace every occurrence of the secret parts of *urls* inside *text*."""
    for url in urls:
        if not url:
            continue
        for secret in _secrets_of(url):
            if secret:
                text = text.replace(secret, "***")
    return text


def _secrets_of(url: str) -> list[str]:
    from urllib.parse import unquote

    found: list[str] = []
    match = _USERINFO.match(url)
    if match:
        userinfo = match.group("userinfo")
        user, sep, password = userinfo.partition(":")
        secret = password if sep else (user if match.group("scheme").startswith("redis") else "")
        if secret:
            found += [secret, unquote(secret)]
    for query in _QUERY_SECRET.finditer(url):
        value = url[query.end(1) : query.end()]
        found += [value, unquote(value)]
    # Longest first, so a secret that contains another is replaced whole.
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)
