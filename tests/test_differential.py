"""Every backend gives the same answers (issue 13): one random program of operations, run on
memory, SQLite, Redis, PostgreSQL, the hybrid router and the mirror, every answer compared.

Hypothesis draws a program: keys and patterns from a hostile alphabet (glob metacharacters,
SQL wildcards and quotes, CR/LF, non-BMP and invisible characters, lone surrogates and NULs,
which must be refused, keys at the length limit and one byte over), values of every JSON kind
(64-bit int edges and beyond, ``-0.0``, ``5e-324``, ``1e23``, the largest float, Decimals,
unicode, empty containers, nesting at the limit and one over, NaN...), TTLs at the edges
(tiny, the longest accepted, just over it, 0, negative, non-finite, of the wrong type),
filters that confuse ``True``/``1``/``1.0``/``"1"``, bulk operations, increments, versioned
writes, updates, transactions, concurrent calls (coalesced into shared round trips), listings
with patterns and cursor pagination. Each step runs on every backend and every observable
result must be identical: the value and its Python types (float bits, dict key order, Decimal
spelling), or the error's exact type (always one of ours, unless the caller's own function
raised it). Every example ends by comparing everything each backend holds (keys, values,
TTLs), and the mirror's secondary against its primary. The only differences allowed are those
the READMEs document, each marked where it is handled (``README:`` comments).

Each backend is opened once for the module; each example works under a fresh key prefix
(itself full of metacharacters) and deletes what it wrote. ``DIFFERENTIAL_EXAMPLES`` sets the
number of examples (``nox -s differential`` runs a long campaign).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ad_buyer_storage import StorageError, UnsupportedOperationError
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.client.query import query
from ad_buyer_storage.composed import HybridBackend, Route
from ad_buyer_storage.contract import escape_glob
from ad_buyer_storage.contract.protocol import SupportsQuery
from ad_buyer_storage.domain.storage import Storage
from tests._support.differential import (
    AMOUNT,
    FILTERS,
    GLOB_ALPHABET,
    KEY_ALPHABET,
    LIMIT,
    NAMESPACES,
    PAD,
    RECORD,
    SUFFIX,
    TINY_TTLS,
    TTL,
    VALUE,
    Stacks,
    build_key,
    exact,
    lookalikes,
    open_stacks,
)

EXAMPLES = int(os.environ.get("DIFFERENTIAL_EXAMPLES", "200"))
#: Seconds two backends' answers to ttl() may differ by: the steps run on each backend in turn,
#: and Redis and PostgreSQL count expiry on their servers' clocks (README: "TTLs are
#: PEXPIRE/PTTL milliseconds on the server's clock", packages/ad_buyer_storage_redis/README.md;
#: "Expiry uses the **database server's clock**", packages/ad_buyer_storage_postgres/README.md).
TTL_TOLERANCE = 2.0
REFERENCE = "memory"  # the contract's reference implementation
NO_DEFAULT = "<no default>"
SET_MODES = ["plain", "plain", "plain", "keep_ttl", "if_known", "if_bogus"]


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


async def _async_wrap(value: Any) -> Any:
    await asyncio.sleep(0)
    return [value]


def _fails(value: Any) -> Any:
    raise LookupError("the caller's function failed")


#: Functions given to update(): deterministic, some refused (too deep) or failing (the caller's
#: own exception must come back unchanged).
UPDATERS: dict[str, Callable[[Any], Any]] = {
    "wrap": lambda v: [v],
    "record": lambda v: {"v": v, "active": True, "n": 1},
    "float": lambda v: 1e23,
    "add_one": lambda v: v + 1,  # TypeError (the caller's) on anything but a number
    "async_wrap": _async_wrap,
    "too_deep": lambda v: _nested(255),
    "fails": _fails,
}
#: Exceptions that are the caller's, not the library's: they must come back as they are.
CALLERS_OWN = {"TypeError", "LookupError"}


@st.composite
def programs(draw: st.DrawFn, listings_only: bool = False) -> list[tuple[Any, ...]]:
    """A list of operations; keys come from a small pool so that operations meet again. With
    *listings_only*, records then listings alone (select, list_deals, keys...)."""
    pool = draw(st.lists(st.text(alphabet=KEY_ALPHABET, max_size=4), min_size=1, max_size=4, unique=True))
    suffix = st.one_of(st.sampled_from(pool), st.sampled_from(pool), SUFFIX)
    key = st.tuples(st.sampled_from(NAMESPACES), suffix, PAD)
    keys = st.lists(key, max_size=4)
    record_key = st.tuples(st.sampled_from(["deal:", "deal:", *NAMESPACES]), st.sampled_from(pool), st.just(""))
    tail = st.one_of(
        st.text(alphabet=GLOB_ALPHABET, max_size=5),  # malformed ones included: refused everywhere
        st.sampled_from(pool).map(escape_glob),
        st.sampled_from(pool).map(lambda s: escape_glob(s[:1]) + "*"),
        st.just("*"),
    )
    pattern = st.one_of(
        st.tuples(st.sampled_from((*NAMESPACES, None)), tail),  # None: across namespaces ("*" + ...)
        st.tuples(st.just("raw"), st.sampled_from(["", "[", "\\", "\ud800*", "*\x00", "a[b"])),
    )
    update_default = st.one_of(st.just(NO_DEFAULT), VALUE)
    # Records first (what filters and listings look at), then the operations; filters are often
    # a record's field with a lookalike value (True for 1, 0 for False, 1e16 for 10**16...).
    records = draw(st.lists(st.tuples(st.just("set"), record_key, RECORD, st.none(), st.just("plain")), max_size=6))
    fields = [(f, v) for *_, record, _, _ in records for f, v in record.items()]
    filters = FILTERS
    if fields:
        near = st.sampled_from(fields).flatmap(lambda fv: st.sampled_from(lookalikes(fv[1])).map(lambda v: {fv[0]: v}))
        filters = st.one_of(near, near, FILTERS)
    op = st.one_of(
        *[st.tuples(st.just("set"), key, VALUE, TTL, st.sampled_from(SET_MODES))] * 5,
        st.tuples(st.just("set"), record_key, RECORD, st.none(), st.just("plain")),
        st.tuples(st.just("set_if_absent"), key, VALUE, TTL),
        st.tuples(st.just("get"), key, st.one_of(st.none(), st.none(), st.just(True), TTL)),
        st.tuples(st.just("get_versioned"), key),
        st.tuples(st.just("exists"), key),
        st.tuples(st.just("delete"), key),
        st.tuples(st.just("incr"), key, AMOUNT, TTL),
        st.tuples(st.just("update"), key, st.sampled_from(sorted(UPDATERS)), update_default, TTL),
        st.tuples(st.just("get_many"), keys),
        st.tuples(st.just("set_many"), st.lists(st.tuples(key, VALUE), max_size=4), TTL),
        st.tuples(st.just("delete_many"), keys),
        st.tuples(st.sampled_from(["keys", "count", "scan", "delete_pattern"]), pattern),
        st.tuples(st.just("ttl"), key),
        st.tuples(st.just("expire"), key, TTL),
        st.tuples(st.just("persist"), key),
        *[
            st.tuples(
                st.just("select"), st.sampled_from(["deal:", *NAMESPACES]), filters, st.one_of(st.none(), key), LIMIT
            )
        ]
        * 2,
        *[st.tuples(st.just("list_deals"), filters, LIMIT)] * 3,
        st.tuples(st.just("get_deal"), suffix),
        st.tuples(st.just("update_deal"), suffix, st.sampled_from(sorted(UPDATERS))),
        st.tuples(
            st.just("transaction"),
            st.sampled_from(NAMESPACES),  # one namespace: one route of the hybrid router
            st.lists(
                st.tuples(suffix, st.sampled_from(["get", "get", "set", "delete", "incr", "require_absent"]), VALUE),
                min_size=1,
                max_size=4,
            ).map(lambda steps: [(sfx, act, 1 if act == "incr" else arg) for sfx, act, arg in steps]),
            st.booleans(),
        ),
        st.tuples(
            st.just("concurrently"),
            st.lists(
                st.one_of(
                    st.tuples(st.just("set"), key, VALUE, TTL, st.just("plain")),
                    st.tuples(st.just("get"), key, st.none()),
                    st.tuples(st.just("incr"), key, AMOUNT, TTL),
                    st.tuples(st.just("set_if_absent"), key, VALUE, TTL),
                ),
                min_size=2,
                max_size=5,
                unique_by=lambda sub: sub[1][:2],  # distinct keys: the order of racing calls is free
            ),
        ),
    )
    if listings_only:
        listing = st.one_of(
            st.tuples(
                st.just("select"), st.sampled_from(["deal:", *NAMESPACES]), filters, st.one_of(st.none(), key), LIMIT
            ),
            st.tuples(st.just("list_deals"), filters, LIMIT),
            st.tuples(st.sampled_from(["keys", "scan", "count"]), pattern),
        )
        return records + draw(st.lists(listing, min_size=1, max_size=6))
    return records + draw(st.lists(op, min_size=1, max_size=20))


class Runner:
    """Runs one program on one backend under one example's prefix; returns comparable answers."""

    def __init__(self, name: str, storage: Storage, example: str) -> None:
        self.name, self.storage, self.example = name, storage, example
        self.known: dict[str, str] = {}  # key -> the last version this backend gave us

    def key(self, ref: tuple[str, str, str]) -> str:
        return build_key(ref[0], self.example, ref[1], ref[2])

    def pattern(self, spec: tuple[str | None, str]) -> str:
        where, tail = spec
        if where == "raw":
            return tail
        if where is None:
            return "*" + escape_glob(self.example) + tail
        return escape_glob(where + self.example) + tail

    async def run(self, op: tuple[Any, ...]) -> Any:
        s = self.storage
        name = op[0]
        if name == "set":
            _, ref, value, ttl, mode = op
            key = self.key(ref)
            if mode == "keep_ttl":
                version = await s.set(key, value, ttl, keep_ttl=True)
            elif mode in ("if_known", "if_bogus"):
                expected = self.known.get(key, "0" * 16) if mode == "if_known" else "bogus"
                version = await s.set(key, value, ttl, if_version=expected)
            else:
                version = await s.set(key, value, ttl)
            self.known[key] = version
            # README: "Versions are random 64-bit tokens chosen by core on every write": only
            # their type is comparable.
            return type(version).__name__
        if name == "set_if_absent":
            return await s.set_if_absent(self.key(op[1]), op[2], op[3])
        if name == "get":
            return exact(await s.get(self.key(op[1]), "<missing>", refresh_ttl=op[2]))
        if name == "get_versioned":
            key = self.key(op[1])
            found = await s.get_versioned(key)
            if found is None:
                return None
            self.known[key] = found.version
            return ("Versioned", exact(found.value), type(found.version).__name__)
        if name == "exists":
            return await s.exists(self.key(op[1]))
        if name == "delete":
            return await s.delete(self.key(op[1]))
        if name == "incr":
            return exact(await s.incr(self.key(op[1]), op[2], ttl=op[3]))
        if name == "update":
            _, ref, fn, default, ttl = op
            if default == NO_DEFAULT:
                return exact(await s.update(self.key(ref), UPDATERS[fn], ttl=ttl))
            return exact(await s.update(self.key(ref), UPDATERS[fn], default=default, ttl=ttl))
        if name == "get_many":
            return exact(await s.get_many([self.key(ref) for ref in op[1]]))
        if name == "set_many":
            return await s.set_many([(self.key(ref), value) for ref, value in op[1]], ttl=op[2])
        if name == "delete_many":
            return await s.delete_many([self.key(ref) for ref in op[1]])
        if name == "keys":
            return await s.keys(self.pattern(op[1]))
        if name == "count":
            return await s.count(self.pattern(op[1]))
        if name == "scan":
            # README: "`scan()` streams in no particular order": compared as a multiset.
            return sorted([key async for key in s.scan(self.pattern(op[1]), batch_size=2)])
        if name == "delete_pattern":
            return await s.delete_pattern(self.pattern(op[1]))
        if name == "ttl":
            return ("ttl", await s.ttl(self.key(op[1])))
        if name == "expire":
            return await s.expire(self.key(op[1]), op[2])
        if name == "persist":
            return await s.persist(self.key(op[1]))
        if name == "select":
            _, namespace, filters, after, limit = op
            selection = await s.select(
                namespace + self.example, filters, after=None if after is None else self.key(after), limit=limit
            )
            return ("Selection", [(k, exact(v)) for k, v in selection.rows], selection.last_key)
        if name == "list_deals":
            _, filters, limit = op
            pages: list[Any] = []
            cursor: str | None = None
            while len(pages) < 30:  # every page, by the cursor each gives
                page = await s.list_deals(filters, limit, cursor=cursor)
                pages.append(exact(page))
                cursor = page.next_cursor
                if cursor is None or limit == 0:
                    break
            return pages
        if name == "get_deal":
            return exact(await s.get_deal(self.example + op[1]))
        if name == "update_deal":
            return exact(await s.update_deal(self.example + op[1], UPDATERS[op[2]]))
        if name == "transaction":
            _, namespace, steps, abort = op
            seen: list[Any] = []
            async with s.transaction() as tx:
                for suffix, action, argument in steps:
                    key = build_key(namespace, self.example, suffix, "")
                    if action == "get":
                        seen.append(exact(await tx.get(key, "<missing>")))
                    elif action == "set":
                        tx.set(key, argument)
                    elif action == "delete":
                        tx.delete(key)
                    elif action == "incr":
                        seen.append(exact(await tx.incr(key, argument)))
                    else:
                        tx.require_absent(key)
                if abort:
                    raise LookupError("the caller's block failed: nothing is applied")
            return seen
        if name == "dump":  # everything the example left, as every backend must hold it
            keys = await s.keys()
            return ("dump", keys, exact(await s.get_many(keys)), [await s.ttl(key) for key in keys])
        if name == "concurrently":
            return await asyncio.gather(*(outcome(self.run(sub)) for sub in op[1]))
        raise AssertionError(f"unknown operation {name!r}")


