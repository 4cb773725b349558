"""Key, TTL and amount rules, checked before any I/O (the contract's "Keys" and "TTL")."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

from ad_buyer_storage.contract.protocol import INT64_MAX, INT64_MIN
from ad_buyer_storage.errors import (
    InvalidInputError,
    InvalidKeyError,
    InvalidTTLError,
    InvalidValueError,
    KeyTypeError,
)

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_TTL_SECONDS",
    "TTL",
    "as_decimal",
    "check_amount",
    "check_attempts",
    "check_key",
    "ttl_to_ms",
]

MAX_KEY_BYTES = 1024
#: The longest TTL any backend accepts: 100 years (PostgreSQL timestamps end in 294276 AD,
#: Redis and SQLite count milliseconds in 64 bits; one bound for all). Longer: no expiry.
MAX_TTL_SECONDS = 100 * 365 * 24 * 3600

#: A time to live: seconds (int or float, > 0) or a timedelta, at most 100 years; None: no expiry.
TTL = int | float | timedelta | None


def check_key(key: object) -> str:
    """Return *key* unchanged if it is a valid key, else raise before any I/O."""
    if not isinstance(key, str):
        raise KeyTypeError(f"keys must be str, not {type(key).__name__}")
    if type(key) is not str:  # str subclasses (StrEnum...) are stored as their plain text
        key = "" + key
    if not key:
        raise InvalidKeyError("keys must not be empty")
    if "\x00" in key:
        raise InvalidKeyError("keys must not contain NUL characters")
    if len(key) > MAX_KEY_BYTES // 4:  # short keys cannot exceed the byte cap: skip the encode
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidKeyError("keys must not contain lone surrogates") from None
        if size > MAX_KEY_BYTES:
            raise InvalidKeyError(f"keys are at most {MAX_KEY_BYTES} bytes of UTF-8; this one is {size}")
    elif not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidKeyError("keys must not contain lone surrogates") from None
    return key


def check_keys(keys: list[object]) -> list[str]:
    """:func:`check_key` of each key, with one screen over the whole batch (bulk calls)."""
    if all(type(key) is str for key in keys):
        plain = cast(list[str], keys)
        joined = "".join(plain)
        # ASCII text is one byte a character: short enough, and no surrogate can hide in it.
        if (
            joined.isascii()
            and "\x00" not in joined
            and all(plain)
            and max(map(len, plain), default=0) <= MAX_KEY_BYTES
        ):
            return plain
    return [check_key(key) for key in keys]


def check_version(version: object) -> str:
    """A version token to compare with (``if_version=``, ``require_version``), as text that
    every store can carry: NUL characters and lone surrogates are refused before any I/O."""
    text = version if type(version) is str else str(version)
    if "\x00" in text:
        raise InvalidInputError("version tokens must not contain NUL characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError("version tokens must not contain lone surrogates") from None
    return text


def ttl_to_ms(ttl: object) -> int | None:
    """Validate a TTL (seconds as int/float/timedelta, > 0 and at most :data:`MAX_TTL_SECONDS`,
    or None) and return milliseconds.

    Rounded up to the millisecond, so a positive TTL never becomes 0.
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float, timedelta)):
        raise InvalidTTLError(f"ttl must be seconds as int, float or timedelta, not {type(ttl).__name__}")
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl) if isinstance(ttl, float) else ttl
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise InvalidTTLError(f"ttl must be a finite number of seconds, not {ttl!r}")
    if seconds <= 0:
        raise InvalidTTLError(f"ttl must be > 0 seconds (use None for no expiry), not {ttl!r}")
    if seconds > MAX_TTL_SECONDS:
        raise InvalidTTLError(f"ttl must be at most {MAX_TTL_SECONDS} seconds (100 years; use None for no expiry)")
    return math.ceil(seconds * 1000) if isinstance(seconds, float) else int(seconds * 1000)


def check_attempts(attempts: object, name: str = "attempts") -> int:
    """A number of attempts: a whole number >= 1 (not a bool, a float, a string or None)."""
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise InvalidInputError(f"{name} must be a whole number >= 1, not {type(attempts).__name__}")
    if attempts < 1:
        raise InvalidInputError(f"{name} must be >= 1, not {attempts}")
    return attempts


def as_decimal(current: Any, key: str) -> Decimal:
    """The stored value *current* at *key* as the base of a decimal increment: an int or
    decimal text, finite; anything else is an :class:`InvalidValueError` (never the
    ``decimal`` module's own exceptions)."""
    if isinstance(current, bool) or not isinstance(current, (int, str)):
        raise InvalidValueError(f"the value at {key!r} is not a decimal amount (found {type(current).__name__})")
    try:
        value = Decimal(current)
    except ArithmeticError:
        raise InvalidValueError(f"the value at {key!r} is not a decimal amount: {current!r}") from None
    if not value.is_finite():
        raise InvalidValueError(f"the value at {key!r} is not a finite amount")
    return value


def check_amount(amount: object) -> int | Decimal:
    """Validate an increment amount: an int within 64 bits, or a finite Decimal."""
    if isinstance(amount, bool) or not isinstance(amount, (int, Decimal)):
        raise InvalidInputError(
            f"increment amounts must be int or Decimal, not {type(amount).__name__} (floats are inexact for money)"
        )
    if isinstance(amount, Decimal):
        if not amount.is_finite():
            raise InvalidInputError(f"increment amount {amount!r} is not finite")
        return amount
    if not INT64_MIN <= amount <= INT64_MAX:
        raise InvalidInputError("integer increments are limited to 64-bit signed integers")
    return amount
