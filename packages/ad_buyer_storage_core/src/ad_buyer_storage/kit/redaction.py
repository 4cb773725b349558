"""Keep secrets out of reprs, logs and error messages, whatever shape the URL carrying them has.

A URL reaching us may be malformed (one slash, no scheme, an unknown scheme) and its password
pasted unencoded, ``@ : / # % , = &`` included. So redaction never depends on the URL parsing:
the credentials are everything between the scheme and the LAST ``@``, a user name is shown
only when the URL is well-formed enough to tell it from the password, the value of a
password-like query parameter runs to the next ``&name=`` (a ``#`` or a lone ``&`` inside it
is hidden with it), and when in doubt more is hidden (a query or path holding ``@`` is
over-redacted: the safe side).

Redaction goes by position, never by searching a text for the secret: replacing every
occurrence of a password that is a common word (``redis``) would blank out unrelated words and
so give the password away. A known URL is found whole and replaced by its redacted form; text
that quotes a secret outside any URL is withheld whole (:func:`redact_or_withhold`), never
starred where the secret was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import NoReturn
from urllib.parse import quote, unquote

from ad_buyer_storage.kit.urls import SCHEME as _SCHEME
from ad_buyer_storage.kit.urls import encode_credentials, query_secret_spans, split_routes

__all__ = ["raise_redacted", "redact_or_withhold", "redact_routes", "redact_text", "redact_url", "reveals_secret"]

# A URL visibly starting inside a longer run of text ("url=redis://..."): scheme, colon, slash.
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/")
# A user name we may show: nothing in it could be the start of a pasted password.
_PLAIN_USER = re.compile(r"[A-Za-z0-9._~\-]*(?:%[0-9A-Fa-f]{2}[A-Za-z0-9._~\-]*)*")
# Schemes whose lone userinfo item is a user name (postgresql://app@db). Elsewhere
# (redis://token@host: AUTH <token>, and any scheme we do not know) it is a password.
_USER_ONLY_SCHEMES = ("postgres://", "postgresql://", "postgresql+asyncpg://")
# Text is cut into runs at whitespace and quotes: a URL inside a message never spans them.
_RUNS = re.compile(r"([\s'\"`]+)")
# A query value hidden already, then what may close a clause: ":" "," ")"...
_HIDDEN_IN_PROSE = re.compile(r"\*\*\*[:,.;!?)\]}>]*")
_MIN_SECRET = 3  # a shorter "secret" is not looked for in text (it would be found everywhere)


def redact_url(url: str | None) -> str:
    """*url* (one value: a URL, or what was meant to be one) with its credentials as ``***``.

    ``redis://user:s3cret@host:6379/0`` becomes ``redis://user:***@host:6379/0``,
    ``postgresql:/app:p@ss@db/x`` (one slash) ``postgresql:/***@db/x``,
    ``redis://h/0?password=a#b&c&db=1`` ``redis://h/0?password=***&db=1``; a value without
    credentials is returned unchanged.
    """
    if url is None:
        return "None"
    return _redact_url(str(url))


def _redact_url(text: str, *, prose: bool = False) -> str:
    head, at, tail = text.rpartition("@")
    if at:
        match = _SCHEME.match(head)
        scheme = match.group() if match else ""
        text = f"{scheme}{_redact_userinfo(scheme, head[len(scheme) :])}@{tail}"
    elif (hidden := _port_not_a_port(text)) is not None:
        text = text[: hidden[0]] + "***" + text[hidden[1] :]
    return _hide_query_secrets(text, prose=prose)


# The authority of a URL without "@": hosts, each maybe with a ":port".
_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)")


def _port_not_a_port(text: str) -> tuple[int, int] | None:
    """Where to hide in a URL whose authority has no ``@`` but a ``:`` followed by something
    that is no port (``postgresql://app:s3cret``: credentials whose host was left out): from
    the first such ``:`` to the end of the authority. None when every host's port is digits."""
    match = _AUTHORITY.match(text)
    if match is None:
        return None
    start = match.start(1)
    for item in re.finditer(r"[^,]+", match.group(1)):
        host = item.group()
        if host.startswith("[") and "]" in host:  # [::1]:6379
            host_end = host.index("]") + 1
            port = host[host_end + 1 :] if host[host_end : host_end + 1] == ":" else ""
            if host[host_end:] and not (host[host_end : host_end + 1] == ":" and port.isdigit()):
                return start + item.start() + host_end, match.end(1)
            continue
        name, colon, port = host.partition(":")
        if colon and not (port.isascii() and port.isdigit()):
            return start + item.start() + len(name) + 1, match.end(1)
    return None


def _hide_query_secrets(text: str, *, prose: bool = False) -> str:
    """*text* with the value of each password-like query parameter as ``***``. In *prose* (a
    run of a message) a value already hidden and followed by punctuation (``password=***:``,
    ``password=***)``) is left as it is: redacting is then idempotent."""
    pieces, done = [], 0
    for begin, end in query_secret_spans(text):
        hidden = prose and _HIDDEN_IN_PROSE.fullmatch(text, begin, end) is not None
        pieces += [text[done:begin], text[begin:end] if hidden else "***"]
        done = end
    return "".join([*pieces, text[done:]])


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
    """*text* (a message, a traceback) with each of *urls* it quotes replaced whole by its
    redacted form, and anything shaped like credentials (``user:pass@``, ``:pass@``,
    ``token@``, ``?password=``) in any other URL it quotes hidden."""
    return "".join(_redact_runs(piece) if i % 2 == 0 else redact_url(piece) for i, piece in enumerate(_cut(text, urls)))


def redact_or_withhold(text: str, *urls: str | None, what: str = "message") -> str:
    """:func:`redact_text`, unless *text* quotes a secret of *urls* outside the URLs themselves
    (a driver's ``password 'hunter2' rejected``): then all of it is withheld, since starring
    the secret where it stood would show where, and so what, it was."""
    pieces = _cut(text, urls)
    secrets = _secrets_of(urls)
    if any(secret in piece.lower() for piece in pieces[::2] for secret in secrets):
        return f"({what} withheld: it quotes a credential)"
    return "".join(_redact_runs(piece) if i % 2 == 0 else redact_url(piece) for i, piece in enumerate(pieces))


def _cut(text: str, urls: Iterable[str | None]) -> list[str]:
    """*text* cut at each whole occurrence of one of *urls* (in any spelling a driver may
    echo): other text at even indexes, the URLs found at odd ones."""
    spellings = _spellings_of(urls)
    if not spellings:
        return [text]
    return re.split("(" + "|".join(map(re.escape, spellings)) + ")", text, flags=re.IGNORECASE)


def _redact_runs(text: str) -> str:
    return "".join(_redact_run(run) if i % 2 == 0 else run for i, run in enumerate(_RUNS.split(text)))


def _redact_run(run: str) -> str:
    if "@" not in run:
        return _hide_query_secrets(run, prose=True)
    start = _URL_START.search(run)
    # Text before the URL ("url=", "(") is kept only if it cannot be the start of credentials.
    if start and start.start() and not any(c in run[: start.start()] for c in ":@"):
        return run[: start.start()] + _redact_url(run[start.start() :], prose=True)
    return _redact_url(run, prose=True)


def _candidates(urls: Iterable[str | None]) -> set[str]:
    """Each of *urls* (each may also be a route table), and each item and target in it."""
    found: set[str] = set()
    for url in urls:
        if not url:
            continue
        for candidate in (url, *split_routes(url), *(item.partition("=")[2] for item in split_routes(url))):
            if candidate.strip():
                found.add(candidate.strip())
    return found


def _spellings_of(urls: Iterable[str | None]) -> list[str]:
    """The URLs of *urls* that hold a secret, as written, encoded as a driver gets them, and
    decoded. Longest first, so that a URL is found whole before a shorter one inside it."""
    found: set[str] = set()
    for candidate in _candidates(urls):
        if redact_url(candidate) == candidate:
            continue  # nothing to hide in it (a backend name, a URL without credentials)
        found.update(form for form in (candidate, encode_credentials(candidate), unquote(candidate)) if form)
    return sorted(found, key=len, reverse=True)


def _secrets_of(urls: Iterable[str | None]) -> list[str]:
    """The literal secrets in *urls*, lower-cased, in every spelling a driver might echo:
    as written, decoded, encoded (only to be detected, never to be searched and replaced)."""
    found: set[str] = set()
    for candidate in _candidates(urls):
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
        elif (hidden := _port_not_a_port(candidate)) is not None:
            found.add(candidate[hidden[0] : hidden[1]])
        found.update(candidate[begin:end] for begin, end in query_secret_spans(candidate))
    spellings = {form for secret in found for form in (secret, unquote(secret), quote(secret, safe=""))}
    return sorted({s.lower() for s in spellings if len(s) >= _MIN_SECRET}, key=len, reverse=True)


def reveals_secret(exc: BaseException, *urls: str | None) -> bool:
    """Whether *exc*'s message or repr holds a secret of *urls* or anything shaped like one."""
    secrets = _secrets_of(urls)
    return any(
        redact_text(text, *urls) != text or any(secret in text.lower() for secret in secrets)
        for text in (str(exc), repr(exc))
    )


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