async def versions(runners: dict[str, Runner], ref: tuple[str, str, str]) -> dict[str, str | None]:
    """The version of the key *ref* names on each backend (None: absent, or not a valid key)."""
    found: dict[str, str | None] = {}
    for name, runner in runners.items():
        try:
            versioned = await runner.storage.get_versioned(runner.key(ref))
        except StorageError:
            versioned = None
        found[name] = None if versioned is None else versioned.version
    return found


async def outcome(awaitable: Awaitable[Any]) -> Any:
    """("ok", answer) or ("raised", the exception's type, whether it is one of ours)."""
    try:
        return ("ok", await awaitable)
    except Exception as exc:  # every failure is an answer to compare
        return ("raised", type(exc).__name__, isinstance(exc, StorageError))


def same(a: Any, b: Any) -> bool:
    """Equal (exact forms compare types and float bits), except ttl() answers, which may differ
    by TTL_TOLERANCE seconds."""
    if a == b:
        return True
    if not (a[0] == b[0] == "ok" and isinstance(a[1], tuple) and isinstance(b[1], tuple) and a[1] and b[1]):
        return False
    if a[1][0] == b[1][0] == "dump":
        return a[1][:3] == b[1][:3] and all(
            same(("ok", ("ttl", x)), ("ok", ("ttl", y))) for x, y in zip(a[1][3], b[1][3], strict=True)
        )
    if a[1][0] == b[1][0] == "ttl":
        x, y = a[1][1], b[1][1]
        return x is not None and y is not None and abs(x - y) <= TTL_TOLERANCE
    return False


