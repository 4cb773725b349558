"""C6: every backend, driven by Hypothesis, against a dict model of the contract.

Operations: set (with and without TTL), set-if-absent, get, exists, delete, incr, keys by
pattern, delete by pattern, remaining TTL, and (where the backend keeps time with the given
clock) letting time pass. Keys come from an adversarial alphabet: glob metacharacters, SQL
quotes and wildcards, CR/LF, non-ASCII.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule

from ad_buyer_storage import InvalidValueError, ManualClock, Storage
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.contract import compile_glob, escape_glob
from ad_buyer_storage.testing import Elapsed
from ad_buyer_storage_postgres import PostgresBackend
from ad_buyer_storage_redis import RedisBackend
from ad_buyer_storage_sqlite import SQLiteBackend
from tests._support.recipes import memory_and_sqlite
from tests._support.shared import POSTGRES_URL, REDIS_URL, drop_pg_schema

KEY = st.text(alphabet="ab:_%*?[]\\'\"é\r\n ", min_size=1, max_size=6)
VALUE: st.SearchStrategy[Any] = st.one_of(
    st.integers(-(2**40), 2**40),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=5),  # valid values only
    st.lists(st.integers(0, 9), max_size=3),
    st.just({}),
)
PATTERN = st.sampled_from(["*", "a*", "a:*", "?", "[ab]*", "[^a]*", "*:*", "\\**", "%*", "_*", "é*", "*\\\\*"])


def _schema() -> str:
    return f"abs_test_{uuid.uuid4().hex[:12]}"


# name -> (factory(clock, tag), the backend follows the clock, cleanup(tag) or None)
BACKENDS: dict[str, tuple[Callable[[ManualClock, str], Any], bool, Callable[[str], None] | None]] = {
    "memory": (lambda clock, tag: MemoryBackend(clock=clock), True, None),
    "sqlite": (lambda clock, tag: SQLiteBackend(":memory:", clock=clock, sweep_interval=None), True, None),
    "hybrid": (lambda clock, tag: memory_and_sqlite(":memory:", clock), True, None),
    "redis": (lambda clock, tag: RedisBackend(REDIS_URL, key_prefix=f"abs-test:{tag}:"), False, None),
    "postgres": (
        lambda clock, tag: PostgresBackend(POSTGRES_URL, schema=tag, sweep_interval=None),
        False,
        drop_pg_schema,
    ),
}


def machine_for(name: str) -> type[RuleBasedStateMachine]:
    factory, follows_clock, cleanup = BACKENDS[name]

    class ContractMachine(RuleBasedStateMachine):
        # Keys written go into a pool that the other rules draw from, so they meet again.
        written = Bundle("written")

        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = ManualClock()
            self.tag = _schema()
            self.storage = Storage(factory(self.clock, self.tag))
            self.run(self.storage.connect())
            self.model: dict[str, tuple[Any, float | None]] = {}  # key -> (value, expires at)

        def run(self, awaitable: Any) -> Any:
            return self.loop.run_until_complete(awaitable)

        def teardown(self) -> None:
            try:
                self.run(self.storage.clear())
                self.run(self.storage.aclose())
                if cleanup is not None:
                    cleanup(self.tag)
            finally:
                self.loop.close()

        def live(self) -> dict[str, Any]:
            now = self.clock()
            return {k: v for k, (v, exp) in self.model.items() if exp is None or exp > now}

        @initialize()
        def start(self) -> None:
            self.model.clear()

        @rule(target=written, key=KEY, value=VALUE, ttl=st.one_of(st.none(), st.sampled_from([1, 5, 3600])))
        def set(self, key: str, value: Any, ttl: int | None) -> str:
            # Server-clock backends get only long TTLs: their time cannot be made to pass here.
            if ttl is not None and not follows_clock:
                ttl = 3600
            elapsed = Elapsed(self.clock if follows_clock else None)
            self.run(self.storage.set(key, value, ttl))
            self.model[key] = (value, None if ttl is None else self.clock() + ttl)
            remaining = self.run(self.storage.ttl(key))  # every write checks its expiry at once
            if ttl is None:
                assert remaining is None
            else:
                elapsed.check_ttl(remaining, ttl, f"set(ttl={ttl}) must give the key {ttl} s")
            return key

        @rule(key=st.one_of(written, KEY), value=VALUE)
        def set_if_absent(self, key: str, value: Any) -> None:
            stored = self.run(self.storage.set_if_absent(key, value))
            assert stored == (key not in self.live())
            if stored:
                self.model[key] = (value, None)

        @rule(key=st.one_of(written, written, KEY))
        def get(self, key: str) -> None:
            missing = object()
            assert self.run(self.storage.get(key, default=missing)) == self.live().get(key, missing)

        @rule(key=st.one_of(written, written, KEY))
        def exists(self, key: str) -> None:
            assert self.run(self.storage.exists(key)) == (key in self.live())

        @rule(key=st.one_of(written, written, KEY))
        def delete(self, key: str) -> None:
            assert self.run(self.storage.delete(key)) == (key in self.live())
            self.model.pop(key, None)

        @rule(key=st.one_of(written, KEY), amount=st.integers(-5, 5))
        def incr(self, key: str, amount: int) -> None:
            current = self.live().get(key, 0)
            if type(current) is not int:
                with pytest.raises(InvalidValueError):
                    self.run(self.storage.incr(key, amount))
                return
            assert self.run(self.storage.incr(key, amount)) == current + amount
            expires = self.model[key][1] if key in self.live() else None
            self.model[key] = (current + amount, expires)

        @rule(pattern=PATTERN)
        def keys(self, pattern: str) -> None:
            expected = sorted(k for k in self.live() if compile_glob(pattern).matches(k))
            assert self.run(self.storage.keys(pattern)) == expected

        @rule(key=st.one_of(written, written, KEY))
        def keys_of_a_literal(self, key: str) -> None:
            assert self.run(self.storage.keys(escape_glob(key))) == ([key] if key in self.live() else [])

        @rule(pattern=PATTERN)
        def delete_pattern(self, pattern: str) -> None:
            doomed = [k for k in self.live() if compile_glob(pattern).matches(k)]
            assert self.run(self.storage.delete_pattern(pattern)) == len(doomed)
            for key in doomed:
                del self.model[key]

        @rule(key=st.one_of(written, written, KEY))
        def ttl(self, key: str) -> None:
            live = self.live()
            if key not in live:
                return
            remaining = self.run(self.storage.ttl(key))
            expires = self.model[key][1]
            if expires is None:
                assert remaining is None
            else:
                assert remaining is not None
                assert remaining <= expires - self.clock() + 0.001

        @precondition(lambda self: follows_clock)
        @rule(seconds=st.sampled_from([0.5, 1, 2, 10]))
        def time_passes(self, seconds: float) -> None:
            self.clock.advance(seconds)

        @invariant()
        def count_matches(self) -> None:
            if self.model:
                assert self.run(self.storage.count()) == len(self.live())

    ContractMachine.__name__ = f"{name.title()}ContractMachine"
    return ContractMachine


@pytest.mark.parametrize("name", list(BACKENDS))
def test_backend_matches_the_dict_model(name: str) -> None:
    examples = 40 if BACKENDS[name][1] else 15  # server backends: each example is a fresh namespace
    machine = machine_for(name)
    machine.TestCase.settings = settings(
        max_examples=examples, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
    )
    machine.TestCase().runTest()
