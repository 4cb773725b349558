"""Listing: keys/count/scan/delete_pattern by glob pattern, exactly as the reference matcher;
filtered, paged selection (``select``, the ``list_*`` helpers' cursors) exactly as the reference
filter."""

from __future__ import annotations

from typing import Any

from ad_buyer_storage.client.filters import matches
from ad_buyer_storage.contract.glob import compile_glob
from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.errors import InvalidPatternError

from ._base import ContractBase, certifies, fails_with
from ._samples import NASTY_KEYS, PATTERNS
from .harness import Subject

__all__ = ["ListingContract"]


class ListingContract(ContractBase):
    """Area ``listing``: the glob grammar, literal prefixes, streaming scans, pattern deletes."""

    @certifies("listing")
    async def test_glob_listing_matches_the_reference_matcher(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many({key: 1 for key in NASTY_KEYS})
        for pattern in PATTERNS:
            expected = sorted(k for k in NASTY_KEYS if compile_glob(pattern).matches(k))
            listed = await storage.keys(pattern)
            assert listed == expected, (
                f"keys({pattern!r}) must list exactly the keys the reference glob matcher matches: "
                f"got {listed!r}, expected {expected!r}"
            )
            counted = await storage.count(pattern)
            assert counted == len(expected), f"count({pattern!r}) must be {len(expected)}, not {counted}"

    @certifies("listing")
    async def test_prefix_queries_are_literal_and_case_sensitive(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many({k: 1 for k in ("deal:1", "DEAL:1", "dealX1", "supply_path:1", "supplyXpath:1")})
        listed = await storage.keys("deal:*")
        assert listed == ["deal:1"], f"a prefix must match case-sensitively, never 'DEAL:' or 'dealX': {listed!r}"
        listed = await storage.keys("supply_path:*")
        assert listed == ["supply_path:1"], f"'_' in a prefix must match only '_' (no SQL LIKE wildcard): {listed!r}"
        listed = await storage.keys("rate_limit:*")
        assert listed == [], f"a prefix no key has must list nothing: {listed!r}"

    @certifies("listing")
    async def test_scan_streams_every_key_once(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many({f"campaign:{i:05d}": i for i in range(2500)})
        await storage.set("other", 1)
        seen = [key async for key in storage.scan("campaign:*", batch_size=100)]
        assert len(seen) == 2500, f"scan() over 25 batches must give every matching key: {len(seen)} of 2500"
        assert len(set(seen)) == 2500, f"scan() must give each key once: {len(seen) - len(set(seen))} repeats"

    @certifies("listing")
    async def test_malformed_patterns_are_refused(self, subject: Subject) -> None:
        storage = subject.storage
        for pattern in ("deal:[1", "deal:\\", "[", "a\x00", "deal:\ud800*", "*\udfff", "[\ud800]"):
            rule = f"the malformed pattern {pattern!r} must be refused with InvalidPatternError"
            await fails_with(InvalidPatternError, storage.keys(pattern), f"keys(): {rule}")
            await fails_with(InvalidPatternError, storage.count(pattern), f"count(): {rule}")
            await fails_with(InvalidPatternError, storage.delete_pattern(pattern), f"delete_pattern(): {rule}")
            await fails_with(InvalidPatternError, anext(aiter(storage.scan(pattern))), f"scan(): {rule}")

    @certifies("listing")
    async def test_delete_pattern(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many({k: 1 for k in NASTY_KEYS})
        await fails_with(
            InvalidPatternError, storage.delete_pattern(""), "delete_pattern('') must be refused, never delete all"
        )
        deleted = await storage.delete_pattern("deal:\\[1\\]*")
        assert deleted == 1, f"delete_pattern() must delete exactly the escaped-literal match: {deleted}, not 1"
        deleted = await storage.delete_pattern("rate_limit:*")
        assert deleted == 1, f"delete_pattern('rate_limit:*') must delete 'rate_limit:a' only: {deleted}, not 1"
        keys = await storage.keys()
        assert "rateXlimit:evil" in keys, "delete_pattern() must not treat '_' as a wildcard"
        assert "RATE_LIMIT:b" in keys, "delete_pattern() must match case-sensitively"
        remaining = await storage.count()
        deleted = await storage.delete_pattern("*")
        assert deleted == remaining, f"delete_pattern('*') must return how many it deleted: {deleted}, not {remaining}"
        left = await storage.keys()
        assert left == [], f"delete_pattern('*') must delete every key: {left!r} left"

    @certifies("listing")
    async def test_delete_pattern_handles_more_than_one_batch(self, subject: Subject) -> None:
        await subject.storage.set_many({f"cache:{i}": i for i in range(1234)})
        await subject.storage.set("keep", 1)
        deleted = await subject.storage.delete_pattern("cache:*")
        assert deleted == 1234, f"delete_pattern() over several batches must delete every match: {deleted} of 1234"
        left = await subject.storage.keys()
        assert left == ["keep"], f"delete_pattern() must leave the keys it does not match: {left!r}"

    @certifies("listing")
    async def test_select_filters_by_json_equality_in_key_order(self, subject: Subject) -> None:
        storage = subject.storage
        records: dict[str, Any] = {
            "deal:01": {"status": "paused", "n": 1, "flag": True, "x": None},
            "deal:02": {"status": "active", "n": 1.0, "flag": 1},
            "deal:03": {"status": "paused", "n": "1", "flag": False, "tags": ["a"]},
            "deal:04": {"status": "PAUSED", "n": 2},
            "deal:05": ["status", "paused"],
            "deal:06": {"status": {"nested": "paused"}},
            "deal:07": {"status": "paused", "n": 1, "tags": ["a"], "x": None},
            "deal:08": "paused",
            "deal:09": {"status": "paused", "campaign_id": "c1", "n": 2**53 + 1, "we ird": "y"},
            "deal:10": {"status": "paus\u00e9d", "n": -0.0},
            "deal_x:11": {"status": "paused"},
            "dealer:12": {"status": "paused"},
            "dea:13": {"status": "paused"},
        }
        await storage.set_many(records)
        cases: list[dict[str, Any]] = [
            {}, {"status": "paused"}, {"n": 1}, {"n": 1.0}, {"n": 0}, {"n": 2**53 + 1}, {"flag": True},
            {"flag": 1}, {"x": None}, {"missing": None}, {"tags": ["a"]}, {"status": {"nested": "paused"}},
            {"status": "paused", "n": 1}, {"status": "paused", "campaign_id": "c1"}, {"we ird": "y"},
            {"status": "paus\u00e9d"},
        ]  # fmt: skip
        for filters in cases:
            expected = [
                (k, v)
                for k, v in sorted(records.items())
                if k.startswith("deal:") and (not filters or matches(v, filters))
            ]
            got = await storage.select("deal:", filters)
            assert got.rows == expected, (
                f"select('deal:', {filters!r}) must give the records whose fields equal the filters as JSON "
                f"(True is not 1, 1 is 1.0, '1' is not 1), in key order, and only under the prefix: got "
                f"{[k for k, _ in got.rows]}, expected {[k for k, _ in expected]}"
            )
            assert got.last_key is None, f"select() that read everything must say nothing is left: {got.last_key!r}"

    @certifies("listing")
    async def test_select_pages_by_key(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many({f"order:{i:03d}": {"status": "open" if i % 3 else "done", "i": i} for i in range(40)})
        everything = (await storage.select("order:", {"status": "open"})).rows
        assert len(everything) == 26, f"26 of 40 orders are open: select() found {len(everything)}"
        for size in (1, 4, 7, 26, 50):
            walked: list[tuple[str, Any]] = []
            after: str | None = None
            for _ in range(60):
                page = await storage.select("order:", {"status": "open"}, after=after, limit=size)
                assert len(page.rows) <= size, f"select(limit={size}) gave {len(page.rows)} records"
                walked += page.rows
                if page.last_key is None:
                    break
                after = page.last_key
            assert walked == everything, (
                f"pages of {size} walked with after=last_key must give every record once, in order: "
                f"{[k for k, _ in walked]}"
            )
        tail = await storage.select("order:", after="order:036")
        assert [k for k, _ in tail.rows] == ["order:037", "order:038", "order:039"], (
            f"select(after=) must start strictly after that key: {[k for k, _ in tail.rows]}"
        )

    @certifies("listing", Capability.EXPIRY)
    async def test_select_skips_expired_records(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("deal:a", {"status": "paused"}, ttl=0.2)
        await storage.set("deal:b", {"status": "paused"})
        await subject.elapse(0.3)
        got = [k for k, _ in (await storage.select("deal:", {"status": "paused"})).rows]
        assert got == ["deal:b"], f"an expired record must not be selected: {got}"
