"""The fault tests' checker catches what it claims to: lost writes, foreign reads, bad counters."""

from __future__ import annotations

import pytest

from ad_buyer_storage import Storage
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.errors import UnavailableError
from tests._support.history import History, Operation


def op(kind: str, key: str, value: object, invoke: float, complete: float, outcome: str = "ok", result: object = None):
    return Operation("w", kind, key, value, invoke, complete, outcome, result)


def history_of(*ops: Operation) -> History:
    history = History()
    history.operations.extend(ops)
    return history


def test_an_acknowledged_write_missing_afterwards_is_lost() -> None:
    history = history_of(op("set", "k", 1, 0, 1))
    assert history.check({"k": 1}).problems == []
    assert history.check({}).lost
    assert history.check({"k": 2}).lost  # nobody wrote 2


def test_a_later_unknown_write_may_be_the_survivor_but_an_earlier_one_may_not() -> None:
    history = history_of(
        op("set", "k", 1, 0, 1, "unknown"), op("set", "k", 2, 2, 3), op("set", "k", 3, 2.5, 4, "unknown")
    )
    assert history.check({"k": 2}).problems == []
    assert history.check({"k": 3}).problems == []  # concurrent with the acknowledged one
    assert history.check({"k": 1}).lost  # finished before the acknowledged write began


def test_reads_return_only_values_written_to_that_key_before_they_completed() -> None:
    writes = (op("set", "a", 1, 0, 1), op("set", "b", 2, 0, 1))
    assert history_of(*writes, op("get", "a", None, 2, 3, result=1)).check({"a": 1, "b": 2}).problems == []
    assert history_of(*writes, op("get", "a", None, 2, 3, result=2)).check({"a": 1, "b": 2}).foreign_reads
    late = op("set", "a", 9, 5, 6)
    assert history_of(*writes, late, op("get", "a", None, 2, 3, result=9)).check({"a": 9, "b": 2}).foreign_reads


def test_counters_end_between_acknowledged_and_acknowledged_plus_unknown() -> None:
    incs = (op("incr", "n", 1, 0, 1, result=1), op("incr", "n", 1, 1, 2, result=2), op("incr", "n", 1, 2, 3, "unknown"))
    history = history_of(*incs)
    assert history.check({"n": 2}).problems == []
    assert history.check({"n": 3}).problems == []
    assert history.check({"n": 1}).counter_problems
    assert history.check({"n": 4}).counter_problems
    twice = history_of(op("incr", "n", 1, 0, 1, result=1), op("incr", "n", 1, 1, 2, result=1))
    assert twice.check({"n": 2}).counter_problems  # two increments saw the same total


class _Down(MemoryBackend):
    async def write(self, writes: object) -> list[bool]:
        raise UnavailableError("down")


async def test_the_recorder_classifies_outcomes() -> None:
    history = History()
    async with Storage(MemoryBackend()) as storage:
        await history.set(storage, "w", "deal:1", {"x": 1})
        assert await history.get(storage, "w", "deal:1") == {"x": 1}
        assert await history.incr(storage, "w", "n") == 1
        with pytest.raises(ValueError, match="empty"):
            await history.set(storage, "w", "", 1)
        async with Storage(_Down()) as failing:
            with pytest.raises(UnavailableError):
                await history.set(failing, "w", "deal:2", 2)
        assert [o.outcome for o in history.operations] == ["ok", "ok", "ok", "fail", "unknown"]
        report = history.check(await history.final_state(storage))
        assert report.problems == []
