"""Keys, values and the key-value operations every backend offers (no capability needed)."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from ad_buyer_storage.client.codec import MAX_NESTING
from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.errors import (
    BackendError,
    InvalidKeyError,
    InvalidTTLError,
    InvalidValueError,
    KeyTypeError,
)

from ._base import ContractBase, certifies, fails_with
from ._samples import NASTY_KEYS, Color, DealModel, Money, exactly
from .harness import Subject

__all__ = ["KeyValueContract"]


def deepest_tree() -> Any:
    """A value nested exactly MAX_NESTING levels deep (with its ``{"tree": ...}`` wrapper)."""
    tree: Any = "leaf"
    for level in range(MAX_NESTING - 1):
        tree = [tree] if level % 2 else {"k": tree}
    return tree


class KeyValueContract(ContractBase):
    """Area ``kv``: the key rules, the value rules, get/set/delete/exists, bulk operations, and
    the isolation of one failing write from the writes sharing its round trip."""

    # -- keys ------------------------------------------------------------------------------
    @certifies("kv")
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
        calls: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("set", lambda: storage.set(bad_key, 1)),
            ("get", lambda: storage.get(bad_key)),
            ("delete", lambda: storage.delete(bad_key)),
            ("exists", lambda: storage.exists(bad_key)),
            ("get_many", lambda: storage.get_many(["ok", bad_key])),
            ("set_many", lambda: storage.set_many({"ok": 1, bad_key: 2})),
        ]
        for name, call in calls:
            await fails_with(error, call(), f"{name}() must refuse the key {bad_key!r} with {error.__name__}")
        assert isinstance(error("x"), (ValueError, TypeError)), "key errors must be ValueError or TypeError"
        left = await storage.keys()
        assert left == [], f"a set_many() refused for one bad key must write nothing, not even the good ones ({left})"

    @certifies("kv")
    async def test_key_size_limit_is_exactly_1024_bytes(self, subject: Subject) -> None:
        key = "k" * 1024
        await subject.storage.set(key, 1)
        got = await subject.storage.get(key)
        assert got == 1, f"a key of exactly 1,024 ASCII bytes must be stored (read back {got!r})"
        key = "é" * 512
        await subject.storage.set(key, 2)
        listed = await subject.storage.keys("é*")
        assert listed == [key], "a key of exactly 1,024 UTF-8 bytes in 512 characters must be stored and listed"

    @certifies("kv")
    async def test_keys_round_trip_verbatim(self, subject: Subject) -> None:
        storage = subject.storage
        for i, key in enumerate(NASTY_KEYS):
            await storage.set(key, i)
        for i, key in enumerate(NASTY_KEYS):
            got = await storage.get(key)
            assert got == i, f"the key {key!r} must be stored verbatim, apart from every other key (read {got!r})"
        listed = await storage.keys()
        assert listed == sorted(NASTY_KEYS), f"keys() must list every key verbatim, sorted (got {listed!r})"

    # -- values ----------------------------------------------------------------------------
    @certifies("kv")
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
        assert exactly(got) == exactly(value), (
            f"plain JSON must read back with the same types and float bits: read {got!r} for {value!r}"
        )
        listed = await subject.storage.get_many(["v"])
        assert exactly(listed.get("v", "<missing>")) == exactly(value), (
            f"get_many() must give the value get() gives: {listed.get('v', '<missing>')!r} for {value!r}"
        )

    @certifies("kv")
    async def test_falsy_values_are_stored_and_listed(self, subject: Subject) -> None:
        storage = subject.storage
        falsy = {"deal:a": {}, "deal:b": [], "deal:c": 0, "deal:d": "", "deal:e": False, "deal:f": None}
        await storage.set_many(falsy)
        listed = await storage.keys("deal:*")
        assert listed == sorted(falsy), (
            f"keys holding falsy values ({{}}, [], 0, '', false, null) must be listed: {listed}"
        )
        got = await storage.get_many(falsy)
        assert got == falsy, f"get_many() must return falsy values, never drop them: {got!r}"
        exist = {k: await storage.exists(k) for k in falsy}
        assert exist == dict.fromkeys(falsy, True), f"exists() must be true for keys holding falsy values: {exist}"
        scanned = sorted([k async for k in storage.scan("deal:*")])
        assert scanned == sorted(falsy), f"scan() must list keys holding falsy values: {scanned}"

    @certifies("kv")
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
        expected = {
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
        got = await subject.storage.get("rich")
        assert got == expected, (
            "rich types must be stored as documented (Decimal and datetimes as exact text, UUID as text, Enum as "
            f"its value, dataclasses as objects, tuples as lists): read {got!r}"
        )

    @certifies("kv")
    async def test_typed_reads_restore_rich_types(self, subject: Subject) -> None:
        deal = DealModel(
            deal_id="d1",
            price=Decimal("1500.10"),
            starts=dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC),
            day=dt.date(2026, 11, 26),
            token=uuid.uuid4(),
        )
        await subject.storage.set("deal:typed", deal)
        got = await subject.storage.get("deal:typed", model=DealModel)
        assert got == deal, f"get(model=...) must restore the model stored: {got!r}"
        many = await subject.storage.get_many(["deal:typed"], model=DealModel)
        assert many == {"deal:typed": deal}, f"get_many(model=...) must restore the model stored: {many!r}"
        await subject.storage.set("money", Money(Decimal("0.30"), "EUR"))
        money = await subject.storage.get("money", model=Money)
        assert money == Money(Decimal("0.30"), "EUR"), f"get(model=...) must restore a dataclass exactly: {money!r}"

    @certifies("kv")
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
        rule = f"a value JSON cannot hold exactly ({bad_value!r}) must be refused with InvalidValueError"
        await fails_with(InvalidValueError, storage.set("v", bad_value), f"set(): {rule}")
        await fails_with(InvalidValueError, storage.set_many({"ok": 1, "v": bad_value}), f"set_many(): {rule}")
        left = await storage.keys()
        assert left == [], f"a refused value must write nothing, not even the other items of its set_many ({left})"

    @certifies("kv")
    async def test_the_deepest_value_round_trips(self, subject: Subject) -> None:
        storage = subject.storage
        deepest = {"status": "deep", "tree": deepest_tree()}  # MAX_NESTING levels in all
        await storage.set("doc:deep", deepest)
        got = await storage.get("doc:deep")
        assert got == deepest, f"a value nested {MAX_NESTING} levels deep must read back equal"
        many = await storage.get_many(["doc:deep"])
        assert many == {"doc:deep": deepest}, f"get_many() must read a value nested {MAX_NESTING} levels deep"
        await fails_with(
            InvalidValueError,
            storage.set("doc:deeper", {"status": "deep", "tree": [deepest["tree"]]}),
            f"a value nested deeper than {MAX_NESTING} levels must be refused",
        )
        assert not await storage.exists("doc:deeper"), "a refused value must not be stored"

    @certifies("kv")
    async def test_a_backslash_u0000_text_is_not_a_nul(self, subject: Subject) -> None:
        await subject.storage.set("v", "literal \\u0000 text")
        got = await subject.storage.get("v")
        assert got == "literal \\u0000 text", f"the six characters \\u0000 in a text must stay text, not a NUL: {got!r}"

    @certifies("kv")
    async def test_value_size_cap(self, subject: Subject) -> None:
        cap = subject.storage.max_value_bytes
        at_cap = "x" * (cap - 2)  # the two quotes make it exactly `cap` bytes
        await subject.storage.set("big", at_cap)
        got = await subject.storage.get("big")
        assert got == at_cap, f"a value of exactly max_value_bytes ({cap}) encoded must be stored whole"
        await fails_with(
            InvalidValueError, subject.storage.set("big2", at_cap + "x"), "a value over max_value_bytes must be refused"
        )
        assert not await subject.storage.exists("big2"), "a value refused for its size must not be stored"

    # -- single-key operations -------------------------------------------------------------
    @certifies("kv")
    async def test_get_set_delete_exists(self, subject: Subject) -> None:
        storage = subject.storage
        assert await storage.get("k") is None, "get() of a missing key must return None"
        assert await storage.get("k", default=7) == 7, "get() of a missing key must return the default given"
        assert not await storage.exists("k"), "exists() of a missing key must be false"
        assert not await storage.delete("k"), "delete() of a missing key must return False"
        version = await storage.set("k", {"a": 1})
        assert isinstance(version, str), f"set() must return the new version token (a str), not {version!r}"
        assert version, "set() must return a non-empty version token"
        assert await storage.exists("k"), "exists() must be true after set()"
        await storage.set("k", {"a": 2})
        got = await storage.get("k")
        assert got == {"a": 2}, f"set() on an existing key must replace its value (read {got!r})"
        assert await storage.delete("k"), "delete() of a live key must return True"
        assert not await storage.exists("k"), "exists() must be false after delete()"
        assert await storage.get("k") is None, "get() must return None after delete()"

    @certifies("kv")
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
        assert isinstance(outcomes[2], InvalidTTLError), (
            f"a 10**13 s TTL must raise InvalidTTLError, not {outcomes[2]!r}"
        )
        assert isinstance(outcomes[3], InvalidValueError), f"NaN must raise InvalidValueError, not {outcomes[3]!r}"
        failed = [o for i, o in enumerate(outcomes) if i not in (2, 3) and isinstance(o, BaseException)]
        assert not failed, f"valid writes must succeed beside concurrent invalid ones, but failed: {failed!r}"
        got = await storage.get_many(["deal:a", "deal:b", "deal:c", "deal:d", "deal:e"])
        assert got == {"deal:a": 1, "deal:b": 2, "deal:e": 5}, (
            f"exactly the valid concurrent writes must be stored: {got!r}"
        )

    @certifies("kv")
    async def test_a_write_the_store_refuses_fails_alone(self, subject: Subject) -> None:
        refuse = subject.harness.fail_writes_to
        if refuse is None:
            pytest.skip("the harness gives no way to make the store refuse a key (Harness.fail_writes_to)")
        storage = subject.storage
        await storage.set("deal:v", 0)
        # The atomic writes join in when ATOMIC is claimed, a TTL'd write when EXPIRY is.
        held = await storage.get_versioned("deal:v") if subject.claims(Capability.ATOMIC) else None
        await refuse("deal:refused")
        # Concurrent single-key calls share round trips: the first goes alone, the rest together.
        ttl = 60 if subject.claims(Capability.EXPIRY) else None
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
        assert isinstance(refused, BackendError), f"a write the store refuses must raise BackendError, not {refused!r}"
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert not failed, f"writes sharing a round trip with a refused one must succeed, but failed: {failed!r}"
        expected = {"deal:a": 1, "deal:b": 2, "deal:d": 4} | ({"deal:e": 5, "deal:v": 6} if held else {})
        got = await storage.get_many(list(expected))
        assert got == expected, f"the writes beside a refused one must be stored: {got!r}"
        try:
            stored = await storage.get("deal:refused")
        except BackendError:  # a store may refuse reading it too
            stored = None
        assert stored != 3, "a write reported as refused must not be stored"
        # set_many is not atomic: the refused item raises, the others are stored.
        await fails_with(
            BackendError,
            storage.set_many({"deal:f": 7, "deal:refused": 8, "deal:g": 9}),
            "set_many() with an item the store refuses must raise BackendError",
        )
        got = await storage.get_many(["deal:f", "deal:g"])
        assert got == {"deal:f": 7, "deal:g": 9}, f"set_many() must store the items the store accepts: {got!r}"

    # -- bulk ------------------------------------------------------------------------------
    @certifies("kv")
    async def test_bulk_operations(self, subject: Subject) -> None:
        storage = subject.storage
        items = {f"order:{i:04d}": {"n": i} for i in range(1200)}
        await storage.set_many(items)
        keys = list(items)
        got = await storage.get_many([*keys, "order:missing", keys[0]])
        assert got == items, "get_many() must return every live key asked (once, missing ones left out)"
        deleted = await storage.delete_many([*keys[:700], "order:missing", keys[0]])
        assert deleted == 700, f"delete_many() must count each live key deleted once: {deleted}, not 700"
        left = await storage.count("order:*")
        assert left == 500, f"delete_many() must delete exactly the keys given: {left} left, not 500"
        assert await storage.get_many([]) == {}, "get_many([]) must return {}"
        assert await storage.delete_many([]) == 0, "delete_many([]) must return 0"
        await storage.set_many([])

    @certifies("kv")
    async def test_set_many_last_value_wins(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many([("a", 1), ("b", 2), ("a", 3)])
        got = await storage.get_many(["a", "b"])
        assert got == {"a": 3, "b": 2}, f"set_many() with a key twice must keep its last value: {got!r}"
