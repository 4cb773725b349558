"""Atomics: the ATOMIC claim (set-if-absent, increments, versioned writes, update) or its refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any, TypeVar

from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.errors import (
    InvalidInputError,
    InvalidValueError,
    KeyNotFoundError,
    UnsupportedOperationError,
    VersionConflictError,
)

from ._base import ContractBase, also_uncoalesced, certifies, fails_with
from ._elapsed import Elapsed
from .harness import Subject

__all__ = ["AtomicContract", "unhung"]

T = TypeVar("T")


class AtomicContract(ContractBase):
    """Area ``atomic``: what ATOMIC promises under contention, or its refusal.

    The tests that contend on one key run twice (``also_uncoalesced``): through the store's
    coalescing and combining, and with them off, where concurrent calls reach the backend
    together and an increment or conditional write that reads, awaits, then writes shows."""

    @certifies("atomic", absent=Capability.ATOMIC)
    async def test_atomics_are_refused_when_not_claimed(self, subject: Subject) -> None:
        storage = subject.storage
        rule = "a backend that does not claim ATOMIC must refuse {} with UnsupportedOperationError"
        await fails_with(UnsupportedOperationError, storage.set_if_absent("k", 1), rule.format("set_if_absent()"))
        await fails_with(UnsupportedOperationError, storage.incr("k"), rule.format("incr()"))
        await fails_with(UnsupportedOperationError, storage.get_versioned("k"), rule.format("get_versioned()"))
        await fails_with(
            UnsupportedOperationError, storage.update("k", lambda v: v, default=0), rule.format("update()")
        )
        assert not await storage.exists("k"), "a refused atomic operation must store nothing"

    @certifies("atomic", Capability.ATOMIC)
    async def test_set_if_absent(self, subject: Subject) -> None:
        storage = subject.storage
        assert await storage.set_if_absent("lock:a", "me"), "set_if_absent() of a missing key must write and be True"
        assert not await storage.set_if_absent("lock:a", "you"), "set_if_absent() of a live key must be False"
        got = await storage.get("lock:a")
        assert got == "me", f"a set_if_absent() that returned False must not write: read {got!r}"

    @certifies("atomic", Capability.ATOMIC, Capability.EXPIRY)
    async def test_set_if_absent_takes_an_expired_key(self, subject: Subject) -> None:
        storage = subject.storage
        assert await storage.set_if_absent("lock:b", "me", ttl=0.2), "set_if_absent(ttl=) of a missing key must write"
        await subject.elapse(0.3)
        assert await storage.set_if_absent("lock:b", "you"), "an expired key must count as absent for set_if_absent()"
        got = await storage.get("lock:b")
        assert got == "you", f"set_if_absent() over an expired key must write its value: read {got!r}"
        assert await storage.ttl("lock:b") is None, "set_if_absent() without ttl must not inherit the expired TTL"

    @also_uncoalesced
    @certifies("atomic", Capability.ATOMIC)
    async def test_concurrent_set_if_absent_has_one_winner(self, subject: Subject) -> None:
        results = await asyncio.gather(*(subject.storage.set_if_absent("lock:x", i) for i in range(50)))
        assert sum(results) == 1, (
            f"50 concurrent set_if_absent() of one key had {sum(results)} winners: set-if-absent is not atomic "
            "(exactly one must win)"
        )
        got = await subject.storage.get("lock:x")
        assert got == results.index(True), f"the value stored must be the winner's: {got!r}"

    @certifies("atomic", Capability.ATOMIC)
    async def test_incr(self, subject: Subject) -> None:
        storage = subject.storage
        assert await storage.incr("counter") == 1, "incr() of a missing key must start from 0"
        assert await storage.incr("counter", 41) == 42, "incr(k, 41) must add 41 and return the sum"
        assert await storage.incr("counter", -50) == -8, "incr() must accept negative amounts"
        assert await storage.get("counter") == -8, "the counter's value must read back as a JSON integer"
        bad_amounts: list[Any] = [1.5, True, "1", None]
        for bad in bad_amounts:
            await fails_with(InvalidInputError, storage.incr("counter", bad), f"incr() must refuse the amount {bad!r}")
        await storage.set("text", "abc")
        await storage.set("float", 1.5)
        await storage.set("whole_float", 1e16)  # a float with an integral value is still a float
        await storage.set("doc", {"a": 1})
        for key in ("text", "float", "whole_float", "doc"):
            await fails_with(InvalidValueError, storage.incr(key), f"incr() of a non-integer value ({key}) must fail")
        assert await storage.get("text") == "abc", "a failed incr() must leave the value alone"
        await storage.set("max", 2**63 - 1)
        await fails_with(InvalidValueError, storage.incr("max"), "incr() past 2**63 - 1 must fail, never wrap or widen")
        assert await storage.get("max") == 2**63 - 1, "an overflowing incr() must write nothing"
        assert await storage.incr("max", -1) == 2**63 - 2, "incr() must work at the edge of 64 bits"

    @certifies("atomic", Capability.ATOMIC, Capability.EXPIRY)
    async def test_incr_ttl_applies_on_create_only(self, subject: Subject) -> None:
        storage = subject.storage
        elapsed = Elapsed.of(subject)
        assert await storage.incr("rate_limit:w", ttl=10) == 1, "incr(ttl=) of a missing key must create it at 1"
        assert await storage.incr("rate_limit:w", ttl=100) == 2, "incr(ttl=) of a live key must increment it"
        remaining = await storage.ttl("rate_limit:w")
        assert remaining is not None, "incr(ttl=) must give the key it creates that TTL"
        elapsed.check_ttl(remaining, 10, "incr(ttl=) must not change the TTL of a key that exists")
        await storage.set("plain", 5)
        assert await storage.incr("plain") == 6, "incr() must add to an existing integer"
        assert await storage.ttl("plain") is None, "incr() must not give a key an expiry"
        elapsed = Elapsed.of(subject)
        await storage.set("keeps", 1, ttl=30)
        await storage.incr("keeps")
        remaining = await storage.ttl("keeps")
        assert remaining is not None, "incr() must keep the key's expiry"
        elapsed.check_ttl(remaining, 30, "incr() must keep the key's remaining TTL")

    @also_uncoalesced
    @certifies("atomic", Capability.ATOMIC)
    async def test_100_concurrent_increments_end_at_100(self, subject: Subject) -> None:
        storage = subject.storage
        await asyncio.gather(*(storage.incr("deal:spend") for _ in range(100)))
        got = await storage.get("deal:spend")
        assert got == 100, (
            f"100 concurrent increments of one key gave {got!r}: increment is not atomic (none may be lost)"
        )
        await asyncio.gather(*(storage.incr("deal:money", Decimal("0.10")) for _ in range(100)))
        got = await storage.get("deal:money")
        assert got == "10.00", (
            f"100 concurrent incr(Decimal('0.10')) of one key gave {got!r}, not '10.00': a Decimal increment is a "
            "read then a version-checked write, so version-checked writes are not atomic"
        )

    @also_uncoalesced
    @certifies("atomic", Capability.ATOMIC)
    async def test_concurrent_versioned_writes_have_one_winner(self, subject: Subject) -> None:
        storage = subject.storage
        version = await storage.set("deal:race", {"n": 0})
        calls = (storage.set("deal:race", {"n": n}, if_version=version) for n in range(1, 21))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        winners = [n for n, outcome in enumerate(outcomes, 1) if isinstance(outcome, str)]
        assert len(winners) == 1, (
            f"20 concurrent set(if_version=) of one key had {len(winners)} winners: version-checked writes are not "
            "atomic (exactly one must win)"
        )
        losers = [outcome for outcome in outcomes if not isinstance(outcome, str)]
        assert all(isinstance(outcome, VersionConflictError) for outcome in losers), (
            f"the losers of concurrent set(if_version=) must each raise VersionConflictError: {losers!r}"
        )
        read = await storage.get_versioned("deal:race")
        expected = (winners[0], outcomes[winners[0] - 1])
        assert read is not None, "the key written by concurrent set(if_version=) must exist"
        assert (read.value["n"], read.version) == expected, (
            f"the winner's value and version must be stored, nothing of the losers': {read!r}, winner {expected}"
        )

    @certifies("atomic", Capability.ATOMIC)
    async def test_decimal_increments_are_exact(self, subject: Subject) -> None:
        storage = subject.storage
        for _ in range(3):
            await storage.incr("budget", Decimal("0.1"))
        got = await storage.get("budget")
        assert got == "0.3", f"Decimal increments must be exact: 0.1 three times is '0.3', not {got!r}"
        total = await storage.incr("budget", Decimal("1500.10"))
        assert total == Decimal("1500.40"), f"incr(Decimal) must return the exact Decimal sum: {total!r}"
        total = await storage.incr("budget", Decimal("12345678901234567890.000000001"))
        assert total == Decimal("12345678901234569390.400000001"), f"Decimal increments must not round: {total!r}"
        await storage.set("text", "abc")
        await fails_with(InvalidValueError, storage.incr("text", Decimal("1")), "incr(Decimal) of a text must fail")

    @certifies("atomic", Capability.ATOMIC)
    async def test_versioned_writes(self, subject: Subject) -> None:
        storage = subject.storage
        assert await storage.get_versioned("deal:v") is None, "get_versioned() of a missing key must be None"
        v1 = await storage.set("deal:v", {"spend": 1})
        read = await storage.get_versioned("deal:v")
        assert read is not None, "get_versioned() of a live key must not be None"
        assert read.value == {"spend": 1}, f"get_versioned() must give the value: {read.value!r}"
        assert read.version == v1, "get_versioned() must give the version token set() returned"
        v2 = await storage.set("deal:v", {"spend": 2}, if_version=v1)
        assert v2 != v1, "every write must mint a new version token"
        await fails_with(
            VersionConflictError,
            storage.set("deal:v", {"spend": 99}, if_version=v1),
            "set(if_version=) with a stale version must raise VersionConflictError",
        )
        got = await storage.get("deal:v")
        assert got == {"spend": 2}, f"a conflicting versioned write must write nothing: read {got!r}"
        await storage.delete("deal:v")
        await storage.set("deal:v", {"spend": 2})
        await fails_with(
            VersionConflictError,
            storage.set("deal:v", {"spend": 3}, if_version=v2),
            "a version token must not match a key deleted and written again, even with the same value",
        )
        await fails_with(
            VersionConflictError,
            storage.set("deal:none", 1, if_version=v1),
            "set(if_version=) of a missing key must raise VersionConflictError",
        )
        assert not await storage.exists("deal:none"), "a conflicting versioned write must not create the key"

    @certifies("atomic", Capability.ATOMIC)
    async def test_a_version_no_store_can_carry_fails_only_its_caller(self, subject: Subject) -> None:
        storage = subject.storage
        outcomes = await asyncio.gather(
            storage.set("deal:first", 0),  # in flight alone: the rest share the next batch
            storage.set("deal:a", 1),
            storage.set("deal:b", 1, if_version="\ud800"),
            storage.set("deal:c", 1, if_version="bad\x00token"),
            storage.set("deal:d", 1),
            return_exceptions=True,
        )
        for i in (2, 3):
            assert isinstance(outcomes[i], InvalidInputError), (
                f"set(if_version=) with a lone surrogate or a NUL must raise InvalidInputError: {outcomes[i]!r}"
            )
        got = await storage.get_many(["deal:a", "deal:d", "deal:b", "deal:c"])
        assert got == {"deal:a": 1, "deal:d": 1}, f"bad input must fail only its own caller: stored {got!r}"

    @certifies("atomic", Capability.ATOMIC, Capability.EXPIRY)
    async def test_versioned_write_keeps_ttl_when_asked(self, subject: Subject) -> None:
        storage = subject.storage
        elapsed = Elapsed.of(subject)
        v1 = await storage.set("session:s", 1, ttl=40)
        await storage.set("session:s", 2, keep_ttl=True, if_version=v1)
        remaining = await storage.ttl("session:s")
        assert remaining is not None, "set(keep_ttl=True, if_version=) must keep the key's expiry"
        elapsed.check_ttl(remaining, 40, "set(keep_ttl=True, if_version=) must keep the remaining TTL")

    @also_uncoalesced
    @certifies("atomic", Capability.ATOMIC)
    async def test_update_is_atomic_under_contention(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("deal:d1", {"deal_id": "d1", "spend": 0, "status": "active"})

        def add_one(deal: dict[str, Any]) -> dict[str, Any]:
            return {**deal, "spend": deal["spend"] + 1}

        await asyncio.gather(*(storage.update("deal:d1", add_one) for _ in range(100)))
        got = await storage.get("deal:d1")
        spend = None if got is None else got.get("spend")
        assert got == {"deal_id": "d1", "spend": 100, "status": "active"}, (
            f"100 concurrent update() of one key applied {spend!r}: version-checked writes are not atomic "
            f"(each update must apply once, none lost): {got!r}"
        )
        await fails_with(
            KeyNotFoundError, storage.update("missing", add_one), "update() of a missing key needs a default"
        )
        created = await storage.update("created", lambda v: [*v, 1], default=[])
        assert created == [1], f"update(default=) of a missing key must start from the default: {created!r}"

    @also_uncoalesced
    @certifies("atomic", Capability.ATOMIC)
    async def test_concurrent_updates_each_get_their_own_outcome(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("deal:own", {"n": 0})

        def bump(i: int) -> Any:
            def fn(deal: dict[str, Any]) -> dict[str, Any]:
                if i % 7 == 3:
                    raise ValueError(f"caller {i} refuses")
                return {"n": deal["n"] + 1}

            return fn

        calls = (storage.update("deal:own", bump(i)) for i in range(60))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        for i, outcome in enumerate(outcomes):
            if i % 7 == 3:
                own_error = isinstance(outcome, ValueError) and str(outcome) == f"caller {i} refuses"
                assert own_error, f"an update whose function raises must get its own error: caller {i} got {outcome!r}"
            else:
                assert isinstance(outcome, dict), f"caller {i}'s update must succeed whatever others do: {outcome!r}"
        seen = sorted(outcome["n"] for outcome in outcomes if isinstance(outcome, dict))
        applied = len(seen)
        assert seen == list(range(1, applied + 1)), (
            f"each concurrent update() must return the value its own function produced: {seen!r} (if two "
            "return the same, version-checked writes are not atomic)"
        )
        got = await storage.get("deal:own")
        assert got == {"n": applied}, (
            f"every successful update must apply once: {got!r} after {applied} (version-checked writes are not atomic)"
        )
        lists = await asyncio.gather(*(storage.update("list:new", lambda v: [*v, 0], default=[]) for _ in range(20)))
        assert sorted(len(v) for v in lists) == list(range(1, 21)), (
            f"concurrent update(default=) of a missing key: one creates it, each next one appends: {lists!r}"
        )
        with_default: dict[str, Any] = {"default": []}
        mixed = await asyncio.gather(
            *(storage.update("list:late", lambda v: [*v, 0], **(with_default if i % 2 else {})) for i in range(6)),
            return_exceptions=True,
        )
        for i, outcome in enumerate(mixed):
            if i % 2:
                assert isinstance(outcome, list), f"update(default=[]) must succeed: caller {i} got {outcome!r}"
            else:
                assert isinstance(outcome, (list, KeyNotFoundError)), (
                    f"update() without a default: the value or KeyNotFoundError, caller {i} got {outcome!r}"
                )
        created = [outcome for outcome in mixed if isinstance(outcome, list)]
        assert await storage.get("list:late") == [0] * len(created), "each successful update must apply once"

    @also_uncoalesced
    @certifies("atomic", Capability.ATOMIC)
    async def test_concurrent_increments_each_get_their_own_result(self, subject: Subject) -> None:
        storage = subject.storage
        results = await asyncio.gather(*(storage.incr("deal:clicks") for _ in range(100)))
        assert sorted(results) == list(range(1, 101)), (
            f"100 concurrent increments of one key returned {len(set(results))} distinct totals: increment is not "
            f"atomic (each must return its own running total, 1 to 100): {sorted(results)!r}"
        )
        top = 2**63 - 1
        await storage.set("deal:edge", top - 10)
        edge = await asyncio.gather(*(storage.incr("deal:edge", 4) for _ in range(3)), return_exceptions=True)
        values = sorted(v for v in edge if isinstance(v, int))
        errors = [e for e in edge if isinstance(e, BaseException)]
        right = values == [top - 6, top - 2] and len(errors) == 1 and isinstance(errors[0], InvalidValueError)
        assert right, f"of 3 concurrent incr(4) from 2**63-11, two must succeed and the third fail: {edge!r}"
        assert await storage.get("deal:edge") == top - 2, "an overflowing increment must write nothing"
        await storage.set("deal:mixed", top - 1)
        both = (storage.incr("deal:mixed", 5), storage.incr("deal:mixed", -5))
        mixed = await asyncio.gather(*both, return_exceptions=True)
        applied = [amount for amount, m in zip((5, -5), mixed, strict=True) if not isinstance(m, BaseException)]
        final = await storage.get("deal:mixed")
        assert final == top - 1 + sum(applied), f"exactly the increments that succeeded apply: {mixed!r}, {final!r}"
        assert -5 in applied, f"incr(-5) from 2**63-2 cannot overflow, whatever ran before it: {mixed!r}"
        await storage.set("deal:text", "abc")
        texts = await asyncio.gather(*(storage.incr("deal:text") for _ in range(5)), return_exceptions=True)
        assert all(isinstance(t, InvalidValueError) for t in texts), (
            f"concurrent incr() of a text must each raise InvalidValueError: {texts!r}"
        )

    @certifies("atomic", Capability.ATOMIC, Capability.EXPIRY)
    async def test_update_keeps_expiry(self, subject: Subject) -> None:
        storage = subject.storage
        elapsed = Elapsed.of(subject)
        await storage.set("session:u", {"n": 1}, ttl=30)
        await storage.update("session:u", lambda s: {"n": s["n"] + 1})
        remaining = await storage.ttl("session:u")
        assert remaining is not None, "update() must keep the key's expiry"
        elapsed.check_ttl(remaining, 30, "update() must keep the remaining TTL")

    @certifies("atomic", Capability.ATOMIC)
    async def test_an_update_inside_another_keys_update_never_waits_on_its_own_caller(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("nest:a", 0)
        await storage.set("nest:b", 0)

        async def bump_a_once(b: int) -> int:
            if b == 0:  # the update of nest:a that nest:a's own update is waiting for
                await storage.update("nest:a", lambda a: a + 1)
            return b + 1

        async def via_b(a: int) -> int:
            await storage.update("nest:b", bump_a_once)
            return a + 100

        got = await unhung(storage.update("nest:a", via_b), "update(A, f) where f updates B, which updates A")
        # As without combining: the inner update of nest:a wins, the outer one retries on it.
        assert got == 101, f"update(A) whose function updated A through B must retry and return 101: {got!r}"
        both = await storage.get_many(["nest:a", "nest:b"])
        assert both == {"nest:a": 101, "nest:b": 2}, f"each update must apply once per successful run: {both!r}"

    @certifies("atomic", Capability.ATOMIC)
    async def test_crossed_nested_updates_of_two_tasks_both_complete(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("cross:a", 0)
        await storage.set("cross:b", 0)
        both_inside = asyncio.Barrier(2)
        done: set[str] = set()

        def crossing(other: str, add: int) -> Any:
            async def fn(value: int) -> int:
                if other not in done:  # each task's first run: both inside their update, then cross
                    done.add(other)
                    await both_inside.wait()
                    await storage.update(other, lambda v: v + 1)
                return value + add

            return fn

        outcomes = await unhung(
            asyncio.gather(
                storage.update("cross:a", crossing("cross:b", 100)),
                storage.update("cross:b", crossing("cross:a", 10)),
            ),
            "update(A) whose function updates B, while update(B) whose function updates A",
        )
        # Each inner update lands before or after the other task's write; none is lost.
        assert outcomes[0] in (100, 101), f"update(A) returns what its last run produced: {outcomes!r}"
        assert outcomes[1] in (10, 11), f"update(B) returns what its last run produced: {outcomes!r}"
        both = await storage.get_many(["cross:a", "cross:b"])
        assert both == {"cross:a": 101, "cross:b": 11}, f"each update must apply once per successful run: {both!r}"

    @certifies("atomic", Capability.ATOMIC)
    async def test_increments_inside_an_update_of_the_same_key_do_not_wait_on_it(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("inc:n", 0)
        ran: list[int] = []

        async def count_then_add(n: int | str) -> int:
            if not ran:
                ran.append(1)
                await storage.incr("inc:n", 5)
                await storage.incr("inc:n", Decimal(1))  # an update of inc:n inside its own update
            return int(n) + 100

        got = await unhung(storage.update("inc:n", count_then_add), "incr(A) inside update(A)")
        assert got == 106, f"update(A) whose function incremented A must retry over it: {got!r}"


async def unhung(call: Awaitable[T], what: str, seconds: float = 10.0) -> T:
    """Await *call*; fail (rather than hang the run) if it never returns: the rule is that no call
    waits forever on the library's own bookkeeping. *seconds* only bounds a hang, far above any
    real run time."""
    try:
        return await asyncio.wait_for(call, seconds)
    except TimeoutError:
        raise AssertionError(f"{what}: the call never returned (it waits on itself)") from None
