"""Listing: keys/count/scan/delete_pattern by glob pattern, exactly as the reference matcher."""

from __future__ import annotations

from ad_buyer_storage.contract.glob import compile_glob
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