def untyped(answer: Any, op: tuple[Any, ...]) -> bool:
    """Whether *answer* is (or holds) an exception that is neither ours nor the caller's own."""
    if answer[0] == "raised":
        return not answer[2] and not (op[0] in ("update", "update_deal", "transaction") and answer[1] in CALLERS_OWN)
    if op[0] == "concurrently":
        return any(untyped(sub_answer, sub_op) for sub_answer, sub_op in zip(answer[1], op[1], strict=True))
    return False


def has_tiny_ttl(op: Any) -> bool:
    if isinstance(op, (tuple, list)):
        return any(has_tiny_ttl(part) for part in op)
    return type(op) in (float, timedelta) and op in TINY_TTLS


async def run_program(stacks: Stacks, program: list[tuple[Any, ...]]) -> None:
    example = f"{uuid.uuid4().hex[:8]}%_[*?\\]:"  # a fresh prefix that breaks any unescaped match
    runners = {name: Runner(name, storage, example) for name, storage in stacks.storages.items()}
    try:
        for step, op in enumerate([*program, ("dump",)]):
            expiry_change = op[0] in ("expire", "persist") or (op[0] == "get" and op[2] not in (None, False))
            if expiry_change:
                before = await versions(runners, op[1])
            answers = dict(
                zip(runners, await asyncio.gather(*(outcome(r.run(op)) for r in runners.values())), strict=True)
            )
            if has_tiny_ttl(op):
                await asyncio.sleep(0.02)  # expired everywhere before the next step looks
            if op[0] == "get" and op[2] is True and answers[REFERENCE][0] == "ok":
                # README: "a backend without `SupportsRefresh` renews to a number as a read
                # then an `expire`, and refuses `True`"; the mirror does not offer it ("through
                # the mirror, which does not offer it", core README, "Sliding TTLs"). Refused
                # after the checks of its input, which every backend makes alike.
                mirror = answers.pop("mirror")
                assert mirror == ("raised", UnsupportedOperationError.__name__, True), mirror
            reference = answers[REFERENCE]
            # What the steps did, for --hypothesis-show-statistics.
            event(f"{op[0]}: {reference[1] if reference[0] == 'raised' else 'answered'}")
            if op[0] in ("select", "list_deals") and reference[0] == "ok" and op[1]:
                event(f"{op[0]} with filters found {'something' if 'dict' in repr(reference) else 'nothing'}")
            differing = {name: answer for name, answer in answers.items() if not same(answer, reference)}
            assert not differing, f"step {step} {op!r}:\n  {REFERENCE}: {reference!r}\n" + "\n".join(
                f"  {name}: {answer!r}" for name, answer in differing.items()
            )
            assert not untyped(reference, op), f"step {step} {op!r}: untyped error {reference!r}"
            if expiry_change:
                # README: "Changing an expiry through the mirror (`expire`, `persist`) gives the
                # key a new version ...; elsewhere it keeps its version" (README.md, "What the
                # mirror guarantees"); a sliding read through the mirror is a read then an
                # expire (core README, "Sliding TTLs"). Every other backend must have kept it.
                after = await versions(runners, op[1])
                for name, runner in runners.items():
                    if name != "mirror" and before[name] is not None and after[name] is not None:
                        assert after[name] == before[name], f"{name}: {op[0]} changed the version"
                    if (version := after[name]) is not None:
                        runner.known[runner.key(op[1])] = version
        await check_mirror_converged(stacks)
    finally:
        for storage in stacks.storages.values():
            await storage.delete_pattern("*")


