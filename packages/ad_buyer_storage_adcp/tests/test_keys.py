"""The SDK's identifiers map to valid keys of ours, injectively."""

from __future__ import annotations

import pytest

from ad_buyer_storage import InvalidKeyError
from ad_buyer_storage.client.validation import check_key
from ad_buyer_storage_adcp._base import MAX_PART, StoreHolder, part

AWKWARD = ["a", "A", "a:b", "a%3Ab", "%", "*", "?[]", "\x00", "\x01", "\n", "\ud800", "é", "#", "~", " ", "x" * 5000]


def test_distinct_identifiers_never_share_a_segment() -> None:
    segments = [part(text) for text in AWKWARD]
    assert len(set(segments)) == len(AWKWARD)
    for segment in segments:
        assert ":" not in segment
        assert not set(segment) & set("*?[]\x00")
        assert len(segment) <= MAX_PART


def test_long_identifiers_hash_and_the_hash_form_cannot_be_an_encoding() -> None:
    long = part("y" * (MAX_PART + 1))
    assert long.startswith("#")
    assert len(long) == 65
    assert part(long) != long  # '#' is always encoded in a short segment
    assert part("") == "#" + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_tuples_map_to_distinct_valid_keys() -> None:
    holder = StoreHolder("memory", kind="idem")
    pairs = [("a", "b:c"), ("a:b", "c"), ("a", "bc"), ("\ud800", "x" * 5000), ("", "")]
    keys = [holder.key(*p) for p in pairs]
    assert len(set(keys)) == len(pairs)
    for key in keys:
        assert check_key(key) == key
    with pytest.raises(InvalidKeyError):
        check_key("a\x00b")  # what an unmapped identifier could hold
