"""Concurrent single-key calls share round trips; every caller keeps its own semantics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from ad_buyer_storage import PartialBatchError, Storage, UnavailableError, VersionConflictError
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.contract import Record, Write
from ad_buyer_storage.testing import Elapsed


class Recording(MemoryBackend):
    """Counts round trips, and yields to the loop like a network store would."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[str]] = []
        self.writes: list[list[str]] = []
        self.fail_once_for: set[str] = set()
        self.increments: list[int] = []
        self.overtake_next_write_of: set[str] = set()

    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        self.reads.append(list(keys))
        await asyncio.sleep(0.001)
        if self.fail_once_for & set(keys):
            self.fail_once_for.clear()
            raise UnavailableError("store went away")
        return await super().read(keys)

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        self.writes.append([w.key for w in writes])
        await asyncio.sleep(0.001)
        for w in writes:
            if w.key in self.overtake_next_write_of:  # another writer gets there first
                self.overtake_next_write_of.discard(w.key)
                await super().write([Write(w.key, "100", "theirs")])
        return await super().write(writes)

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        self.increments.append(amount)
        await asyncio.sleep(0.001)
        return await super().increment(key, amount, version, ttl_ms)


async def test_64_concurrent_gets_take_two_round_trips() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        await storage.set_many({f"deal:{i}": i for i in range(64)})
        backend.reads.clear()
        values = await asyncio.gather(*(storage.get(f"deal:{i}") for i in range(64)))
        assert values == list(range(64))
        assert [len(r) for r in backend.reads] == [1, 63]


async def test_sequential_gets_are_not_delayed_or_batched() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        for i in range(5):
            await storage.get(f"k{i}")
        assert backend.reads == [[f"k{i}"] for i in range(5)]


async def test_a_hot_key_read_by_many_is_read_once_per_batch() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        await storage.set("deal:hot", {"x": 1})
        backend.reads.clear()
        results = await asyncio.gather(*(storage.get("deal:hot") for _ in range(50)))
        assert results == [{"x": 1}] * 50
        assert len(backend.reads) == 2


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_works() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        await storage.set_many({f"k{i}": i for i in range(10)})
        backend.fail_once_for = {"k3"}  # the batch holding k3 fails as a whole
        first = asyncio.create_task(storage.get("k0"))
        await asyncio.sleep(0)
        queued = [asyncio.create_task(storage.get(f"k{i}")) for i in range(1, 10)]
        assert await first == 0
        results = await asyncio.gather(*queued, return_exceptions=True)
        assert all(isinstance(r, UnavailableError) for r in results), results
        assert await storage.get("k5") == 5


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        await storage.set_many({f"k{i}": i for i in range(10)})
        tasks = [asyncio.create_task(storage.get(f"k{i}")) for i in range(10)]
        await asyncio.sleep(0)
        tasks[5].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[5], asyncio.CancelledError)
        assert [r for i, r in enumerate(results) if i != 5] == [i for i in range(10) if i != 5]


async def test_concurrent_writes_batch_in_order_and_never_repeat_a_key_in_a_batch() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        await asyncio.gather(*(storage.set(f"k{i % 5}", i) for i in range(20)))
        assert all(len(batch) == len(set(batch)) for batch in backend.writes)
        assert len(backend.writes) < 20
        assert [await storage.get(f"k{i}") for i in range(5)] == [15, 16, 17, 18, 19]  # last write wins


async def test_version_conflicts_stay_per_caller_inside_a_batch() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        v1 = await storage.set("a", 1)
        await storage.set("b", 1)
        outcomes = await asyncio.gather(
            storage.set("x", 0),  # goes first, alone: the rest queue behind it
            storage.set("a", 2, if_version=v1),
            storage.set("b", 2, if_version="not-the-version"),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], str)
        assert isinstance(outcomes[2], VersionConflictError)
        assert (await storage.get("a"), await storage.get("b")) == (2, 1)


async def test_coalescing_can_be_switched_off() -> None:
    backend = Recording()
    async with Storage(backend, coalesce=False) as storage:
        await asyncio.gather(*(storage.get(f"k{i}") for i in range(8)))
        assert len(backend.reads) == 8


@pytest.mark.parametrize("n", [1, 2])
async def test_single_callers_see_no_difference(n: int) -> None:
    async with Storage(Recording()) as storage:
        await asyncio.gather(*(storage.set(f"k{i}", i) for i in range(n)))
        assert await storage.get_many([f"k{i}" for i in range(n)]) == {f"k{i}": i for i in range(n)}


