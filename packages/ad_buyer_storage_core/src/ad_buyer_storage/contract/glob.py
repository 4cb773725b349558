"""One glob grammar for every backend: Redis's, case-sensitive, matched per code point.

``*`` any run of characters, ``?`` one character, ``[abc]`` a class, ``[^a]`` a negated
class, ``[a-z]`` a range, ``\\x`` the literal ``x`` (also inside classes). A ``[`` without its
closing ``]`` or a trailing lone ``\\`` is refused with :class:`InvalidPatternError`, so every
backend answers a malformed pattern the same way (before any I/O).

:func:`compile_glob` also returns the pattern's *literal prefix* (``deal:\\[1\\]*`` ->
``deal:[1]``), which lets ordered stores answer with an index range scan, and
:func:`prefix_upper_bound` gives the exclusive end of that range.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ad_buyer_storage.errors import InvalidPatternError

__all__ = ["GlobPattern", "compile_glob", "escape_glob", "prefix_upper_bound"]

_META = frozenset("*?[\\")


@dataclass(frozen=True, slots=True)
class GlobPattern:
    """A compiled glob: the source, its literal prefix, and a full-match regex."""

    source: str
    prefix: str
    regex: re.Pattern[str]
    #: True when the pattern is ``prefix*`` (every key with the prefix matches).
    is_prefix_only: bool

    def matches(self, key: str) -> bool:
        return self.regex.fullmatch(key) is not None


def escape_glob(literal: str) -> str:
    """Escape *literal* so that it matches only itself as a glob."""
    return "".join("\\" + ch if ch in _META or ch == "]" else ch for ch in literal)


@functools.lru_cache(maxsize=512)
def compile_glob(pattern: str) -> GlobPattern:
    """Compile a Redis-grammar glob; raise :class:`InvalidPatternError` if malformed."""
    if not isinstance(pattern, str):
        raise InvalidPatternError(f"patterns must be str, not {type(pattern).__name__}")
    if "\x00" in pattern:
        raise InvalidPatternError("patterns must not contain NUL characters")
    if not pattern.isascii():
        try:
            pattern.encode("utf-8")
        except UnicodeEncodeError:  # no key holds one (keys refuse them): refuse it like a key
            raise InvalidPatternError("patterns must not contain lone surrogates") from None
    parts: list[str] = []
    prefix_chars: list[str] = []
    in_prefix = True
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise InvalidPatternError(f"pattern {pattern!r} ends with a lone backslash")
            literal = pattern[i + 1]
            parts.append(re.escape(literal))
            if in_prefix:
                prefix_chars.append(literal)
            i += 2
            continue
        if ch == "*":
            in_prefix = False
            if not parts or parts[-1] != ".*":  # '**' is the same as '*'
                parts.append(".*")
            i += 1
            continue
        if ch == "?":
            in_prefix = False
            parts.append(".")
            i += 1
            continue
        if ch == "[":
            in_prefix = False
            cls, i = _compile_class(pattern, i + 1)
            parts.append(cls)
            continue
        parts.append(re.escape(ch))
        if in_prefix:
            prefix_chars.append(ch)
        i += 1
    regex = re.compile("".join(parts), re.DOTALL)
    prefix = "".join(prefix_chars)
    tail = pattern[_prefix_source_length(pattern) :]
    return GlobPattern(pattern, prefix, regex, is_prefix_only=tail == "*")


def _prefix_source_length(pattern: str) -> int:
    """How many source characters the literal prefix spans (escapes count twice)."""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "*?[":
            break
        i += 1
    return i


def _compile_class(pattern: str, i: int) -> tuple[str, int]:
    """Translate a class starting after '[' at index *i*; return (regex, index after ']').

    Follows Redis's ``stringmatchlen``: only ``^`` negates, ``]`` always closes (so ``[]``
    matches nothing), ``\\x`` is a literal, and ``a-z`` is a range (either order), its end
    taken as written.
    """
    n = len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    items: list[str] = []
    while True:
        if i >= n:
            raise InvalidPatternError(f"pattern {pattern!r} has a '[' without its closing ']'")
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            items.append(_class_char(pattern[i + 1]))
            i += 2
        elif ch == "]":
            i += 1
            break
        elif i + 2 < n and pattern[i + 1] == "-":
            low, high = sorted((ch, pattern[i + 2]))
            items.append(f"{_class_char(low)}-{_class_char(high)}")
            i += 3
        else:
            items.append(_class_char(ch))
            i += 1
    if not items:
        return ("." if negate else "(?!)"), i
    body = "".join(items)
    return (f"[^{body}]" if negate else f"[{body}]"), i


def _class_char(ch: str) -> str:
    return "\\" + ch if ch in "\\]^-[" else ch


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with *prefix*, or None.

    Code-point order equals UTF-8 byte order, so this bound works for SQL ``BINARY``
    collation and ``text COLLATE "C"`` as well as for Python's ``str`` ordering.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        nxt = last + 1
        if 0xD800 <= nxt <= 0xDFFF:  # skip the surrogate block: no valid key holds one
            nxt = 0xE000
        if nxt <= 0x10FFFF:
            return "".join(chars) + chr(nxt)
    return None
