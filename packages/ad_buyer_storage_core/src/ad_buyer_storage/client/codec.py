"""The one JSON codec shared by every backend.

Rules (the contract's "Values" section):

* plain JSON (dict, list, str, int, float, bool, None) round-trips equal;
* ``datetime``/``date``/``time`` -> ISO 8601 text, timezone kept (naive stays naive);
* ``Decimal`` -> the exact decimal text (``Decimal("1500.10")`` -> ``"1500.10"``), never a
  binary float: money is money;
* ``UUID`` -> canonical text; ``Enum`` -> its value; pydantic models -> ``model_dump(mode="json")``;
  dataclasses -> their fields; sets/tuples -> lists; non-str dict keys -> their JSON text
  (``{1: "a"}`` is stored as ``{"1": "a"}``, as ``json.dumps`` does);
* integers must fit in signed 64 bits (JSON readers such as orjson turn bigger ones into
  floats, silently inexact); store bigger numbers as ``Decimal``;
* containers nest at most :data:`MAX_NESTING` (254) levels deep, the most orjson writes, so
  that whatever is stored reads back through every reader and helper without recursing out;
* NaN, +-Infinity, NUL characters inside strings (or dict keys), lone surrogates, integers
  outside 64 bits and documents larger than the size cap raise :class:`InvalidValueError`
  before any I/O.

Typed reads (``model=`` on reads) restore rich types through a pydantic ``TypeAdapter``.

orjson is used when installed (the ``fast`` extra); the stdlib ``json`` otherwise. Both produce
documents that decode to equal values; the text is the same except for float exponent
spelling (``1e+16`` vs ``1e16``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import functools
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar, cast

from ad_buyer_storage.errors import InvalidValueError

try:  # optional accelerator
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised in the no-orjson test session
    _orjson = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "MAX_NESTING",
    "JsonCodec",
    "canonical",
    "decode",
    "encode",
    "to_jsonable",
    "validate_as",
]

DEFAULT_MAX_VALUE_BYTES = 8 * 1024 * 1024
MAX_NESTING = 254
T = TypeVar("T")


def _default(obj: Any) -> Any:
    """Map a rich Python object to plain JSON; shared by both encoders."""
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise InvalidValueError(f"non-finite Decimal {obj!r} cannot be stored")
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump) and hasattr(type(obj), "model_fields"):
        # pydantic's JSON mode turns NaN into null silently: look at the Python form first.
        _check_numbers(model_dump())
        return model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        _check_numbers(fields)
        return fields
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise InvalidValueError(f"values of type {type(obj).__name__} cannot be stored as JSON")


_LONG_DIGITS = re.compile(r"[0-9]{19}")
_DIGITS_TO_NINE = bytes(0x39 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_NINETEEN_DIGITS = b"9" * 19
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _check_numbers(obj: Any) -> None:
    """Raise on NaN/Infinity (orjson would silently write ``null``) and on ints beyond 64 bits."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidValueError(f"{item!r} is not valid JSON and cannot be stored")
        elif isinstance(item, int) and not isinstance(item, bool):
            if not _INT64_MIN <= item <= _INT64_MAX:
                raise InvalidValueError("integers must fit in 64 bits (signed); store larger numbers as Decimal")
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")
_TOO_DEEP = f"values nest at most {MAX_NESTING} levels of objects and arrays"