async def test_200_concurrent_updates_of_one_key_take_a_few_round_trips() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        await storage.set_deal("d1", {"spend": 0})
        backend.reads.clear()
        backend.writes.clear()
        results = await asyncio.gather(
            *(storage.update_deal("d1", lambda d: {**d, "spend": d["spend"] + 1}) for _ in range(200))
        )
        # the first alone, then the 199 that queued behind it as one group: no failed writes
        assert (len(backend.reads), len(backend.writes)) == (2, 2)
        assert sorted(r["spend"] for r in results) == list(range(1, 201))
        assert await storage.get_deal("d1") == {"spend": 200}


async def test_a_caller_cancelled_while_waiting_is_left_out_of_its_group() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        await storage.set("n", 0)
        ran: list[int] = []

        def add(i: int) -> Callable[[int], int]:
            def fn(n: int) -> int:
                ran.append(i)
                return n + 1

            return fn

        tasks = [asyncio.create_task(storage.update("n", add(i))) for i in range(5)]
        await asyncio.sleep(0)
        tasks[3].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[3], asyncio.CancelledError)
        assert 3 not in ran
        assert sorted(r for r in results if isinstance(r, int)) == [1, 2, 3, 4]
        assert await storage.get("n") == 4


async def test_a_group_that_loses_a_race_to_another_writer_is_retried_whole() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        await storage.set("n", 0)
        first = asyncio.create_task(storage.update("n", lambda n: n + 1))
        await asyncio.sleep(0)
        queued = [asyncio.create_task(storage.update("n", lambda n: n + 1)) for _ in range(10)]
        await first
        backend.overtake_next_write_of.add("n")  # the group of 10's write loses to n = 100
        results = await asyncio.gather(*queued)
        assert sorted(results) == list(range(101, 111))
        assert await storage.get("n") == 110


async def test_100_concurrent_increments_of_one_key_take_two_round_trips() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        results = await asyncio.gather(*(storage.incr("clicks") for _ in range(100)))
        assert sorted(results) == list(range(1, 101))
        assert backend.increments == [1, 99]


async def test_increments_of_mixed_signs_are_sent_in_same_signed_runs() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        first = asyncio.create_task(storage.incr("n", 1))
        await asyncio.sleep(0)
        amounts = [2, 3, -1, -4, 0, 5]
        results = await asyncio.gather(first, *(storage.incr("n", a) for a in amounts))
        assert results == [1, 3, 6, 5, 1, 1, 6]
        assert backend.increments == [1, 5, -5, 5]


async def test_combining_is_off_with_coalescing() -> None:
    backend = Recording()
    async with Storage(backend, coalesce=False) as storage:
        await asyncio.gather(*(storage.incr("n") for _ in range(10)))
        assert backend.increments == [1] * 10


async def test_200_concurrent_sets_of_one_key_merge_into_two_writes() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        versions = await asyncio.gather(*(storage.set("deal:hot", {"n": i}) for i in range(200)))
        assert len(set(versions)) == 200  # each caller its own token
        assert backend.writes == [["deal:hot"], ["deal:hot"]]
        read = await storage.get_versioned("deal:hot")
        assert read is not None
        assert (read.value, read.version) == ({"n": 199}, versions[-1])  # the last to arrive wins


async def test_merged_sets_keep_each_callers_expiry_rules() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        elapsed = Elapsed()
        await asyncio.gather(
            storage.set("x", 0),  # in flight alone: the rest queue behind it
            storage.set("k", 1, ttl=30),
            storage.set("k", 2, keep_ttl=True),  # keeps the 30 s the write before it set
            storage.set("j", 1, ttl=30),
            storage.set("j", 2),  # no ttl: no expiry
        )
        assert backend.writes == [["x"], ["k", "j"]]
        ttl_k, ttl_j = await storage.ttl("k"), await storage.ttl("j")
        elapsed.check_ttl(ttl_k, 30, "set(keep_ttl=True) merged after set(ttl=30) must keep its 30 s")
        assert ttl_j is None
        assert (await storage.get("k"), await storage.get("j")) == (2, 2)


async def test_conditional_writes_of_one_key_are_never_merged() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        v1 = await storage.set("k", 0)
        outcomes = await asyncio.gather(
            storage.set("x", 0),
            storage.set("k", 1),
            storage.set("k", 2, if_version=v1),  # k moved on: a conflict
            return_exceptions=True,
        )
        assert isinstance(outcomes[2], VersionConflictError)
        assert await storage.get("k") == 1


async def test_a_cancelled_increment_waiting_in_a_refused_run_is_never_sent() -> None:
    backend = Recording()
    top = 2**63 - 1
    async with Storage(backend) as storage:
        await storage.set("n", top - 3)
        first = asyncio.create_task(storage.incr("n", 0))  # in flight alone
        await asyncio.sleep(0)
        a, b, c = (asyncio.create_task(storage.incr("n", amount)) for amount in (2, 1, 1))
        await first
        await asyncio.sleep(0.0015)  # the run's total (4) is refused; a's own call is in flight
        b.cancel()
        results = await asyncio.gather(a, b, c, return_exceptions=True)
        assert results[0] == top - 1
        assert isinstance(results[1], asyncio.CancelledError)
        assert results[2] == top  # its own answer, not the cancelled caller's leftovers
        assert backend.increments == [0, 4, 2, 1]


