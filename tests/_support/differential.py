"""What tests/test_differential.py drives through every backend: the stacks it opens once,
the hostile inputs it draws, and the exact form in which it compares answers."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from ad_buyer_storage import Storage
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.client.validation import MAX_KEY_BYTES, MAX_TTL_SECONDS
from ad_buyer_storage.composed.mirror import MirrorBackend
from ad_buyer_storage.domain.collections import Page
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.recipes import postgres_and_redis
from tests._support.shared import POSTGRES_URL, REDIS_URL, drop_pg_schema, drop_redis_prefix

# -- the stacks ---------------------------------------------------------------------------------


@dataclass
class Stacks:
    """One Storage per backend, opened once for a test module, in private namespaces."""

    storages: dict[str, Storage]
    #: A second view of the mirror's secondary, to check it holds what the mirror's primary holds.
    mirror_secondary: Storage
    schemas: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)

    async def connect(self) -> None:
        for storage in [*self.storages.values(), self.mirror_secondary]:
            await storage.connect()

    async def close(self) -> None:
        for storage in [*self.storages.values(), self.mirror_secondary]:
            try:
                if storage.is_open:
                    await storage.clear()
            finally:
                await storage.aclose()

    def drop(self) -> None:
        for schema in self.schemas:
            drop_pg_schema(schema)
        for prefix in self.prefixes:
            drop_redis_prefix(prefix)


def open_stacks() -> Stacks:
    """memory, SQLite, Redis, PostgreSQL, the hybrid router (the seed's production routing:
    ephemeral keyspaces on Redis, the rest on PostgreSQL) and the mirror (the runbook's first
    step: SQLite primary, PostgreSQL secondary), each in a fresh schema or key prefix."""
    tag = uuid.uuid4().hex[:10]
    pg, hybrid_pg, mirror_pg = (f"abs_test_{tag}_{part}" for part in ("pg", "hy", "mi"))
    redis_prefix, hybrid_prefix = f"abs-test:{tag}:r:", f"abs-test:{tag}:h:"  # neither nests in the other
    storages = {
        "memory": Storage(MemoryBackend()),
        "sqlite": Storage(SQLiteBackend(":memory:", sweep_interval=None)),
        "redis": Storage(RedisBackend(REDIS_URL, key_prefix=redis_prefix)),
        "postgres": Storage(PostgresBackend(POSTGRES_URL, schema=pg, pool_min=1, pool_max=4, sweep_interval=None)),
        "hybrid": Storage(postgres_and_redis(hybrid_pg, "kv_store", hybrid_prefix)),
        "mirror": Storage(
            MirrorBackend(
                SQLiteBackend(":memory:", sweep_interval=None),
                PostgresBackend(POSTGRES_URL, schema=mirror_pg, pool_min=1, pool_max=4, sweep_interval=None),
            )
        ),
    }
    secondary = Storage(PostgresBackend(POSTGRES_URL, schema=mirror_pg, pool_min=1, pool_max=2, sweep_interval=None))
    return Stacks(storages, secondary, [pg, hybrid_pg, mirror_pg], [redis_prefix, hybrid_prefix])


# -- comparing ----------------------------------------------------------------------------------


def exact(value: Any) -> Any:
    """A form of *value* that differs whenever what a caller can observe differs: types (``1``,
    ``1.0``, ``True``), float bits (``-0.0``, ``5e-324``), dict key order, Decimal spelling."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, Decimal):
        return ("Decimal", str(value))
    if isinstance(value, Page):
        return ("Page", [exact(v) for v in value], value.next_cursor)
    if isinstance(value, dict):
        return ("dict", [(exact(k), exact(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [exact(v) for v in value])
    return (type(value).__name__, repr(value))


# -- hostile inputs -----------------------------------------------------------------------------

#: Key namespaces: routed to PostgreSQL (deal:, k:) or Redis (session:, cache:) by the hybrid router.
NAMESPACES = ("deal:", "session:", "cache:", "k:")
# Glob metacharacters, SQL wildcards and quotes, CR/LF, a non-BMP character, invisible ones.
KEY_ALPHABET = "ab:_%*?[]^-\\'\"é\r\n \U0001f511\u200b\x7f"
SUFFIX = st.one_of(
    st.text(alphabet=KEY_ALPHABET, max_size=6),
    st.text(alphabet=KEY_ALPHABET, max_size=6),
    st.text(max_size=4),  # any code point (lone surrogates included)
    st.sampled_from(["\ud800", "a\udfff", "\x00", "a\x00b"]),  # refused as keys: InvalidKeyError everywhere
)
#: How a key is padded: to exactly the key length limit, or one byte over (refused).
PAD = st.integers(0, 23).map(lambda i: {22: "limit", 23: "over"}.get(i, ""))


def build_key(namespace: str, example: str, suffix: str, pad: str) -> str:
    key = namespace + example + suffix
    if pad:
        size = len(key.encode("utf-8", "surrogatepass"))
        room = MAX_KEY_BYTES - size + (1 if pad == "over" else 0)
        key += "\U0001f511" * (room // 4) + "x" * (room % 4)
    return key


GLOB_ALPHABET = "ab*?[]^-\\:é\U0001f511"

_INT_EDGES = [0, 1, -1, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**19]
_FLOAT_EDGES = [0.0, -0.0, 1.0, 0.1, 5e-324, -5e-324, 1e16, 1e19, 1e23, 1.7976931348623157e308, -1e23, 2.0**53]
_REFUSED = [math.nan, math.inf, -math.inf, "a\x00b", "\ud800", Decimal("NaN"), Decimal("Infinity")]
_SCALAR: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from(_INT_EDGES),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(_FLOAT_EDGES),
    st.text(max_size=6),  # unicode, lone surrogates included (refused)
    st.sampled_from(["", "1", "true", "null", "1.0", "é\U0001f511"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.sampled_from(_REFUSED),
)
#: Filter fields and values chosen to collide: True/1/1.0/"1", 0/-0.0/False/None, ints beyond 2**53.
FIELDS = ("active", "é")
_CONFUSABLE = [True, 1, 1.0, "1", False, 0, -0.0, None]  # JSON equality tells them apart (bar 1 and 1.0)
FILTER_VALUES = [*_CONFUSABLE, "true", "", [1], [True], {"x": 1}, {"x": 1.0}, [], {}, 2**53, 2**53 + 1,
                 9007199254740992.0, 1e16, 10**16, 1e23, Decimal("1.0"), Decimal("1")]  # fmt: skip
FILTER_VALUE = st.one_of(st.sampled_from(_CONFUSABLE), st.sampled_from(_CONFUSABLE), st.sampled_from(FILTER_VALUES))


def _nested(depth: int, kind: str) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


#: At the nesting limit (254, accepted) and one over (refused), arrays and objects.
DEEP = st.tuples(st.sampled_from([254, 255]), st.sampled_from(["list", "dict"])).map(lambda spec: _nested(*spec))
VALUE: st.SearchStrategy[Any] = st.one_of(
    st.recursive(
        _SCALAR,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.text(alphabet='ab"\\é', max_size=2), children, max_size=3),
        ),
        max_leaves=6,
    ),
    st.fixed_dictionaries({}, optional={f: FILTER_VALUE for f in FIELDS}),  # records to filter
    st.sampled_from([{}, [], {1: "a"}, {"a": {}, "b": []}, (1, 2)]),
    DEEP,
)
#: Values JSON equality tells apart though Python's == may not (only 1 and 1.0 are equal).
LOOKALIKES: list[list[Any]] = [
    [True, 1, 1.0, "1", "true", [1], [True], Decimal("1"), Decimal("1.0")],
    [False, 0, -0.0, 0.0, None, "", "0", [], {}],
    [2**53, 2**53 + 1, 9007199254740992.0, 1e16, 10**16, 1e23],
]


def lookalikes(value: Any) -> list[Any]:
    """Filter values close to *value*: those of its group, or itself."""
    for group in LOOKALIKES:
        if any(type(value) is type(other) and value == other for other in group):
            return group
    return [value]


#: What filters are meant to find: objects with the filtered fields, holding confusable values.
RECORD = st.dictionaries(st.sampled_from(FIELDS), FILTER_VALUE, min_size=1, max_size=len(FIELDS))
FILTERS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(FIELDS), FILTER_VALUE, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(FIELDS), FILTER_VALUE, min_size=1, max_size=2),
    st.dictionaries(st.sampled_from(FIELDS), FILTER_VALUE, min_size=1, max_size=2),
    st.sampled_from([{}, {1: 1}, [("a", 1)]]),  # the last two refused: not a mapping of str fields
)
#: TTLs at the edges. Tiny ones expire before the next step on every backend (the test waits).
TINY_TTLS = (0.001, 1e-9, timedelta(microseconds=1))
_ACCEPTED_TTLS = [*TINY_TTLS, 3600, 86400.5, timedelta(hours=2), MAX_TTL_SECONDS, MAX_TTL_SECONDS - 0.5]
# Refused (InvalidTTLError): just over the longest, zero, negative, non-finite, of the wrong type.
_REFUSED_TTLS = [MAX_TTL_SECONDS + 0.001, MAX_TTL_SECONDS + 1, 10**13, 0, 0.0, -1, -0.001, math.inf, math.nan,
                 True, "60"]  # fmt: skip
TTL: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.none(), st.sampled_from(_ACCEPTED_TTLS), st.sampled_from(_REFUSED_TTLS)
)
AMOUNT: st.SearchStrategy[Any] = st.one_of(
    st.integers(-5, 5),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, 2**62, True, 1.0, "1"]),
    st.decimals(min_value=-1000, max_value=1000, places=2),
    st.sampled_from([Decimal("0.10"), Decimal("1E+2"), Decimal("-0"), Decimal("NaN")]),
)
LIMIT = st.sampled_from([None, None, None, 0, 1, 1, 2, 2, 3, -1, True])