def _too_deep(text: str) -> bool:
    """True if the JSON *text* nests deeper than MAX_NESTING (strings' brackets do not count)."""
    if text.count("[") + text.count("{") <= MAX_NESTING:  # cannot be deeper: skip the scan
        return False
    depth = 0
    for bracket in _BRACKET.findall(_STRING_LITERAL.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > MAX_NESTING:
            return True
    return False


def _has_nul(text: str) -> bool:
    """True if the encoded JSON *text* escapes a real NUL character (``\\u0000``)."""
    start = text.find("\\u0000")
    while start != -1:
        # An escape is real when preceded by an even number of backslashes.
        backslashes = 0
        i = start - 1
        while i >= 0 and text[i] == "\\":
            backslashes += 1
            i -= 1
        if backslashes % 2 == 0:
            return True
        start = text.find("\\u0000", start + 1)
    return False


class JsonCodec:
    """Encode/decode values under the contract's rules, with a size cap in UTF-8 bytes."""

    def __init__(self, *, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES, use_orjson: bool | None = None) -> None:
        if max_value_bytes <= 0:
            raise ValueError("max_value_bytes must be positive")
        self.max_value_bytes = max_value_bytes
        self.uses_orjson = _orjson is not None if use_orjson is None else (use_orjson and _orjson is not None)

    def encode(self, value: Any) -> str:
        """Encode *value* to JSON text, or raise :class:`InvalidValueError` before any I/O."""
        text, by_orjson = self._dumps(value)
        if "\\u0000" in text and _has_nul(text):
            raise InvalidValueError("NUL characters cannot be stored in values")
        # UTF-8 is never more than 4 bytes a character: skip the byte count for small texts.
        if not by_orjson or len(text) * 4 > self.max_value_bytes:
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError:
                raise InvalidValueError("lone surrogates cannot be stored in values") from None
            if size > self.max_value_bytes:
                raise InvalidValueError(f"encoded value is {size} bytes, over the {self.max_value_bytes}-byte cap")
        return text

    def _dumps(self, value: Any) -> tuple[str, bool]:
        """JSON text, and whether it was produced (and so UTF-8-checked) by orjson."""
        if self.uses_orjson:
            try:
                raw = _orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS)
                # Cheap screens on the bytes: orjson writes NaN as "null", and accepts unsigned
                # 64-bit ints (19+ digits) that JSON readers would turn into floats.
                if b"null" in raw or _NINETEEN_DIGITS in raw.translate(_DIGITS_TO_NINE):
                    _check_numbers(value)
                return raw.decode("utf-8"), True
            except (TypeError, _orjson.JSONEncodeError) as exc:
                cause = exc.__cause__ or exc.__context__
                if isinstance(cause, InvalidValueError):
                    raise cause from None
                if "Recursion limit" in str(exc):
                    raise InvalidValueError(_TOO_DEEP) from None
                # orjson refuses ints beyond 64 bits, non-str dict keys and surrogates; fall through
                # to the stdlib so both codecs accept exactly the same values.
        try:
            text = json.dumps(value, default=_default, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except InvalidValueError:
            raise
        except RecursionError:
            raise InvalidValueError(_TOO_DEEP) from None
        except (TypeError, ValueError) as exc:
            raise InvalidValueError(f"value cannot be stored as JSON: {exc}") from None
        if _LONG_DIGITS.search(text):  # the stdlib takes ints of any size
            _check_numbers(value)
        if _too_deep(text):
            raise InvalidValueError(_TOO_DEEP)
        return text, False

    def decode(self, text: str | bytes) -> Any:
        """Decode JSON text written by :meth:`encode`."""
        if self.uses_orjson:
            return _orjson.loads(text)
        return json.loads(text)


# Datetimes and dataclasses go through our default() too, so both encoders agree.
_ORJSON_OPTIONS = (_orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS) if _orjson is not None else 0

_DEFAULT_CODEC = JsonCodec()


def encode(value: Any) -> str:
    """Encode with the default codec (8 MiB cap)."""
    return _DEFAULT_CODEC.encode(value)


def decode(text: str | bytes) -> Any:
    """Decode with the default codec."""
    return _DEFAULT_CODEC.decode(text)


def to_jsonable(value: Any) -> Any:
    """The plain-JSON form of *value*, exactly as a read would return it."""
    return decode(encode(value))


@functools.lru_cache(maxsize=256)
def _adapter(model: Any) -> Callable[[Any], Any]:
    # Imported on the first typed read: pydantic costs ~30 ms to import, and untyped use never needs it.
    from pydantic import TypeAdapter  # noqa: PLC0415

    return cast(Callable[[Any], Any], TypeAdapter(model).validate_python)


def validate_as(model: type[T], value: Any) -> T:
    """Restore rich types: validate plain JSON *value* as *model* (pydantic model, dataclass, type)."""
    adapter = _adapter(cast(Any, model))  # types are hashable; the cache keys on them
    return cast(T, adapter(value))


def canonical(value: str | bytes) -> str:
    """One spelling per JSON document, to compare documents whatever their spelling: sorted
    keys, numbers as bare normalised decimals (``1e16`` and ``10000000000000000`` compare
    equal, as do ``1.50`` and ``1.5``)."""
    return _emit(json.loads(value, parse_float=Decimal, parse_int=Decimal))


def _emit(obj: Any) -> str:
    if isinstance(obj, Decimal):  # 1e16 == 10000000000000000, 1.50 == 1.5, -0.0 == 0
        return "0" if obj == 0 else format(obj.normalize(), "f")
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _emit(obj[k]) for k in sorted(obj)) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(_emit(v) for v in obj) + "]"
    return json.dumps(obj, ensure_ascii=False)
