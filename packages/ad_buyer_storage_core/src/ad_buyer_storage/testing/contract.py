"""Every rule of ``contract.md``, once, against the backend a subclass's ``harness`` builds."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import math
import uuid
from collections.abc import AsyncIterator, Awaitable
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel

from ad_buyer_storage.client.codec import MAX_NESTING
from ad_buyer_storage.client.validation import MAX_TTL_SECONDS
from ad_buyer_storage.contract.clock import ManualClock
from ad_buyer_storage.contract.glob import compile_glob
from ad_buyer_storage.contract.protocol import Capability, StorageBackend, SupportsPubSub
from ad_buyer_storage.domain.entities import ENTITIES
from ad_buyer_storage.domain.storage import Storage
from ad_buyer_storage.errors import (
    BackendError,
    InvalidKeyError,
    InvalidPatternError,
    InvalidTTLError,
    InvalidValueError,
    KeyNotFoundError,
    KeyTypeError,
    NotConnectedError,
    StorageClosedError,
    UnsupportedOperationError,
    VersionConflictError,
)

from ._child import increment_in_processes
from .harness import Harness, Subject

__all__ = ["StorageContract"]

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


def _exactly(value: Any) -> Any:
    """A form of a JSON value that differs whenever types or float bits differ (1 vs 1.0, -0.0 vs 0.0)."""
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, dict):
        return ("dict", sorted((k, _exactly(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", [_exactly(v) for v in value])
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


@pytest.mark.conformance
@pytest.mark.asyncio
class StorageContract:
    """Subclass this and provide a ``harness`` fixture returning a :class:`Harness`."""

    @pytest.fixture
    def harness(self) -> Harness:
        raise NotImplementedError("provide a `harness` fixture returning ad_buyer_storage.testing.Harness")

    @pytest_asyncio.fixture
    async def subject(self, harness: Harness) -> AsyncIterator[Subject]:
        clock = ManualClock()
        storage = Storage(harness.make_backend(clock), **harness.storage_options)
        await storage.connect()
        try:
            yield Subject(storage, clock, harness)
        finally:
            if storage.is_open:
                await storage.clear()
            await storage.aclose()

    # -- capabilities ----------------------------------------------------------------------
    async def test_backend_implements_the_protocol(self, subject: Subject) -> None:
        backend = subject.storage.backend
        assert isinstance(backend, StorageBackend)
        assert isinstance(backend.name, str)
        assert backend.name
        assert all(isinstance(c, Capability) for c in backend.capabilities)

    async def test_pubsub_is_advertised_only_when_claimed(self, subject: Subject) -> None:
        storage = subject.storage
        if Capability.PUBSUB not in storage.capabilities_for("pubsub:deals"):
            if not hasattr(storage.backend, "capabilities_for"):  # a router answers per key instead
                assert not isinstance(storage.backend, SupportsPubSub), "implements pub/sub without claiming it"
            with pytest.raises(UnsupportedOperationError):
                await storage.publish("pubsub:deals", {"a": 1})
            return
        async with storage.subscribe("pubsub:deals") as messages:
            await storage.publish("pubsub:deals", {"deal": "d1", "n": 1})
            got = await asyncio.wait_for(anext(aiter(messages)), timeout=5)
        assert got == {"deal": "d1", "n": 1}

    async def test_atomics_are_refused_when_not_claimed(self, subject: Subject) -> None:
        storage = subject.storage
        if Capability.ATOMIC in storage.capabilities:
            assert await storage.set_if_absent("atomic:probe", 1)
            return
        for call in (
            storage.set_if_absent("k", 1),
            storage.incr("k"),
            storage.get_versioned("k"),
            storage.update("k", lambda v: v, default=0),
        ):
            with pytest.raises(UnsupportedOperationError):
                await call
        assert not await storage.exists("k")

    async def test_expiry_is_refused_when_not_claimed(self, subject: Subject) -> None:
        storage = subject.storage
        if Capability.EXPIRY in storage.capabilities:
            await storage.set("expiry:probe", 1, ttl=60)
            remaining = await storage.ttl("expiry:probe")
            assert remaining is not None
            assert 0 < remaining <= 60
            return
        with pytest.raises(UnsupportedOperationError):
            await storage.set("k", 1, ttl=5)
        assert not await storage.exists("k")
        await storage.set("k", 1)
        assert await storage.ttl("k") is None

    async def test_durable_data_survives_reopen(self, subject: Subject) -> None:
        if Capability.DURABLE not in subject.storage.capabilities:
            return
        await subject.storage.set("deal:durable", {"spend": "10.50"})
        async with subject.reopen() as again:
            assert await again.get("deal:durable") == {"spend": "10.50"}

    # -- lifecycle -------------------------------------------------------------------------
    async def test_lifecycle(self, subject: Subject) -> None:
        fresh = subject.reopen()
        with pytest.raises(NotConnectedError):
            await fresh.get("k")
        async with fresh as entered:
            assert entered is fresh
            await fresh.set("k", 1)
            assert await fresh.connect() is fresh  # connecting again is a no-op
        with pytest.raises(StorageClosedError):
            await fresh.get("k")
        await fresh.aclose()  # idempotent
        await fresh.disconnect()
        with pytest.raises(StorageClosedError):
            await fresh.connect()

    async def test_ping_and_info(self, subject: Subject) -> None:
        assert await subject.storage.ping() >= 0
        info = await subject.storage.info()
        assert info["backend"] == subject.storage.name
        claimed = info["capabilities"]
        assert isinstance(claimed, list)
        assert set(claimed) == {c.value for c in subject.storage.capabilities}

    # -- keys ------------------------------------------------------------------------------
    @pytest.mark.parametrize(
        ("bad_key", "error"),
        [
            ("", InvalidKeyError),
            ("a\x00b", InvalidKeyError),
            ("lone\ud800", InvalidKeyError),
            ("k" * 1025, InvalidKeyError),
            ("é" * 513, InvalidKeyError),  # 1,026 bytes in 513 characters
            (b"bytes", KeyTypeError),
            (42, KeyTypeError),
            (None, KeyTypeError),
        ],
    )
    async def test_bad_keys_are_refused_before_io(self, subject: Subject, bad_key: Any, error: type) -> None:
        storage = subject.storage
        for call in (
            lambda: storage.set(bad_key, 1),
            lambda: storage.get(bad_key),
            lambda: storage.delete(bad_key),
            lambda: storage.exists(bad_key),
            lambda: storage.get_many(["ok", bad_key]),
            lambda: storage.set_many({"ok": 1, bad_key: 2}),
        ):
            with pytest.raises(error):
                await call()
        assert isinstance(error("x"), (ValueError, TypeError))
        assert await storage.keys() == []  # set_many wrote nothing, not even "ok"

    async def test_key_size_limit_is_exactly_1024_bytes(self, subject: Subject) -> None:
        key = "k" * 1024
        await subject.storage.set(key, 1)
        assert await subject.storage.get(key) == 1
        key = "é" * 512
        await subject.storage.set(key, 2)
        assert await subject.storage.keys("é*") == [key]

    async def test_keys_round_trip_verbatim(self, subject: Subject) -> None:
        storage = subject.storage
        for i, key in enumerate(NASTY_KEYS):
            await storage.set(key, i)
        for i, key in enumerate(NASTY_KEYS):
            assert await storage.get(key) == i, key
        assert await storage.keys() == sorted(NASTY_KEYS)

    # -- values ----------------------------------------------------------------------------
    @pytest.mark.parametrize(
        "value",
        [
            {"a": 1, "b": [1, 2.5, None, True, "x"], "c": {"d": {}}},
            [],
            {},
            0,
            0.0,
            -1.5e300,
            "",
            False,
            None,
            'ünïcödé 🔑 " \\ \n',
            2**63 - 1,
            -(2**63),
            [[[[[]]]]],
            # Floats stay floats with the same bits, whatever a store does to numbers.
            1e23,
            1e16,
            1.7976931348623157e308,
            5e-324,
            -0.0,
            0.1 + 0.2,
            {"max_bid": 1e23, "cap": 1e19, "n": 10, "z": -0.0, "tiny": 1e-7},
        ],
    )
    async def test_plain_json_round_trips_equal(self, subject: Subject, value: Any) -> None:
        await subject.storage.set("v", value)
        got = await subject.storage.get("v", default="<missing>")
        assert _exactly(got) == _exactly(value), f"read back {got!r} for {value!r} (types or float bits differ)"
        listed = await subject.storage.get_many(["v"])
        assert _exactly(listed["v"]) == _exactly(value), "a bulk read gives another value than a single read"

    async def test_falsy_values_are_stored_and_listed(self, subject: Subject) -> None:
        storage = subject.storage
        falsy = {"deal:a": {}, "deal:b": [], "deal:c": 0, "deal:d": "", "deal:e": False, "deal:f": None}
        await storage.set_many(falsy)
        assert await storage.keys("deal:*") == sorted(falsy)
        assert await storage.get_many(falsy) == falsy
        assert {k: await storage.exists(k) for k in falsy} == dict.fromkeys(falsy, True)
        assert await storage.list_deals() == list(falsy.values())

    async def test_rich_types_are_encoded_by_the_documented_rules(self, subject: Subject) -> None:
        aware = dt.datetime(2026, 11, 26, 12, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
        token = uuid.UUID("12345678-1234-5678-1234-567812345678")
        value = {
            "price": Decimal("1500.10"),
            "tiny": Decimal("0.1") * 3,
            "big": Decimal("12345678901234567890.123456789"),
            "aware": aware,
            "naive": dt.datetime(2026, 1, 2, 3, 4, 5),
            "day": dt.date(2026, 2, 28),
            "token": token,
            "color": Color.RED,
            "money": Money(Decimal("9.99"), "USD"),
            "tags": ("a", "b"),
        }
        await subject.storage.set("rich", value)
        assert await subject.storage.get("rich") == {
            "price": "1500.10",
            "tiny": "0.3",
            "big": "12345678901234567890.123456789",
            "aware": "2026-11-26T12:30:15.123456-05:00",
            "naive": "2026-01-02T03:04:05",
            "day": "2026-02-28",
            "token": "12345678-1234-5678-1234-567812345678",
            "color": "red",
            "money": {"amount": "9.99", "currency": "USD"},
            "tags": ["a", "b"],
        }

    async def test_typed_reads_restore_rich_types(self, subject: Subject) -> None:
        deal = DealModel(
            deal_id="d1",
            price=Decimal("1500.10"),
            starts=dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC),
            day=dt.date(2026, 11, 26),
            token=uuid.uuid4(),
        )
        await subject.storage.set("deal:typed", deal)
        assert await subject.storage.get("deal:typed", model=DealModel) == deal
        assert await subject.storage.get_many(["deal:typed"], model=DealModel) == {"deal:typed": deal}
        await subject.storage.set("money", Money(Decimal("0.30"), "EUR"))
        assert await subject.storage.get("money", model=Money) == Money(Decimal("0.30"), "EUR")

    @pytest.mark.parametrize(
        "bad_value",
        [
            math.nan,
            math.inf,
            -math.inf,
            {"a": [1, {"b": math.nan}]},
            Decimal("NaN"),
            "nul\x00inside",
            {"k\x00": 1},
            "lone\udc00",
            object(),
            Money(Decimal("1"), "a\x00"),
            2**63,
            {"n": [-(2**63) - 1]},
            10**30,
        ],
    )
    async def test_bad_values_are_refused_before_io(self, subject: Subject, bad_value: Any) -> None:
        storage = subject.storage
        with pytest.raises(InvalidValueError):
            await storage.set("v", bad_value)
        with pytest.raises(InvalidValueError):
            await storage.set_many({"ok": 1, "v": bad_value})
        assert await storage.keys() == []

    async def test_the_deepest_value_reads_back_through_every_helper(self, subject: Subject) -> None:
        storage = subject.storage
        tree: Any = "leaf"
        for level in range(MAX_NESTING - 1):
            tree = [tree] if level % 2 else {"k": tree}
        deepest = {"status": "deep", "tree": tree}  # MAX_NESTING levels in all
        await storage.set_deal("deep", deepest)
        await storage.set_deal("plain", {"status": "plain"})
        assert await storage.get_deal("deep") == deepest
        assert await storage.get_many(["deal:deep"]) == {"deal:deep": deepest}
        assert await storage.list_deals({"status": "deep"}) == [deepest]
        assert len(await storage.list_deals()) == 2, "one deep deal must not break listing the others"
        if Capability.ATOMIC in storage.capabilities:
            updated = await storage.update_deal("deep", lambda d: {**d, "seen": True})
            assert updated == {**deepest, "seen": True}
        with pytest.raises(InvalidValueError):
            await storage.set_deal("deeper", {"status": "deep", "tree": [tree]})
        assert await storage.get_deal("deeper") is None

    async def test_a_backslash_u0000_text_is_not_a_nul(self, subject: Subject) -> None:
        await subject.storage.set("v", "literal \\u0000 text")
        assert await subject.storage.get("v") == "literal \\u0000 text"

    async def test_value_size_cap(self, subject: Subject) -> None:
        cap = subject.storage.max_value_bytes
        at_cap = "x" * (cap - 2)  # the two quotes make it exactly `cap` bytes
        await subject.storage.set("big", at_cap)
        assert await subject.storage.get("big") == at_cap
        with pytest.raises(InvalidValueError):
            await subject.storage.set("big2", at_cap + "x")
        assert not await subject.storage.exists("big2")

    # -- single-key operations -----------------------------------------------------------------
    async def test_get_set_delete_exists(self, subject: Subject) -> None:
        storage = subject.storage
        assert await storage.get("k") is None
        assert await storage.get("k", default=7) == 7
        assert not await storage.exists("k")
        assert not await storage.delete("k")
        version = await storage.set("k", {"a": 1})
        assert isinstance(version, str)
        assert version
        assert await storage.exists("k")
        await storage.set("k", {"a": 2})
        assert await storage.get("k") == {"a": 2}
        assert await storage.delete("k")
        assert not await storage.exists("k")
        assert await storage.get("k") is None

    async def test_bad_input_fails_alone_among_concurrent_writes(self, subject: Subject) -> None:
        storage = subject.storage
        outcomes = await asyncio.gather(
            storage.set("deal:a", 1),
            storage.set("deal:b", 2),
            storage.set("deal:c", 3, ttl=10**13),
            storage.set("deal:d", math.nan),
            storage.set("deal:e", 5),
            return_exceptions=True,
        )
        assert isinstance(outcomes[2], InvalidTTLError), f"a 10**13 s TTL gave {outcomes[2]!r}"
        assert isinstance(outcomes[3], InvalidValueError), f"NaN gave {outcomes[3]!r}"
        failed = [o for i, o in enumerate(outcomes) if i not in (2, 3) and isinstance(o, BaseException)]
        assert not failed, f"valid writes failed beside invalid ones: {failed!r}"
        assert await storage.get_many(["deal:a", "deal:b", "deal:c", "deal:d", "deal:e"]) == {
            "deal:a": 1, "deal:b": 2, "deal:e": 5
        }  # fmt: skip

    async def test_a_write_the_store_refuses_fails_alone(self, subject: Subject) -> None:
        refuse = subject.harness.fail_writes_to
        if refuse is None:
            pytest.skip("the harness gives no way to make the store refuse a key (Harness.fail_writes_to)")
        storage = subject.storage
        await storage.set("deal:v", 0)
        held = await storage.get_versioned("deal:v") if Capability.ATOMIC in storage.capabilities else None
        await refuse("deal:refused")
        # Concurrent single-key calls share round trips: the first goes alone, the rest together.
        ttl = 60 if Capability.EXPIRY in storage.capabilities else None
        calls: list[Awaitable[object]] = [
            storage.set("deal:a", 1),
            storage.set("deal:b", 2),
            storage.set("deal:refused", 3),
            storage.set("deal:d", 4, ttl=ttl),
        ]
        if held is not None:
            calls += [storage.set_if_absent("deal:e", 5), storage.set("deal:v", 6, if_version=held.version)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        refused = outcomes.pop(2)
        assert isinstance(refused, BackendError), f"the refused write gave {refused!r}, not its own BackendError"
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert not failed, f"writes that shared a round trip with the refused one failed too: {failed!r}"
        expected = {"deal:a": 1, "deal:b": 2, "deal:d": 4} | ({"deal:e": 5, "deal:v": 6} if held else {})
        assert await storage.get_many(list(expected)) == expected
        try:
            stored = await storage.get("deal:refused")
        except BackendError:  # a store may refuse reading it too
            stored = None
        assert stored != 3, "a write reported as refused was stored"
        # set_many is not atomic: the refused item raises, the others are stored.
        with pytest.raises(BackendError):
            await storage.set_many({"deal:f": 7, "deal:refused": 8, "deal:g": 9})
        assert await storage.get_many(["deal:f", "deal:g"]) == {"deal:f": 7, "deal:g": 9}

    # -- bulk ------------------------------------------------------------------------------
    async def test_bulk_operations(self, subject: Subject) -> None:
        storage = subject.storage
        items = {f"order:{i:04d}": {"n": i} for i in range(1200)}
        await storage.set_many(items)
        keys = list(items)
        got = await storage.get_many([*keys, "order:missing", keys[0]])
        assert got == items
        assert await storage.delete_many([*keys[:700], "order:missing", keys[0]]) == 700
        assert await storage.count("order:*") == 500
        assert await storage.get_many([]) == {}
        assert await storage.delete_many([]) == 0
        await storage.set_many([])

    async def test_set_many_last_value_wins_and_ttl_applies_to_all(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many([("a", 1), ("b", 2), ("a", 3)])
        assert await storage.get_many(["a", "b"]) == {"a": 3, "b": 2}
        if Capability.EXPIRY in storage.capabilities:
            await storage.set_many({"c": 1, "d": 2}, ttl=10)
            await subject.elapse(10.5 if subject.harness.uses_clock else 0)
            if subject.harness.uses_clock:
                assert await storage.get_many(["c", "d"]) == {}

    # -- listing ---------------------------------------------------------------------------
    async def test_glob_listing_matches_the_reference_matcher(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many({key: 1 for key in NASTY_KEYS})
        for pattern in PATTERNS:
            expected = sorted(k for k in NASTY_KEYS if compile_glob(pattern).matches(k))
            assert await storage.keys(pattern) == expected, pattern
            assert await storage.count(pattern) == len(expected), pattern

    async def test_prefix_queries_are_literal_and_case_sensitive(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many({k: 1 for k in ("deal:1", "DEAL:1", "dealX1", "supply_path:1", "supplyXpath:1")})
        assert await storage.keys("deal:*") == ["deal:1"]
        assert await storage.keys("supply_path:*") == ["supply_path:1"]
        assert await storage.keys("rate_limit:*") == []

    async def test_scan_streams_every_key_once(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many({f"campaign:{i:05d}": i for i in range(2500)})
        await storage.set("other", 1)
        seen = [key async for key in storage.scan("campaign:*", batch_size=100)]
        assert len(seen) == 2500
        assert len(set(seen)) == 2500

    async def test_malformed_patterns_are_refused(self, subject: Subject) -> None:
        storage = subject.storage
        for pattern in ("deal:[1", "deal:\\", "[", "a\x00", "deal:\ud800*", "*\udfff", "[\ud800]"):
            for call in (storage.keys, storage.count, storage.delete_pattern):
                with pytest.raises(InvalidPatternError):
                    await call(pattern)
            with pytest.raises(InvalidPatternError):
                await anext(aiter(storage.scan(pattern)))

    async def test_delete_pattern(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many({k: 1 for k in NASTY_KEYS})
        with pytest.raises(InvalidPatternError):
            await storage.delete_pattern("")
        assert await storage.delete_pattern("deal:\\[1\\]*") == 1
        assert await storage.delete_pattern("rate_limit:*") == 1
        assert "rateXlimit:evil" in await storage.keys()
        assert "RATE_LIMIT:b" in await storage.keys()
        remaining = await storage.count()
        assert await storage.delete_pattern("*") == remaining
        assert await storage.keys() == []

    async def test_delete_pattern_handles_more_than_one_batch(self, subject: Subject) -> None:
        await subject.storage.set_many({f"cache:{i}": i for i in range(1234)})
        await subject.storage.set("keep", 1)
        assert await subject.storage.delete_pattern("cache:*") == 1234
        assert await subject.storage.keys() == ["keep"]

    # -- TTL -------------------------------------------------------------------------------
    @pytest.mark.parametrize(
        "bad_ttl",
        [0, -1, 0.0, -0.5, True, False, "2", math.nan, math.inf, dt.timedelta(0), MAX_TTL_SECONDS + 1, 10**13,
         dt.timedelta(days=365 * 101), 1e300],
    )  # fmt: skip
    async def test_bad_ttls_are_refused_before_io(self, subject: Subject, bad_ttl: Any) -> None:
        storage = subject.storage
        for call in (
            lambda: storage.set("k", 1, ttl=bad_ttl),
            lambda: storage.set_many({"k": 1}, ttl=bad_ttl),
            lambda: storage.expire("k", bad_ttl),
        ):
            with pytest.raises(InvalidTTLError):
                await call()
        assert not await storage.exists("k")

    async def test_the_longest_ttl_is_accepted_everywhere(self, subject: Subject) -> None:
        self._needs_expiry(subject)
        storage = subject.storage
        await storage.set("long", 1, ttl=MAX_TTL_SECONDS)
        await storage.set("long_delta", 1, ttl=dt.timedelta(seconds=MAX_TTL_SECONDS))
        assert await storage.expire("long_delta", MAX_TTL_SECONDS)
        for key in ("long", "long_delta"):
            remaining = await storage.ttl(key)
            assert remaining is not None
            assert MAX_TTL_SECONDS - 60 < remaining <= MAX_TTL_SECONDS, f"ttl({key!r}) = {remaining}"

    def _needs_expiry(self, subject: Subject) -> None:
        if Capability.EXPIRY not in subject.storage.capabilities:
            pytest.skip("backend does not claim EXPIRY (refusal is tested separately)")

    async def test_expired_keys_are_invisible_everywhere(self, subject: Subject) -> None:
        self._needs_expiry(subject)
        storage = subject.storage
        await storage.set("session:old", {"n": 1}, ttl=0.3)
        await storage.set("session:live", {"n": 2})
        await subject.elapse(0.45)
        assert await storage.get("session:old") is None
        assert not await storage.exists("session:old")
        assert await storage.get_many(["session:old", "session:live"]) == {"session:live": {"n": 2}}
        assert await storage.keys("session:*") == ["session:live"]
        assert await storage.count("session:*") == 1
        assert await storage.list_sessions() == [{"n": 2}]
        with pytest.raises(KeyNotFoundError):
            await storage.ttl("session:old")
        assert not await storage.expire("session:old", 10)
        assert not await storage.delete("session:old")
        assert await storage.delete_pattern("session:*") == 1

    async def test_ttl_is_kept_to_the_millisecond(self, subject: Subject) -> None:
        self._needs_expiry(subject)
        storage = subject.storage
        await storage.set("k", 1, ttl=1.5)
        remaining = await storage.ttl("k")
        assert remaining is not None
        assert 1.3 < remaining <= 1.5
        await storage.set("t", 1, ttl=dt.timedelta(seconds=1.5))
        remaining = await storage.ttl("t")
        assert remaining is not None
        assert 1.3 < remaining <= 1.5
        if subject.harness.uses_clock:
            await subject.elapse(1.2)
            assert await storage.exists("k")  # not truncated to 1 s
            await subject.elapse(0.31)
            assert not await storage.exists("k")

    async def test_overwrite_without_ttl_removes_expiry_unless_kept(self, subject: Subject) -> None:
        self._needs_expiry(subject)
        storage = subject.storage
        await storage.set("k", 1, ttl=100)
        await storage.set("k", 2)
        assert await storage.ttl("k") is None
        await storage.set("k", 3, ttl=100)
        await storage.set("k", 4, keep_ttl=True)
        remaining = await storage.ttl("k")
        assert remaining is not None
        assert 90 < remaining <= 100
        assert await storage.get("k") == 4
        await storage.set("new", 1, keep_ttl=True)  # nothing to keep: no expiry
        assert await storage.ttl("new") is None

    async def test_ttl_can_be_read_and_changed(self, subject: Subject) -> None:
        self._needs_expiry(subject)
        storage = subject.storage
        with pytest.raises(KeyNotFoundError):
            await storage.ttl("missing")
        await storage.set("k", 1)
        assert await storage.ttl("k") is None
        assert await storage.expire("k", 50)
        remaining = await storage.ttl("k")
        assert remaining is not None
        assert 45 < remaining <= 50
        assert await storage.persist("k")
        assert await storage.ttl("k") is None
        assert not await storage.expire("missing", 5)
        assert not await storage.persist("missing")
        assert await storage.get("k") == 1  # changing the TTL leaves the value alone

    async def test_expired_key_can_be_written_again(self, subject: Subject) -> None:
        self._needs_expiry(subject)
        storage = subject.storage
        await storage.set("k", "old", ttl=0.2)
        await subject.elapse(0.3)
        await storage.set("k", "new")
        assert await storage.get("k") == "new"
        assert await storage.ttl("k") is None

    # -- atomics ---------------------------------------------------------------------------
    def _needs_atomic(self, subject: Subject) -> None:
        if Capability.ATOMIC not in subject.storage.capabilities:
            pytest.skip("backend does not claim ATOMIC (refusal is tested separately)")

    async def test_set_if_absent(self, subject: Subject) -> None:
        self._needs_atomic(subject)
        storage = subject.storage
        assert await storage.set_if_absent("lock:a", "me")
        assert not await storage.set_if_absent("lock:a", "you")
        assert await storage.get("lock:a") == "me"
        if Capability.EXPIRY in storage.capabilities:
            assert await storage.set_if_absent("lock:b", "me", ttl=0.2)
            await subject.elapse(0.3)
            assert await storage.set_if_absent("lock:b", "you")  # an expired key is absent
            assert await storage.get("lock:b") == "you"
            assert await storage.ttl("lock:b") is None

    async def test_concurrent_set_if_absent_has_one_winner(self, subject: Subject) -> None:
        self._needs_atomic(subject)
        results = await asyncio.gather(*(subject.storage.set_if_absent("lock:x", i) for i in range(50)))
        assert sum(results) == 1
        assert await subject.storage.get("lock:x") == results.index(True)

    async def test_incr(self, subject: Subject) -> None:
        self._needs_atomic(subject)
        storage = subject.storage
        assert await storage.incr("counter") == 1
        assert await storage.incr("counter", 41) == 42
        assert await storage.incr("counter", -50) == -8
        assert await storage.get("counter") == -8
        bad_amounts: list[Any] = [1.5, True, "1", None]
        for bad in bad_amounts:
            with pytest.raises(ValueError):  # noqa: PT011 - InvalidInputError is a ValueError
                await storage.incr("counter", bad)
        await storage.set("text", "abc")
        await storage.set("float", 1.5)
        await storage.set("whole_float", 1e16)  # a float with an integral value is still a float
        await storage.set("doc", {"a": 1})
        for key in ("text", "float", "whole_float", "doc"):
            with pytest.raises(InvalidValueError):
                await storage.incr(key)
        assert await storage.get("text") == "abc"
        await storage.set("max", 2**63 - 1)
        with pytest.raises(InvalidValueError):
            await storage.incr("max")
        assert await storage.get("max") == 2**63 - 1
        assert await storage.incr("max", -1) == 2**63 - 2

    async def test_incr_ttl_applies_on_create_only(self, subject: Subject) -> None:
        self._needs_atomic(subject)
        self._needs_expiry(subject)
        storage = subject.storage
        assert await storage.incr("rate_limit:w", ttl=10) == 1
        assert await storage.incr("rate_limit:w", ttl=100) == 2
        remaining = await storage.ttl("rate_limit:w")
        assert remaining is not None
        assert remaining <= 10
        await storage.set("plain", 5)
        assert await storage.incr("plain") == 6
        assert await storage.ttl("plain") is None
        await storage.set("keeps", 1, ttl=30)
        await storage.incr("keeps")
        remaining = await storage.ttl("keeps")
        assert remaining is not None
        assert 25 < remaining <= 30

    async def test_100_concurrent_increments_end_at_100(self, subject: Subject) -> None:
        self._needs_atomic(subject)
        storage = subject.storage
        await asyncio.gather(*(storage.incr("deal:spend") for _ in range(100)))
        assert await storage.get("deal:spend") == 100
        await asyncio.gather(*(storage.incr("deal:money", Decimal("0.10")) for _ in range(100)))
        assert await storage.get("deal:money") == "10.00"

    async def test_decimal_increments_are_exact(self, subject: Subject) -> None:
        self._needs_atomic(subject)
        storage = subject.storage
        for _ in range(3):
            await storage.incr("budget", Decimal("0.1"))
        assert await storage.get("budget") == "0.3"
        assert await storage.incr("budget", Decimal("1500.10")) == Decimal("1500.40")
        assert await storage.incr("budget", Decimal("12345678901234567890.000000001")) == Decimal(
            "12345678901234569390.400000001"
        )
        await storage.set("text", "abc")
        with pytest.raises(InvalidValueError):
            await storage.incr("text", Decimal("1"))

    async def test_versioned_writes(self, subject: Subject) -> None:
        self._needs_atomic(subject)
        storage = subject.storage
        assert await storage.get_versioned("deal:v") is None
        v1 = await storage.set("deal:v", {"spend": 1})
        read = await storage.get_versioned("deal:v")
        assert read is not None
        assert read.value == {"spend": 1}
        assert read.version == v1
        v2 = await storage.set("deal:v", {"spend": 2}, if_version=v1)
        assert v2 != v1
        with pytest.raises(VersionConflictError):
            await storage.set("deal:v", {"spend": 99}, if_version=v1)
        assert await storage.get("deal:v") == {"spend": 2}
        await storage.delete("deal:v")
        await storage.set("deal:v", {"spend": 2})
        with pytest.raises(VersionConflictError):  # same value, new life: old token no good
            await storage.set("deal:v", {"spend": 3}, if_version=v2)
        with pytest.raises(VersionConflictError):
            await storage.set("deal:none", 1, if_version=v1)
        assert not await storage.exists("deal:none")

    async def test_versioned_write_keeps_ttl_when_asked(self, subject: Subject) -> None:
        self._needs_atomic(subject)
        self._needs_expiry(subject)
        storage = subject.storage
        v1 = await storage.set("session:s", 1, ttl=40)
        await storage.set("session:s", 2, keep_ttl=True, if_version=v1)
        remaining = await storage.ttl("session:s")
        assert remaining is not None
        assert 35 < remaining <= 40

    async def test_update_is_atomic_under_contention(self, subject: Subject) -> None:
        self._needs_atomic(subject)
        storage = subject.storage
        await storage.set_deal("d1", {"deal_id": "d1", "spend": 0, "status": "active"})

        def add_one(deal: dict[str, Any]) -> dict[str, Any]:
            return {**deal, "spend": deal["spend"] + 1}

        await asyncio.gather(*(storage.update_deal("d1", add_one) for _ in range(100)))
        assert await storage.get_deal("d1") == {"deal_id": "d1", "spend": 100, "status": "active"}
        with pytest.raises(KeyNotFoundError):
            await storage.update("missing", add_one)
        assert await storage.update("created", lambda v: [*v, 1], default=[]) == [1]

    async def test_update_keeps_expiry(self, subject: Subject) -> None:
        self._needs_atomic(subject)
        self._needs_expiry(subject)
        storage = subject.storage
        await storage.set("session:u", {"n": 1}, ttl=30)
        await storage.update("session:u", lambda s: {"n": s["n"] + 1})
        remaining = await storage.ttl("session:u")
        assert remaining is not None
        assert 25 < remaining <= 30

    # -- multi-process ---------------------------------------------------------------------
    @pytest.mark.multiprocess
    async def test_atomics_across_processes(self, subject: Subject) -> None:
        if Capability.MULTI_PROCESS not in subject.storage.capabilities:
            return
        self._needs_atomic(subject)
        recipe = subject.harness.child_backend
        assert recipe is not None, "MULTI_PROCESS is claimed: the harness must give child_backend"
        await subject.storage.set("deal:mp", {"spend": 0})
        await increment_in_processes(recipe, "counter:mp", 100, "deal:mp", join_timeout=120)
        assert await subject.storage.get("counter:mp") == 400
        assert await subject.storage.get("deal:mp") == {"spend": 400}

    # -- domain helpers --------------------------------------------------------------------
    async def test_domain_helpers(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_deal("d1", {"status": "active", "deal_type": "PG", "price": Decimal("12.50")})
        await storage.set_deal("d2", {"status": "paused", "deal_type": "PMP"})
        await storage.set_deal("d3", {"status": "active", "deal_type": "PMP"})
        await storage.set_campaign("c1", {"status": "active"})
        assert await storage.get_deal("d1") == {"status": "active", "deal_type": "PG", "price": "12.50"}
        assert len(await storage.list_deals()) == 3
        assert await storage.list_deals({"status": "active", "deal_type": "PMP"}) == [
            {"status": "active", "deal_type": "PMP"}
        ]
        assert await storage.list_deals({"price": Decimal("12.50")}) == [await storage.get_deal("d1")]
        assert await storage.list_deals({"no_such_field": "x"}) == []  # never "everything"
        assert await storage.list_deals({"status": None}) == []
        assert len(await storage.list_deals(limit=2)) == 2
        assert await storage.list_deals(limit=0) == []
        assert await storage.list_campaigns() == [{"status": "active"}]
        assert await storage.delete_deal("d2")
        assert await storage.collection("deal").ids() == ["d1", "d3"]

    async def test_filters_compare_json_values(self, subject: Subject) -> None:
        storage = subject.storage
        flags: list[Any] = [True, 1, 1.0, "true", None, False, 0, [1], [True], {"a": 1}, {"a": True}]
        for n, flag in enumerate(flags):
            await storage.set_deal(f"f{n:02d}", {"flag": flag, "n": n})

        async def matching(expected: Any) -> list[int]:
            return [d["n"] for d in await storage.list_deals({"flag": expected})]

        assert await matching(True) == [0], "True must match only true, never 1 or 1.0"
        assert await matching(1) == [1, 2], "numbers match by value: 1 and 1.0"
        assert await matching(1.0) == [1, 2]
        assert await matching("true") == [3]
        assert await matching(None) == [4]
        assert await matching(False) == [5], "False must match only false, never 0"
        assert await matching(0) == [6]
        assert await matching([1]) == [7]
        assert await matching([True]) == [8]
        assert await matching({"a": 1}) == [9]
        assert await matching({"a": True}) == [10]

    async def test_session_helpers_and_index(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_session("s1", {"buyer": "b1"})
        await storage.set_session("s2", {"buyer": "b1"}, ttl=600)
        if Capability.EXPIRY in storage.capabilities:
            remaining = await storage.ttl("session:s1")
            assert remaining is not None
            assert remaining > 600
        if Capability.ATOMIC in storage.capabilities:
            await asyncio.gather(*(storage.add_session_to_index("b1", f"s{i}") for i in (1, 2, 3)))
            assert await storage.get_session_index("b1") == ["s1", "s2", "s3"]
            assert await storage.list_buyer_sessions("b1") == [{"buyer": "b1"}, {"buyer": "b1"}]
            assert await storage.remove_session_from_index("b1", "s2") == ["s1", "s3"]
        assert len(await storage.list_sessions()) == 2  # the index is not a session

    async def test_every_entity_has_get_set_delete_list(self, subject: Subject) -> None:
        storage = subject.storage
        for name in ENTITIES:
            items = storage.collection(name)
            await items.set("id1", {"entity": name})
            assert await items.get("id1") == {"entity": name}
            assert await items.list({"entity": name}) == [{"entity": name}]
            assert await items.delete("id1")
            assert await items.get("id1") is None