async def test_each_update_gives_up_after_its_own_attempts() -> None:
    backend = Recording()
    async with Storage(backend) as storage:
        await storage.set("n", 0)
        first = asyncio.create_task(storage.update("n", lambda n: n + 1))
        await asyncio.sleep(0)
        patient = asyncio.create_task(storage.update("n", lambda n: n + 1))
        hasty = asyncio.create_task(storage.update("n", lambda n: n + 1, max_attempts=1))
        await first
        backend.overtake_next_write_of.add("n")  # the group's first write loses
        outcomes = await asyncio.gather(patient, hasty, return_exceptions=True)
        assert outcomes[0] == 101
        assert isinstance(outcomes[1], VersionConflictError)


async def test_an_update_from_inside_an_update_of_the_same_key_does_not_wait_on_itself() -> None:
    async with Storage(Recording()) as storage:
        await storage.set("n", 0)
        await storage.set("other", 0)

        async def nested(n: int) -> int:
            await storage.update("other", lambda o: o + 1)  # another key: combined as usual
            return n + 1

        assert await asyncio.wait_for(storage.update("n", nested), 5) == 1
        inner_done = asyncio.Event()

        async def same_key(n: int) -> int:
            if not inner_done.is_set():
                inner_done.set()
                await storage.update("n", lambda m: m + 10)  # would wait on its own group forever
            return n + 1

        assert await asyncio.wait_for(storage.update("n", same_key), 5) == 12


async def test_a_backend_answering_a_batch_with_the_wrong_count_fails_its_callers_not_hangs() -> None:
    class Miscounting(Recording):
        async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
            if len(writes) > 1:
                raise PartialBatchError([UnavailableError("one of some other batch")])
            return await super().write(writes)

    async with Storage(Miscounting()) as storage:
        first = asyncio.create_task(storage.set("x", 0))
        await asyncio.sleep(0)
        rest = [storage.set(f"k{i}", i) for i in range(3)]
        outcomes = await asyncio.wait_for(asyncio.gather(first, *rest, return_exceptions=True), 5)
        assert isinstance(outcomes[0], str)
        assert all(isinstance(o, UnavailableError) for o in outcomes[1:]), outcomes


async def test_a_batch_sent_in_a_task_is_kept_and_finished_before_the_backend_closes() -> None:
    """Issue 24: the coalescer kept no reference to the task sending a queued batch (the loop
    keeps only a weak one), and closing the store did not wait for it: the backend closed under it."""
    events: list[str] = []
    started, gate = asyncio.Event(), asyncio.Event()

    class Slow(Recording):
        async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
            if len(keys) == 1:
                await asyncio.sleep(0.02)  # in flight while the other reads queue behind it
            else:
                started.set()
                await gate.wait()  # the queued batch, held until the test lets it go
            records = await super().read(keys)
            events.append(f"read {len(keys)}")
            return records

        async def aclose(self) -> None:
            events.append("closed")
            await super().aclose()

    storage = Storage(Slow())
    await storage.connect()
    await storage.set_many({f"k{i}": i for i in range(4)})
    reads = [asyncio.ensure_future(storage.get(f"k{i}")) for i in range(4)]
    await asyncio.wait_for(started.wait(), 10)  # the three queued reads are in flight, in a task
    tasks = storage.store._reads._tasks  # type: ignore[union-attr]
    assert len(tasks) == 1, "the task sending the queued batch is referenced until it is done"
    closing = asyncio.ensure_future(storage.aclose())
    await asyncio.sleep(0.05)
    assert "closed" not in events, "closing waits for the batch in flight"
    gate.set()
    await asyncio.wait_for(closing, 10)
    assert events == ["read 1", "read 3", "closed"], "the batch in flight finished before the backend closed"
    assert [await r for r in reads] == [0, 1, 2, 3]
    assert not tasks


async def test_closing_a_store_cancelled_cancels_the_batches_it_waits_for() -> None:
    class Hung(Recording):
        async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
            if len(keys) > 1:
                await asyncio.Event().wait()
            return await super().read(keys)

    storage = Storage(Hung())
    await storage.connect()
    reads = [asyncio.ensure_future(storage.get(f"k{i}")) for i in range(3)]
    await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(storage.aclose())
    await asyncio.sleep(0.01)
    assert not closing.done(), "close waits for the batch in flight"
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    outcomes = await asyncio.gather(*reads, return_exceptions=True)
    assert outcomes[0] is None
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes[1:]), outcomes
