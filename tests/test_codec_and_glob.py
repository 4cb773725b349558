"""The codec (both encoders agree) and the glob grammar (properties and Redis quirks)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ad_buyer_storage import InvalidPatternError, InvalidValueError, JsonCodec
from ad_buyer_storage.client.codec import MAX_NESTING
from ad_buyer_storage.client.validation import check_key, check_keys
from ad_buyer_storage.contract import compile_glob, escape_glob
from ad_buyer_storage.contract.glob import prefix_upper_bound
from ad_buyer_storage.contract.protocol import new_version, new_versions

orjson_codec = JsonCodec(use_orjson=True)
stdlib_codec = JsonCodec(use_orjson=False)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


def test_orjson_is_really_used_when_installed() -> None:
    pytest.importorskip("orjson")
    assert orjson_codec.uses_orjson
    assert not stdlib_codec.uses_orjson


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_both_encoders_write_documents_that_read_back_equal(value) -> None:
    for codec in (orjson_codec, stdlib_codec):
        text = codec.encode(value)
        assert json.loads(text) == value
        assert orjson_codec.decode(text) == stdlib_codec.decode(text) == value


def test_both_encoders_write_the_same_text_for_rich_types() -> None:
    value = {
        "d": Decimal("1500.10"),
        "t": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        "n": dt.datetime(2026, 1, 2),
        "u": uuid.UUID(int=7),
        "s": "é🔑",
        "l": [1, 2.5, None, True],
    }
    assert orjson_codec.encode(value) == stdlib_codec.encode(value)


@pytest.mark.parametrize("codec", [orjson_codec, stdlib_codec], ids=["orjson", "stdlib"])
@pytest.mark.parametrize("bad", [float("nan"), {"a": float("-inf")}, "a\x00", "\udc00", 2**64, b"bytes"])
def test_both_encoders_refuse_the_same_values(codec, bad) -> None:
    with pytest.raises(InvalidValueError):
        codec.encode(bad)


def test_non_string_dict_keys_become_strings_as_in_json() -> None:
    assert orjson_codec.decode(orjson_codec.encode({1: "a", 2.5: "b"})) == {"1": "a", "2.5": "b"}
    assert stdlib_codec.encode({1: "a"}) == orjson_codec.encode({1: "a"}) == '{"1":"a"}'


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00")))
def test_an_escaped_literal_matches_only_itself(text) -> None:
    pattern = compile_glob(escape_glob(text))
    assert pattern.matches(text)
    assert pattern.prefix == text
    assert not pattern.matches(text + "x")
    star = compile_glob(escape_glob(text) + "*")
    assert star.is_prefix_only
    assert star.matches(text + "anything")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=6), st.text(max_size=6))
def test_prefix_upper_bound_bounds_exactly_the_prefixed_strings(prefix, other) -> None:
    upper = prefix_upper_bound(prefix)
    candidate = prefix + other
    assert candidate >= prefix
    if upper is not None:
        assert candidate < upper
        if not other.startswith(prefix) and other < prefix:
            assert not (prefix <= other < upper) or other.startswith(prefix)


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("h?llo", "hello", True),
        ("h*llo", "heeeello", True),
        ("h[ae]llo", "hallo", True),
        ("h[^e]llo", "hello", False),
        ("h[a-b]llo", "hbllo", True),
        ("h[b-a]llo", "hbllo", True),  # Redis accepts reversed ranges
        ("[!a]", "b", False),  # only ^ negates in Redis: this is the class {!, a}
        ("[!a]", "!", True),
        ("[]a]", "a", False),  # ']' closes at once: an empty class, then a literal ']'... never matches 'a'
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
        ("[\\]]", "]", True),
        ("*", "", True),
        ("DEAL:*", "deal:1", False),
    ],
)
def test_redis_grammar(pattern, key, matches) -> None:
    assert compile_glob(pattern).matches(key) is matches


@pytest.mark.parametrize("pattern", ["[abc", "abc\\", "[a-", "a[\\"])
def test_malformed_patterns(pattern) -> None:
    with pytest.raises(InvalidPatternError):
        compile_glob(pattern)


def _nested(levels: int, leaf: object = 1) -> object:
    value = leaf
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize("codec", [orjson_codec, stdlib_codec], ids=["orjson", "stdlib"])
def test_both_encoders_take_exactly_max_nesting_levels(codec: JsonCodec) -> None:
    assert codec.decode(codec.encode(_nested(MAX_NESTING))) == _nested(MAX_NESTING)
    for too_deep in (_nested(MAX_NESTING + 1), _nested(5000)):
        with pytest.raises(InvalidValueError, match="nest at most"):
            codec.encode(too_deep)
    # Brackets inside strings are text, not nesting.
    assert codec.decode(codec.encode(["[{" * 400, {"k": "]}" * 400}])) == ["[{" * 400, {"k": "]}" * 400}]


_KEY_PARTS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "\x00", "\ud800", "é", "deal:1", "x" * 1100, "é" * 300, "k" * 1024, "k" * 1025]),
    st.integers(),
)


@given(st.lists(_KEY_PARTS, max_size=6))
def test_bulk_key_checks_answer_as_one_by_one(keys: list[object]) -> None:
    def outcome(check: Callable[[], object]) -> object:
        try:
            return check()
        except Exception as exc:
            return (type(exc), str(exc))

    assert outcome(lambda: check_keys(keys)) == outcome(lambda: [check_key(k) for k in keys])


def test_version_tokens_drawn_together_look_like_single_ones() -> None:
    tokens = new_versions(1000)
    assert len(set(tokens)) == 1000
    assert all(len(t) == 16 and int(t, 16) >= 0 for t in tokens)
    assert new_versions(0) == []
    assert len(new_version()) == 16