async def check_mirror_converged(stacks: Stacks) -> None:
    """README ("What the mirror guarantees"): once writers stop, the secondary holds exactly the
    primary's keys, values and expiries."""
    mirror, secondary = stacks.storages["mirror"], stacks.mirror_secondary
    keys = await mirror.keys()
    assert await secondary.keys() == keys
    assert exact(await secondary.get_many(keys)) == exact(await mirror.get_many(keys))
    for key in keys:
        assert same(("ok", ("ttl", await secondary.ttl(key))), ("ok", ("ttl", await mirror.ttl(key)))), key


@pytest.fixture(scope="module")
def differential() -> Iterator[tuple[asyncio.AbstractEventLoop, Stacks]]:
    """Every backend, opened once for the module on one event loop; emptied and dropped after."""
    loop = asyncio.new_event_loop()
    stacks = open_stacks()
    try:
        loop.run_until_complete(stacks.connect())
        yield loop, stacks
    finally:
        try:
            loop.run_until_complete(stacks.close())
        finally:
            loop.close()
            stacks.drop()


# A failure is shrunk for up to 5 minutes (Hypothesis's own bound): the timeout leaves it room.
@pytest.mark.timeout(600 + EXAMPLES)
@settings(max_examples=max(1, EXAMPLES // 2), deadline=None, suppress_health_check=list(HealthCheck))
@given(program=programs(listings_only=True))
def test_filters_and_listings_give_the_same_answers(
    differential: tuple[asyncio.AbstractEventLoop, Stacks], program: list[tuple[Any, ...]]
) -> None:
    """Records with lookalike values (True and 1, 0 and False and None, 1e16 and 10**16...),
    then filtered, paged and pattern listings of them."""
    loop, stacks = differential
    loop.run_until_complete(run_program(stacks, program))


# A failure is shrunk for up to 5 minutes (Hypothesis's own bound): the timeout leaves it room.
@pytest.mark.timeout(600 + EXAMPLES)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=programs())
def test_every_backend_gives_the_same_answers(
    differential: tuple[asyncio.AbstractEventLoop, Stacks], program: list[tuple[Any, ...]]
) -> None:
    loop, stacks = differential
    loop.run_until_complete(run_program(stacks, program))


# -- what the program found, pinned (each failed before its fix) ----------------------------------


def test_select_with_limit_zero_returns_nothing_on_every_backend(
    differential: tuple[asyncio.AbstractEventLoop, Stacks],
) -> None:
    """A store without SupportsQuery (memory, Redis) used to return one record for limit=0."""
    loop, stacks = differential

    async def check(storage: Storage) -> None:
        prefix = f"deal:{uuid.uuid4().hex}:"
        try:
            await storage.set_many({prefix + "a": {"n": 1}, prefix + "b": {"n": 2}})
            assert await storage.select(prefix, limit=0) == ([], None)
            assert await storage.select(prefix, after=prefix + "a", limit=0) == ([], prefix + "a")
            # The last match fills the page and nothing follows it: no cursor to an empty page.
            assert await storage.select(prefix, {"n": 2}, limit=1) == ([(prefix + "b", {"n": 2})], None)
            assert await storage.select(prefix, limit=1) == ([(prefix + "a", {"n": 1})], prefix + "a")
        finally:
            await storage.delete_pattern(escape_glob(prefix) + "*")

    for storage in stacks.storages.values():
        loop.run_until_complete(check(storage))


def test_the_comparison_tells_apart_what_a_caller_can() -> None:
    """The suite is only as strict as same() and exact(): what they must never confuse."""
    confusable = [1, 1.0, True, "1", Decimal("1"), Decimal("1.0"), 0.0, -0.0, 5e-324, 0, False, None, [], {}]
    for x in confusable:
        for y in confusable:
            assert same(("ok", exact(x)), ("ok", exact(y))) == (type(x) is type(y) and repr(x) == repr(y)), (x, y)
    assert not same(("ok", exact({"a": 1, "b": 2})), ("ok", exact({"b": 2, "a": 1})))  # key order is kept
    assert not same(("ok", exact(10**16)), ("ok", exact(1e16)))
    assert not same(("raised", "InvalidKeyError", True), ("raised", "InvalidValueError", True))
    assert not same(("ok", None), ("raised", "InvalidKeyError", True))
    assert same(("ok", ("ttl", 3600.0)), ("ok", ("ttl", 3599.0)))
    assert not same(("ok", ("ttl", 3600.0)), ("ok", ("ttl", 3590.0)))
    assert not same(("ok", ("ttl", None)), ("ok", ("ttl", 3600.0)))
    assert not same(
        ("ok", ("dump", ["k"], exact({"k": 1}), [None])), ("ok", ("dump", ["k"], exact({"k": 1.0}), [None]))
    )
    assert untyped(("raised", "RecursionError", False), ("get_deal", "x"))
    assert not untyped(("raised", "LookupError", False), ("update", ("k:", "", ""), "fails", NO_DEFAULT, None))


def test_keys_whose_ttl_ran_out_during_the_write_leave_nothing_behind(
    differential: tuple[asyncio.AbstractEventLoop, Stacks],
) -> None:
    """Redis used to record a key's TTL after PEXPIRE: when the expiry had already passed (a
    1 ms TTL, a script slower than that), PEXPIRE deleted the key and the next HSET made it
    again with no expiry: a key listed for ever that get() calls missing and set_if_absent()
    finds present. One bulk write of many 1 ms keys makes the script outlast their TTL."""
    loop, stacks = differential

    async def check(name: str, storage: Storage) -> None:
        prefix = f"cache:{uuid.uuid4().hex}:"
        try:
            for round_ in range(6):  # each round loses the race on Redis with a good probability
                await storage.set_many({f"{prefix}{round_}:{i}": "x" * 500 for i in range(2000)}, ttl=0.001)
            await asyncio.sleep(0.05)
            left = await storage.keys(escape_glob(prefix) + "*")
            assert left == [], f"{name}: {len(left)} expired keys still listed, e.g. {left[:3]}"
            assert await storage.set_if_absent(prefix + "0", 1), name
            assert await storage.incr(prefix + "n", ttl=0.001) == 1, name
        finally:
            await storage.delete_pattern(escape_glob(prefix) + "*")

    for name, storage in stacks.storages.items():
        loop.run_until_complete(check(name, storage))


def test_read_only_transactions_see_one_state_on_every_backend(
    differential: tuple[asyncio.AbstractEventLoop, Stacks],
) -> None:
    """Issue 22: a read-only transaction was never checked, so its reads could straddle another
    commit (x + y == 101 where every committed state has 100) on every backend; and a block
    that raised on such a state surfaced its own error instead of conflicting."""
    loop, stacks = differential

    async def check(name: str, storage: Storage) -> None:
        p = f"k:{uuid.uuid4().hex}:"  # one namespace: one route of the hybrid router
        x, y = p + "x", p + "y"
        try:
            await storage.set_many({x: 50, y: 50})

            async def move() -> None:
                async with storage.transaction() as tx:
                    tx.set(x, await tx.get(x) - 1)
                    tx.set(y, await tx.get(y) + 1)

            async def straddled(raise_on_broken: bool) -> int:
                async with storage.transaction() as tx:
                    seen = await tx.get(x)
                    await move()
                    seen += await tx.get(y)
                    if raise_on_broken and seen != 100:
                        raise LookupError("the invariant looks broken")
                return int(seen)

            for raise_on_broken in (False, True):
                answer = await outcome(straddled(raise_on_broken))
                assert answer == ("raised", "TransactionConflictError", True), (name, raise_on_broken, answer)
            runs = 0

            async def look(tx: Any) -> int:
                nonlocal runs
                runs += 1
                seen = await tx.get(x)
                if runs == 1:
                    await move()
                return int(seen + await tx.get(y))

            assert await storage.transact(look) == 100, name
            assert runs == 2, (name, runs)
        finally:
            await storage.delete_many([x, y])

    for name, storage in stacks.storages.items():
        loop.run_until_complete(check(name, storage))


def test_paging_reaches_every_record_after_a_route_table_change(
    differential: tuple[asyncio.AbstractEventLoop, Stacks],
) -> None:
    """Issue 22: every key on one store, then ``deal:...vip:`` routed elsewhere before its rows
    moved: the router hid the stale rows after the store had filled the page, and the short page
    read as the end. Each backend of the suite serves as the old home, a memory store as the new
    route; the walk by cursor must give what the plain store gives, stale rows left out."""
    loop, stacks = differential

    async def check(name: str, storage: Storage) -> None:
        p = f"{uuid.uuid4().hex}:"
        old = {f"deal:{p}vip:{i:02}": {"n": i} for i in range(8)}
        live = {f"deal:{p}a": {"n": 100}, f"deal:{p}z1": {"n": 101}, f"deal:{p}z2": {"n": 102}}
        try:
            await storage.set_many({**old, **live})
            router = HybridBackend([Route("", storage.backend, name), Route(f"deal:{p}vip:", MemoryBackend(), "new")])
            for limit in (1, 2, 3, 5):  # the router's query, as Store.select pages it: short means the end
                rows: list[str] = []
                after: str | None = None
                for _ in range(20):
                    # The router has the query hook when a route has it; else core lists by scan.
                    querier = router if isinstance(router, SupportsQuery) else None
                    page = await query(router, querier, f"deal:{p}", [], after, limit)
                    rows += [key for key, _ in page]
                    if len(page) < limit:
                        break
                    after = page[-1][0]
                assert rows == sorted(live), (name, limit, rows)
        finally:
            await storage.delete_pattern("deal:" + escape_glob(p) + "*")

    for name, storage in stacks.storages.items():
        loop.run_until_complete(check(name, storage))


def test_nested_and_crossed_updates_give_the_same_answers_on_every_backend(
    differential: tuple[asyncio.AbstractEventLoop, Stacks],
) -> None:
    """Issue 22: update(A, f) where f updates B which updates A hung with combining on; every
    stack must now answer as coalesce=False does (A=101, B=2), and crossed nested updates of
    two tasks must both complete with nothing lost."""
    loop, stacks = differential

    async def run(storage: Storage) -> tuple[Any, ...]:
        p = f"n:{uuid.uuid4().hex}:"  # one namespace: one route of the hybrid router
        a, b, c, d = p + "a", p + "b", p + "c", p + "d"
        try:
            await storage.set_many({a: 0, b: 0, c: 0, d: 0})

            async def bump_a_once(value: int) -> int:
                if value == 0:
                    await storage.update(a, lambda v: v + 1)
                return value + 1

            async def via_b(value: int) -> int:
                await storage.update(b, bump_a_once)
                return value + 100

            nested = await outcome(asyncio.wait_for(storage.update(a, via_b), 20))
            both_inside = asyncio.Barrier(2)
            crossed: set[str] = set()

            def crossing(other: str, add: int) -> Any:
                async def fn(value: int) -> int:
                    if other not in crossed:
                        crossed.add(other)
                        await both_inside.wait()
                        await storage.update(other, lambda v: v + 1)
                    return value + add

                return fn

            cross = await outcome(
                asyncio.wait_for(
                    asyncio.gather(storage.update(c, crossing(d, 100)), storage.update(d, crossing(c, 10))), 20
                )
            )
            finals = await storage.get_many([a, b, c, d])
            return nested, cross[0], sorted(finals.items())
        finally:
            await storage.delete_many([a, b, c, d])

    answers = {name: loop.run_until_complete(run(storage)) for name, storage in stacks.storages.items()}
    for name, (nested, crossed_kind, finals) in answers.items():
        assert nested == ("ok", 101), (name, nested)
        assert crossed_kind == "ok", (name, crossed_kind)
        assert [v for _, v in finals] == [101, 2, 101, 11], (name, finals)


def test_pubsub_delivers_the_same_messages_in_order_on_every_backend_that_has_it(
    differential: tuple[asyncio.AbstractEventLoop, Stacks],
) -> None:
    """Every stack that claims PUBSUB for a channel delivers what was published after the
    subscription, in publishing order, as published (types included); the others refuse alike."""
    loop, stacks = differential
    sent: list[Any] = [1, 1.0, True, None, "1", [1, "a"], {"deal": "d1", "n": 2}, -0.0, 10**16, "é\u2028"]

    async def run(storage: Storage) -> Any:
        channel = f"pubsub:{uuid.uuid4().hex}"
        try:
            async with storage.subscribe(channel) as messages:
                for message in sent:
                    await storage.publish(channel, message)
                it = aiter(messages)
                return ("ok", [await asyncio.wait_for(anext(it), 10) for _ in sent])
        except Exception as exc:
            return ("raised", type(exc).__name__)

    answers = {name: loop.run_until_complete(run(storage)) for name, storage in stacks.storages.items()}
    delivered = {name: got for name, (kind, got) in answers.items() if kind == "ok"}
    assert {"memory", "redis"} <= set(delivered), answers
    for name, got in delivered.items():
        assert exact(got) == exact(sent), (name, got)
    refused = {got for kind, got in answers.values() if kind == "raised"}
    assert refused <= {"UnsupportedOperationError"}, answers
