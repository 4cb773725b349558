"""URL helpers shared by network backends."""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["encode_credentials"]

_SCHEME_AND_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>.*)@(?P<rest>[^@]*)$", re.S)
_NEEDS_ENCODING = re.compile(r"[@/#?\[\] ]|%(?![0-9A-Fa-f]{2})")


def encode_credentials(url: str) -> str:
    """Percent-encode a user name and password that were pasted into *url* unencoded.

    ``postgresql://u:p@ss:w/rd#%@host/db`` becomes ``postgresql://u:p%40ss%3Aw%2Frd%23%25@host/db``:
    the credentials run from ``//`` to the LAST ``@``, the password from the first ``:``.
    Credentials that are already encoded (no reserved character, every ``%`` followed by
    two hex digits) are left untouched, so encoding twice is harmless.
    """
    match = _SCHEME_AND_USERINFO.match(url)
    if not match:
        return url
    user, sep, password = match.group("userinfo").partition(":")
    if not (_NEEDS_ENCODING.search(user) or _NEEDS_ENCODING.search(password)):
        return url
    encoded = quote(user, safe="") + (sep + quote(password, safe="") if sep else "")
    return f"{match.group('scheme')}{encoded}@{match.group('rest')}"
