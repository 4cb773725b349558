"""Transactions: the TRANSACTIONS claim (several keys change together or not at all) or its refusal."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, TypeGuard

import pytest

from ad_buyer_storage.client.transaction import MAX_TRANSACTION_WRITES, Transaction
from ad_buyer_storage.contract.protocol import Capability, SupportsTurns
from ad_buyer_storage.errors import (
    BudgetExceededError,
    InvalidInputError,
    InvalidValueError,
    LifecycleError,
    TransactionConflictError,
    TransactionTooLargeError,
    UnsupportedOperationError,
    VersionConflictError,
)

from ._base import ContractBase, also_uncoalesced, certifies, fails_with
from ._booking import book
from ._child import book_in_processes
from ._elapsed import Elapsed
from .atomic import unhung
from .harness import Subject

__all__ = ["TransactionsContract"]


class _Abort(Exception):
    pass


class TransactionsContract(ContractBase):
    """Area ``transactions``: ``Store.transaction()`` commits all or nothing, and only if
    nothing it read changed; bookings (an order and a campaign's spend in one transaction)
    never overspend, from many tasks or processes."""

    @certifies("transactions", absent=Capability.TRANSACTIONS)
    async def test_transactions_are_refused_when_not_claimed(self, subject: Subject) -> None:
        storage = subject.storage

        async def write_two() -> None:
            async with storage.transaction() as tx:
                tx.set("deal:t1", 1)
                tx.set("deal:t2", 2)

        await fails_with(
            UnsupportedOperationError, write_two(), "a backend without TRANSACTIONS must refuse transaction()"
        )
        assert not await storage.exists("deal:t1"), "a refused transaction must store nothing"

    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_commit_applies_every_write_and_delete(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("deal:gone", "old")
        async with storage.transaction() as tx:
            tx.set("deal:a", {"n": 1})
            tx.set("deal:b", [1, 2])
            tx.delete("deal:gone")
            tx.delete("deal:never")  # deleting a missing key is not a conflict
        got = await storage.get_many(["deal:a", "deal:b", "deal:gone"])
        assert got == {"deal:a": {"n": 1}, "deal:b": [1, 2]}, f"a commit must apply every write and delete: {got}"
        for key in ("deal:a", "deal:b"):
            read = await storage.get_versioned(key) if subject.claims(Capability.ATOMIC) else None
            if read is not None:
                assert read.version == tx.versions[key], f"tx.versions must hold the version {key!r} now has"

    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_reads_see_the_transactions_own_writes(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("deal:mine", "stored")
        async with storage.transaction() as tx:
            assert await tx.get("deal:mine") == "stored", "a transaction must read the store's value"
            tx.set("deal:mine", "staged")
            assert await tx.get("deal:mine") == "staged", "a transaction must read its own staged write"
            tx.delete("deal:mine")
            assert await tx.get("deal:mine", "gone") == "gone", "a transaction must see its own staged delete"
            assert not await tx.exists("deal:mine"), "exists() in a transaction must see its own delete"
            tx.set("deal:other", 7)
            assert await tx.get_many(["deal:mine", "deal:other"]) == {"deal:other": 7}, (
                "get_many() in a transaction must see its own writes and deletes"
            )
            assert await storage.get("deal:other") is None, "staged writes must be invisible before the commit"
        assert await storage.get("deal:mine") is None, "the staged delete must be applied at the commit"

    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_an_exception_applies_nothing(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("deal:keep", "before")
        tx: Transaction | None = None

        async def abort() -> None:
            nonlocal tx
            async with storage.transaction() as tx:
                tx.set("deal:keep", "after")
                tx.set("deal:new", 1)
                raise _Abort

        await fails_with(_Abort, abort(), "an exception inside the block must leave it")
        assert tx is not None, "transaction() must give the block a transaction"
        assert await storage.get("deal:keep") == "before", "an exception leaving the block must apply nothing"
        assert not await storage.exists("deal:new"), "an exception leaving the block must create nothing"
        assert not tx.is_open, "a transaction ended by an exception is over"
        with pytest.raises(LifecycleError):
            tx.set("deal:late", 1)

    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_a_changed_read_fails_the_commit_and_applies_nothing(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("campaign:c", {"spent": 0})

        async def interleaved(interfere: Any) -> None:
            async with storage.transaction() as tx:
                campaign = await tx.get("campaign:c")
                await tx.get("order:absent")  # absent when read: must still be absent at the commit
                await interfere()
                tx.set("campaign:c", {"spent": campaign["spent"] + 10})
                tx.set("order:o1", {"amount": 10})

        async def overwrite() -> None:
            await storage.set("campaign:c", {"spent": 5})

        await fails_with(TransactionConflictError, interleaved(overwrite), "a read key written since must conflict")
        assert await storage.get("campaign:c") == {"spent": 5}, "a conflicting commit must write nothing"
        assert not await storage.exists("order:o1"), "a conflicting commit must create nothing"

        async def create() -> None:
            await storage.set("order:absent", "someone")

        await fails_with(
            TransactionConflictError, interleaved(create), "a key read absent, created since, must conflict"
        )
        assert await storage.get("campaign:c") == {"spent": 5}, "a conflicting commit must write nothing"

        await storage.delete("order:absent")

        async def recreate_same_value() -> None:
            await storage.delete("campaign:c")
            await storage.set("campaign:c", {"spent": 5})

        await fails_with(
            TransactionConflictError,
            interleaved(recreate_same_value),
            "a key deleted and written again with the same value since it was read must conflict (no ABA)",
        )
        assert not await storage.exists("order:o1"), "a conflicting commit must create nothing"

        async def delete() -> None:
            await storage.delete("campaign:c")

        await storage.set("campaign:c", {"spent": 5})
        await fails_with(TransactionConflictError, interleaved(delete), "a read key deleted since must conflict")
        assert not await storage.exists("campaign:c"), "a conflicting commit must not bring a deleted key back"

    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_required_versions_and_absence(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("deal:r", 1)
        async with storage.transaction() as tx:
            tx.require_absent("deal:free")
            tx.set("deal:free", "taken")
        assert await storage.get("deal:free") == "taken", "require_absent() of an absent key must commit"

        async def take_again() -> None:
            async with storage.transaction() as tx:
                tx.require_absent("deal:free")
                tx.set("deal:free", "again")

        await fails_with(TransactionConflictError, take_again(), "require_absent() of a live key must conflict")
        assert await storage.get("deal:free") == "taken", "a conflicting commit must write nothing"
        if subject.claims(Capability.ATOMIC):
            read = await storage.get_versioned("deal:r")
            assert read is not None, "get_versioned() of a live key must not be None"
            async with storage.transaction() as tx:
                tx.require_version("deal:r", read.version)
                tx.set("deal:r", 2)

            async def stale() -> None:
                async with storage.transaction() as tx:
                    tx.require_version("deal:r", read.version)
                    tx.set("deal:r", 3)

            await fails_with(TransactionConflictError, stale(), "require_version() of a stale version must conflict")
            assert await storage.get("deal:r") == 2, "a conflicting commit must write nothing"

    @also_uncoalesced
    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_concurrent_transactions_are_serializable(self, subject: Subject) -> None:
        storage = subject.storage
        accounts = [f"account:{i}" for i in range(4)]
        await storage.set_many({key: 100 for key in accounts})

        async def move(step: int) -> None:
            source, target = accounts[step % 4], accounts[(step * 3 + 1) % 4]
            if source == target:
                target = accounts[(step + 1) % 4]

            async def transfer(tx: Transaction) -> None:
                balances = await tx.get_many([source, target])
                tx.set(source, balances[source] - 7)
                tx.set(target, balances[target] + 7)

            await storage.transact(transfer, attempts=1000)

        await asyncio.gather(*(move(step) for step in range(40)))
        balances = await storage.get_many(accounts)
        assert sum(balances.values()) == 400, (
            f"40 concurrent transfers gave a total of {sum(balances.values())}, not 400: commits are not atomic "
            f"(a commit's checks and writes must be one step): {balances}"
        )
        counts = await asyncio.gather(*(storage.transact(lambda tx: tx.incr("counter:tx"), attempts=1000)
                                        for _ in range(30)))  # fmt: skip
        assert sorted(counts) == list(range(1, 31)), (
            f"30 concurrent tx.incr() must each see their own value: commits are not atomic: {counts}"
        )
        total = await storage.get("counter:tx")
        assert total == 30, f"30 concurrent tx.incr() gave {total!r}, not 30: commits are not atomic"

    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_a_read_only_transaction_sees_one_state_or_conflicts(self, subject: Subject) -> None:
        storage = subject.storage  # x + y == 100 in every committed state; a move keeps it
        await storage.set_many({"account:x": 50, "account:y": 50})

        async def move() -> None:
            async with storage.transaction() as tx:
                x, y = await tx.get("account:x"), await tx.get("account:y")
                tx.set("account:x", x - 1)
                tx.set("account:y", y + 1)

        async def straddled() -> int:
            async with storage.transaction() as tx:
                x = await tx.get("account:x")
                await move()  # another commit between the two reads
                y = await tx.get("account:y")
            return int(x + y)

        await fails_with(
            TransactionConflictError,
            straddled(),
            "a read-only transaction whose reads straddled another commit must conflict (they saw no one state)",
        )
        runs = 0

        async def look(tx: Transaction) -> int:
            nonlocal runs
            runs += 1
            x = await tx.get("account:x")
            if runs == 1:
                await move()
            return int(x + (await tx.get_many(["account:y"]))["account:y"])

        assert await storage.transact(look) == 100, "transact() of a read-only body must return a consistent read"
        assert runs == 2, f"transact() must rerun a read-only body whose reads conflicted: ran {runs} times"

        # Moves racing looks: every look that returns saw one state.
        async def move_in(tx: Transaction) -> None:
            x, y = await tx.get("account:x"), await tx.get("account:y")
            tx.set("account:x", x - 1)
            tx.set("account:y", y + 1)

        async def mover() -> None:
            for _ in range(20):
                await storage.transact(move_in, attempts=1000)
                await asyncio.sleep(0)

        async def one_look(tx: Transaction) -> int:
            x = await tx.get("account:x")
            await asyncio.sleep(0)
            return int(x + await tx.get("account:y"))

        async def looker() -> list[int]:
            return [await storage.transact(one_look, attempts=1000) for _ in range(20)]

        _, seen = await asyncio.gather(mover(), looker())
        assert set(seen) == {100}, f"read-only transactions racing moves must each see one state: {seen}"

    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_a_body_that_raised_on_a_state_that_never_was_conflicts(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set_many({"account:x": 50, "account:y": 50})

        class _Broken(Exception):
            pass

        async def check(tx: Transaction, interfere: bool) -> None:
            x = await tx.get("account:x")
            if interfere:
                async with storage.transaction() as other:
                    other.set("account:x", x - 1)
                    other.set("account:y", await other.get("account:y") + 1)
            if x + await tx.get("account:y") != 100:
                raise _Broken("the invariant looks broken")
            tx.set("account:seen", True)

        async def straddled() -> None:
            async with storage.transaction() as tx:
                await check(tx, True)

        await fails_with(
            TransactionConflictError,
            straddled(),
            "a block that raised after its reads straddled another commit must conflict, not raise its own error",
        )
        runs = 0

        async def retried(tx: Transaction) -> None:
            nonlocal runs
            runs += 1
            await check(tx, runs == 1)

        await storage.transact(retried)
        assert runs == 2, f"transact() must rerun a body that raised on reads that conflicted: ran {runs} times"
        assert await storage.get("account:seen") is True, "the rerun must commit"

        async def genuine() -> None:
            async with storage.transaction() as tx:
                await tx.get("account:x")
                await tx.get("account:y")
                raise _Abort

        await fails_with(_Abort, genuine(), "a block that raised on reads that still hold must raise its own error")
        assert await storage.get_many(["account:x", "account:y"]) == {"account:x": 48, "account:y": 52}, (
            "each interfering move must have committed (two of them)"
        )

    @certifies("transactions", Capability.TRANSACTIONS, Capability.EXPIRY)
    async def test_expiry_inside_transactions(self, subject: Subject) -> None:
        storage = subject.storage  # keys of one keyspace: behind a router, one route serves them all
        kept = Elapsed.of(subject)
        await storage.set("deal:ttl_kept", 1, ttl=40)
        written = Elapsed.of(subject)
        async with storage.transaction() as tx:
            tx.set("deal:ttl_new", "x", ttl=30)
            tx.set("deal:ttl_kept", 2, keep_ttl=True)
            await tx.incr("deal:ttl_counter", ttl=20)
        remaining = {
            key: await storage.ttl(key) or 0.0 for key in ("deal:ttl_new", "deal:ttl_kept", "deal:ttl_counter")
        }
        written.check_ttl(remaining["deal:ttl_new"], 30, f"tx.set(ttl=) must give the key that TTL: {remaining}")
        kept.check_ttl(
            remaining["deal:ttl_kept"], 40, f"tx.set(keep_ttl=True) must keep the remaining TTL: {remaining}"
        )
        written.check_ttl(
            remaining["deal:ttl_counter"], 20, f"tx.incr(ttl=) must give the key it creates that TTL: {remaining}"
        )

        async def read_then_expire(ttl: float) -> bool:
            """Read a key live, let it expire, commit; False if a slow machine outlasted its TTL before the read."""
            elapsed = Elapsed.of(subject)
            await storage.set("deal:ttl_brief", "v", ttl=ttl)
            async with storage.transaction() as tx:
                if await tx.get("deal:ttl_brief") is None:
                    passed = elapsed.seconds()
                    assert passed >= ttl - Elapsed.ROUNDING, f"a key {passed:.3f} s into its {ttl} s TTL must be live"
                    return False
                await subject.elapse(ttl + 0.1)
                tx.set("deal:ttl_other", 1)
            return True

        for ttl in (0.2, 1.0, 5.0):  # a longer TTL only when the machine was slower than the last one
            try:
                read_live = await read_then_expire(ttl)
            except TransactionConflictError:
                break
            assert not read_live, "a key read live that expired before the commit must conflict"
        else:
            raise AssertionError("the machine outlasted a 0.2, a 1 and a 5 s TTL between a write and the next read")
        assert not await storage.exists("deal:ttl_other"), "a conflicting commit must write nothing"
        await storage.set("deal:ttl_leftover", "v", ttl=0.2)
        await subject.elapse(0.3)
        async with storage.transaction() as tx:
            assert await tx.get("deal:ttl_leftover") is None, "an expired key must read as absent in a transaction"
            tx.set("deal:ttl_leftover", "new")
        assert await storage.get("deal:ttl_leftover") == "new", "a key read absent because expired must commit"
        assert await storage.ttl("deal:ttl_leftover") is None, "a write without ttl must not inherit the expired TTL"

    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_bad_input_is_refused_at_the_call(self, subject: Subject) -> None:
        storage = subject.storage
        async with storage.transaction() as tx:
            with pytest.raises(InvalidValueError):
                tx.set("deal:nan", float("nan"))
            with pytest.raises(InvalidInputError):
                tx.set("", 1)
            tx.set("deal:fine", 1)
        assert await storage.get_many(["deal:nan", "deal:fine"]) == {"deal:fine": 1}, (
            "a refused tx.set() must stage nothing, and the rest must commit"
        )

        async def too_large() -> None:
            async with storage.transaction() as tx:
                for i in range(MAX_TRANSACTION_WRITES + 1):
                    tx.set(f"deal:big{i}", i)

        await fails_with(
            TransactionTooLargeError, too_large(), f"more than {MAX_TRANSACTION_WRITES} writes must be refused"
        )
        assert not await storage.exists("deal:big0"), "a transaction refused as too large must write nothing"

    @also_uncoalesced
    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_tx_incr_of_a_non_number_and_bad_attempts_are_typed(self, subject: Subject) -> None:
        storage = subject.storage
        for key, value in (("deal:text", "abc"), ("deal:list", [1]), ("deal:nan", "NaN"), ("deal:flag", True)):
            await storage.set(key, value)
            for amount in (1, Decimal("1")):

                async def add(tx: Transaction, key: str = key, amount: int | Decimal = amount) -> Any:
                    return await tx.incr(key, amount)

                await fails_with(
                    InvalidValueError,
                    storage.transact(add, attempts=1),
                    f"tx.incr({amount!r}) of {value!r} must raise InvalidValueError, as Store.incr does",
                )
            assert await storage.get(key) == value, "a refused tx.incr() must change nothing"
        ran: list[int] = []

        async def write(tx: Transaction) -> None:
            ran.append(1)
            tx.set("deal:attempted", 1)

        for bad in (1.5, "3", None, True, False, 0, -1):
            await fails_with(
                InvalidInputError,
                storage.transact(write, attempts=bad),  # type: ignore[arg-type]
                f"transact(attempts={bad!r}) must be refused before anything runs",
            )
        assert ran == [], "a refused attempts= must run nothing"
        assert not await storage.exists("deal:attempted"), "a refused attempts= must write nothing"

    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_bookings_never_overspend(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("campaign:c1", {"budget": "200.00", "spent": "0"})

        async def book_one(i: int) -> bool:
            while True:
                try:
                    await book(storage, f"o{i}", {"n": i}, campaign_id="c1", amount=Decimal("10.00"))
                    return True
                except BudgetExceededError:
                    return False
                except TransactionConflictError:
                    continue  # transact retried and still lost: the caller decides, and we retry

        booked = await asyncio.gather(*(book_one(i) for i in range(30)))
        campaign = await storage.get("campaign:c1") or {}
        assert sum(booked) == 20, (
            f"a 200.00 budget takes exactly 20 bookings of 10.00: {sum(booked)} booked (commits are not atomic)"
        )
        assert Decimal(campaign["spent"]) == Decimal("200.00"), f"spent must equal what was booked: {campaign}"
        orders = await storage.get_many([f"order:o{i}" for i in range(30)])
        assert len(orders) == 20, f"exactly the booked orders must exist: {sorted(orders)}"
        await fails_with(
            VersionConflictError,
            book(storage, next(f"o{i}" for i, ok in enumerate(booked) if ok), {}, campaign_id="c1", amount="1"),
            "an order id is booked once",
        )

    @pytest.mark.multiprocess
    @certifies("transactions", Capability.TRANSACTIONS, Capability.MULTI_PROCESS)
    async def test_bookings_across_processes(self, subject: Subject) -> None:
        recipe = subject.harness.child_backend
        assert recipe is not None, "a backend claiming MULTI_PROCESS needs a harness with child_backend"
        await subject.storage.set("campaign:mp", {"budget": "1000.00", "spent": "0"})
        await book_in_processes(recipe, "mp", 40, "10.00", join_timeout=240)
        campaign = await subject.storage.get("campaign:mp") or {}
        orders = await subject.storage.keys("order:*")
        assert Decimal(campaign["spent"]) == Decimal("1000.00"), (
            f"4 processes x 40 bookings of 10.00 on a 1,000.00 budget must spend exactly 1000.00: {campaign}"
        )
        assert len(orders) == 100, f"exactly 100 of the 160 bookings fit the budget: {len(orders)} orders"

    @pytest.mark.multiprocess
    @certifies("transactions", Capability.TRANSACTIONS, Capability.MULTI_PROCESS)
    async def test_no_booking_starves_across_4_processes(self, subject: Subject) -> None:
        await self._no_booking_starves(subject, processes=4, each=40)

    @pytest.mark.slow
    @pytest.mark.multiprocess
    @certifies("transactions", Capability.TRANSACTIONS, Capability.MULTI_PROCESS)
    async def test_no_booking_starves_across_16_processes(self, subject: Subject) -> None:
        await self._no_booking_starves(subject, processes=16, each=10)

    async def _no_booking_starves(self, subject: Subject, *, processes: int, each: int) -> None:
        """*processes* x *each* bookings of 10.00 on a 1,000.00 budget, each with transact's
        default attempts: every one completes or is refused for the budget, none is starved.
        Promised by turns: without them (a backend that does not claim TURNS) transactions stay
        optimistic, and a loaded machine can starve one (seen through the sync facade's adapter)."""
        if Capability.TURNS not in subject.storage.capabilities_for("campaign:fair"):
            pytest.skip("the backend has no turns (TURNS): its transactions stay optimistic")
        recipe = subject.harness.child_backend
        assert recipe is not None, "a backend claiming MULTI_PROCESS needs a harness with child_backend"
        await subject.storage.set("campaign:fair", {"budget": "1000.00", "spent": "0"})
        await book_in_processes(recipe, "fair", each, "10.00", processes=processes, strict=True, join_timeout=240)
        campaign = await subject.storage.get("campaign:fair") or {}
        orders = await subject.storage.keys("order:*")
        assert Decimal(campaign["spent"]) == Decimal("1000.00"), f"the budget must be spent exactly: {campaign}"
        assert len(orders) == 100, f"exactly 100 bookings of 10.00 fit 1,000.00: {len(orders)} orders"

    @certifies("transactions", Capability.TRANSACTIONS, Capability.MULTI_PROCESS)
    async def test_a_turn_holds_other_transactions_back_until_it_ends(self, subject: Subject) -> None:
        storage = subject.storage
        backend = storage.backend
        if not _has_turns(backend):
            pytest.skip("the backend has no turns (TURNS): its transactions stay optimistic")
        await storage.set("turn:k", 0)
        inside, leave = asyncio.Event(), asyncio.Event()

        async def bump(tx: Transaction) -> None:
            tx.set("turn:k", await tx.get("turn:k") + 1)

        async def holder() -> None:
            async with backend.turn(["turn:k"]):
                inside.set()
                await leave.wait()
                async with storage.transaction() as tx:  # the holder's own commit goes through
                    await bump(tx)

        held = asyncio.create_task(holder())
        await unhung(inside.wait(), "taking a free turn")
        try:
            await fails_with(
                TransactionConflictError,
                storage.transact(bump, attempts=1),
                "a commit touching a key under another's turn must fail (a conflict) while the turn is held",
            )
        finally:
            leave.set()
            await unhung(held, "a turn's holder committing")
        got = await storage.get("turn:k")
        assert got == 1, f"only the turn holder's commit may apply while it holds the turn: {got!r}"
        await unhung(storage.transact(bump, attempts=1), "a commit after the turn ended")
        got = await storage.get("turn:k")
        assert got == 2, f"once the turn is over, commits go through again: {got!r}"
        assert await storage.keys("*") == ["turn:k"], "a turn must leave no key of its own behind in listings"

    @certifies("transactions", Capability.TRANSACTIONS, Capability.MULTI_PROCESS)
    async def test_a_turn_elsewhere_never_fails_a_block_that_only_read(self, subject: Subject) -> None:
        """A turn guards writes: a block that only read (its read set validated at the end), or
        that raised its own error, answers as if no turn were held, whatever keys it covers."""
        storage = subject.storage
        backend = storage.backend
        if not _has_turns(backend):
            pytest.skip("the backend has no turns (TURNS): its transactions stay optimistic")
        await storage.set_many({"ro:a": 1, "ro:b": 2})
        inside, leave = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with backend.turn(["ro:a", "ro:z"]):  # a key it reads, and one it does not
                inside.set()
                await leave.wait()

        held = asyncio.create_task(hold())
        await unhung(inside.wait(), "taking a free turn")
        try:
            async with storage.transaction() as tx:
                got = await tx.get("ro:a") + await tx.get("ro:b")
            assert got == 3, f"a read-only block under no change must return what it read: {got!r}"

            async def refuse(tx: Transaction) -> None:
                await tx.get("ro:a")
                await tx.get("ro:b")
                raise LookupError("insufficient funds")

            await fails_with(
                LookupError,
                storage.transact(refuse, attempts=1),
                "a block's own error, on reads that still hold, must come out as itself, not as a conflict",
            )
        finally:
            leave.set()
            await unhung(held, "a turn's holder leaving")

    @certifies("transactions", Capability.TRANSACTIONS, Capability.MULTI_PROCESS)
    async def test_a_waiter_cancelled_in_the_turns_queue_leaves_it(self, subject: Subject) -> None:
        backend = subject.storage.backend
        if not _has_turns(backend):
            pytest.skip("the backend has no turns (TURNS): its transactions stay optimistic")
        inside, leave = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with backend.turn(["turn:q"]):
                inside.set()
                await leave.wait()

        async def wait_in_line() -> None:
            async with backend.turn(["turn:q"]):
                raise AssertionError("a turn held by another must not be given to a second taker")

        holder = asyncio.create_task(hold())
        await unhung(inside.wait(), "taking a free turn")
        waiter = asyncio.create_task(wait_in_line())
        await asyncio.sleep(0.05)  # let it queue
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        leave.set()
        await unhung(holder, "giving a turn back")

        async def take_again() -> None:
            async with backend.turn(["turn:q"]):
                pass

        await unhung(take_again(), "taking the turn after a waiter was cancelled in its queue")

    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_no_booking_starves_across_16_tasks(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("campaign:tasks", {"budget": "100.00", "spent": "0"})

        async def book_one(i: int) -> bool:
            try:
                await book(storage, f"t{i}", {"n": i}, campaign_id="tasks", amount=Decimal("10.00"))
            except BudgetExceededError:
                return False
            return True  # TransactionConflictError (starved) fails the test

        booked = await asyncio.gather(*(book_one(i) for i in range(16)))
        campaign = await storage.get("campaign:tasks") or {}
        assert sum(booked) == 10, f"a 100.00 budget takes exactly 10 bookings of 10.00: {sum(booked)} booked"
        assert Decimal(campaign["spent"]) == Decimal("100.00"), f"the budget must be spent exactly: {campaign}"

    @certifies("transactions", Capability.TRANSACTIONS)
    async def test_a_transaction_inside_a_retried_transaction_never_waits_on_it(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("tx:k", 0)
        runs = {"outer": 0, "inner": 0}

        async def inner(tx: Transaction) -> None:
            runs["inner"] += 1
            value = await tx.get("tx:k")
            if runs["inner"] == 1:
                await storage.set("tx:k", value + 1)  # another writer: this attempt conflicts, and retries
            tx.set("tx:k", value + 10)

        async def outer(tx: Transaction) -> int:
            runs["outer"] += 1
            value = await tx.get("tx:k")
            if runs["outer"] == 1:
                await storage.set("tx:k", value + 1)  # the outer transaction's first attempt conflicts too
            elif runs["outer"] == 2:
                await storage.transact(inner)  # from inside the outer transaction's retry
            tx.set("tx:k", value + 100)
            return int(value)

        await unhung(storage.transact(outer), "transact() inside a retry of transact() on the same key")
        got = await storage.get("tx:k")
        assert got == 112, f"the inner transaction commits, the outer one retries over it and commits: {got!r}"
        assert runs == {"outer": 3, "inner": 2}, f"each transaction retries its own conflicts: {runs}"

    @certifies("transactions", Capability.TRANSACTIONS, Capability.ATOMIC)
    async def test_updates_and_transactions_nested_in_each_other_complete(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("mix:a", 0)
        await storage.set("mix:t", 0)
        done: set[str] = set()

        async def move(tx: Transaction) -> None:
            tx.set("mix:t", await tx.get("mix:t") + 1)
            if "a" not in done:
                done.add("a")
                await storage.update("mix:a", lambda a: a + 1)  # update inside transact inside update(mix:a)

        async def via_transaction(a: int) -> int:
            if "t" not in done:
                done.add("t")
                await storage.transact(move)
            return a + 100

        got = await unhung(storage.update("mix:a", via_transaction), "update(A) -> transact() -> update(A)")
        assert got == 101, f"update(A) whose function changed A through a transaction must retry over it: {got!r}"
        both = await storage.get_many(["mix:a", "mix:t"])
        assert both == {"mix:a": 101, "mix:t": 1}, f"each call must apply once per successful run: {both!r}"


def _has_turns(backend: object) -> TypeGuard[SupportsTurns]:
    """Whether *backend* claims TURNS (the flag decides; its methods come with it)."""
    return Capability.TURNS in getattr(backend, "capabilities", ())
