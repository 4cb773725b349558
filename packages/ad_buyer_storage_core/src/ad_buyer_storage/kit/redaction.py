"""Keep secrets out of reprs, logs and error messages, whatever shape the URL carrying them has.

A URL reaching us may be malformed (one slash, no scheme, an unknown scheme) and its password
pasted unencoded, ``@ : / # % , =`` included. So redaction never depends on the URL parsing:
the credentials are everything between the scheme and the LAST ``@``, a user name is shown
only when the URL is well-formed enough to tell it from the password, and when in doubt more
is hidden (a query or path holding ``@`` is over-redacted: the safe side).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import NoReturn
from urllib.parse import quote, unquote

from ad_buyer_storage.kit.urls import SCHEME as _SCHEME
from ad_buyer_storage.kit.urls import split_routes

__all__ = ["raise_redacted", "redact_routes", "redact_text", "redact_url", "reveals_secret"]

# A URL visibly starting inside a longer run of text ("url=redis://..."): scheme, colon, slash.
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:password|passwd|pwd|pass|token|secret|sslpassword|sslkey_password|sentinel_password|auth|api_key|"
    r"access_token)=)"
    r"[^&#\s'\"]*"
)
# A user name we may show: nothing in it could be the start of a pasted password.
_PLAIN_USER = re.compile(r"[A-Za-z0-9._~\-]*(?:%[0-9A-Fa-f]{2}[A-Za-z0-9._~\-]*)*")
# Schemes whose lone userinfo item is a user name (postgresql://app@db). Elsewhere
# (redis://token@host: AUTH <token>, and any scheme we do not know) it is a password.
_USER_ONLY_SCHEMES = ("postgres://", "postgresql://", "postgresql+asyncpg://")
# Text is cut into runs at whitespace and quotes: a URL inside a message never spans them.
_RUNS = re.compile(r"([\s'\"`]+)")
_MIN_SECRET = 3  # shorter "secrets" would blank out unrelated text; the shape rules still apply


def redact_url(url: str | None) -> str:
    """*url* (one value: a URL, or what was meant to be one) with its credentials as ``***``.

    ``redis://user:s3cret@host:6379/0`` becomes ``redis://user:***@host:6379/0``,
    ``postgresql:/app:p@ss@db/x`` (one slash) ``postgresql:/***@db/x``; a value without
    credentials is returned unchanged.
    """
    if url is None:
        return "None"
    text = str(url)
    head, at, tail = text.rpartition("@")
    if at:
        match = _SCHEME.match(head)
        scheme = match.group() if match else ""
        text = f"{scheme}{_redact_userinfo(scheme, head[len(scheme) :])}@{tail}"
    return _QUERY_SECRET.sub(r"\1***", text)


def _redact_userinfo(scheme: str, userinfo: str) -> str:
    if not scheme.endswith("//"):
        return "***"  # malformed: no telling which part is the user
    user, sep, _ = userinfo.partition(":")
    if not _PLAIN_USER.fullmatch(user):
        return "***"
    if sep:
        return f"{user}:***"
    return user if user and scheme.lower() in _USER_ONLY_SCHEMES else "***"


def redact_routes(text: str | None) -> str:
    """A route table (``STORAGE_ROUTES``, JSON or ``PREFIX=TARGET,...``) with every target redacted."""
    if text is None:
        return "None"
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            loaded = json.loads(stripped)
        except ValueError:
            return redact_text(text)
        if not isinstance(loaded, dict):
            return redact_text(text)
        return json.dumps(
            {
                redact_url(str(k)): redact_url(v) if isinstance(v, str) else redact_text(json.dumps(v))
                for k, v in loaded.items()
            }
        )
    return ",".join(_redact_route_item(item) for item in split_routes(text))


def _redact_route_item(item: str) -> str:
    prefix, sep, target = item.partition("=")
    if not sep or "@" in prefix or "/" in prefix:
        return redact_url(item)
    return f"{prefix}={redact_url(target)}"


def redact_text(text: str, *urls: str | None) -> str:
    """*text* (a message, a traceback) without the secrets of *urls*, nor anything shaped like
    credentials (``user:pass@``, ``:pass@``, ``token@``, ``?password=``) in any URL it quotes."""
    for secret in _secrets_of(urls):
        text = _replace_ignoring_case(text, secret)
    return "".join(_redact_run(run) if i % 2 == 0 else run for i, run in enumerate(_RUNS.split(text)))


def _redact_run(run: str) -> str:
    if "@" not in run:
        return _QUERY_SECRET.sub(r"\1***", run)
    start = _URL_START.search(run)
    # Text before the URL ("url=", "(") is kept only if it cannot be the start of credentials.
    if start and start.start() and not any(c in run[: start.start()] for c in ":@"):
        return run[: start.start()] + redact_url(run[start.start() :])
    return redact_url(run)


def _replace_ignoring_case(text: str, secret: str) -> str:
    return re.sub(re.escape(secret), "***", text, flags=re.IGNORECASE)


def _secrets_of(urls: Iterable[str | None]) -> list[str]:
    """The literal secrets in *urls* (each may also be a route table), in every spelling a
    driver might echo: as written, decoded, encoded. Longest first, so none is left half-hidden."""
    found: set[str] = set()
    for url in urls:
        if not url:
            continue
        candidates = [url, *split_routes(url), *(item.partition("=")[2] for item in split_routes(url))]
        for candidate in candidates:
            candidate = candidate.strip()
            head, at, _ = candidate.rpartition("@")
            if at:
                match = _SCHEME.match(head)
                scheme = match.group() if match else ""
                userinfo = head[len(scheme) :]
                shown = _redact_userinfo(scheme, userinfo)
                # What the redacted form hides is the secret: the password, or all of it.
                secret = userinfo[len(shown) - 3 :] if shown.endswith(":***") else userinfo
                if shown != userinfo:
                    found.add(secret)
            for query in _QUERY_SECRET.finditer(candidate):
                found.add(candidate[query.end(1) : query.end()])
    spellings = {form for secret in found for form in (secret, unquote(secret), quote(secret, safe=""))}
    return sorted((s for s in spellings if len(s) >= _MIN_SECRET), key=len, reverse=True)


def reveals_secret(exc: BaseException, *urls: str | None) -> bool:
    """Whether *exc*'s message or repr holds a secret of *urls* or anything shaped like one."""
    return any(redact_text(text, *urls) != text for text in (str(exc), repr(exc)))


def raise_redacted(error: BaseException, *urls: str | None, cause: BaseException | None = None) -> NoReturn:
    """Raise *error* (its message already redacted) from *cause*, cutting the exception chain
    before the first link whose text would reveal a secret of *urls*.

    ``raise X from None`` is not enough: it only hides the handled exception from tracebacks,
    ``X.__context__`` still holds it, and with it the driver's words quoting the URL.
    """
    try:
        raise error from cause
    finally:
        _prune(error, urls)


def _prune(error: BaseException, urls: tuple[str | None, ...]) -> None:
    seen: set[int] = set()
    link: BaseException | None = error
    todo = [error]
    while todo:
        link = todo.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        for attribute in ("__cause__", "__context__"):
            nxt = getattr(link, attribute)
            if nxt is None:
                continue
            if reveals_secret(nxt, *urls):
                setattr(link, attribute, None)
                if attribute == "__context__":
                    link.__suppress_context__ = True
            else:
                todo.append(nxt)
