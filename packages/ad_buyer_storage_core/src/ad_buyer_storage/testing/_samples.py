"""Inputs the kit's tests share: keys and patterns that break naive stores, and rich values."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

__all__ = ["NASTY_KEYS", "PATTERNS", "Color", "DealModel", "Money", "exactly"]

# Keys chosen to break naive implementations: SQL LIKE wildcards and quotes, glob
# metacharacters, case, CR/LF, non-ASCII, injection attempts.
NASTY_KEYS = [
    "deal:1",
    "DEAL:1",
    "dealX1",
    "deal:[1]",
    "deal:*",
    "deal:?",
    "rate_limit:a",
    "rateXlimit:evil",
    "RATE_LIMIT:b",
    "supply_path:1",
    "supplyXpath:1",
    "a%b",
    "a_b",
    "a\\b",
    "x'); DROP TABLE kv_store;--",
    "' OR '1'='1",
    "a\r\nFLUSHALL\r\n",
    "ünïcödé:κλειδί:🔑",
    "space key",
]

PATTERNS = [
    "*",
    "deal:*",
    "DEAL:*",
    "deal:\\[1\\]*",
    "deal:[1]",
    "deal:\\*",
    "deal:\\?",
    "rate_limit:*",
    "supply_path:*",
    "a%*",
    "a_*",
    "a\\\\b",
    "?EAL:1",
    "[dD]eal:1",
    "[^d]*",
    "[a-c]*",
    "*:1",
    "ünï*",
    "*\r\n*",
]


def exactly(value: Any) -> Any:
    """A form of a JSON value that differs whenever types or float bits differ (1 vs 1.0, -0.0 vs 0.0)."""
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, dict):
        return ("dict", sorted((k, exactly(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", [exactly(v) for v in value])
    return (type(value).__name__, value)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Money:
    amount: Decimal
    currency: str


class DealModel(BaseModel):
    deal_id: str
    price: Decimal
    starts: dt.datetime
    day: dt.date
    token: uuid.UUID
