"""The conformance kit itself: a backend claiming nothing passes it, an off-by-one expiry fails
it, its report says what was certified, and a stranger's first run carries no warning."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import re
import textwrap
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest

from ad_buyer_storage import Capability, ManualClock, Store
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.contract import NO_EXPIRY, NO_KEY, Condition, GlobPattern, Record, Write
from ad_buyer_storage.errors import InvalidValueError, UnsupportedOperationError
from ad_buyer_storage.testing import Harness, StorageContract, Subject, TTLContract
from ad_buyer_storage.testing import plugin as kit_plugin

pytest_plugins = ["pytester"]

KIT = Path(inspect.getfile(StorageContract)).parent


class NothingClaimed:
    """The smallest honest backend: a dict without expiry or atomics, claiming nothing."""

    name = "nothing"
    capabilities: frozenset[Capability] = frozenset()

    def __init__(self) -> None:
        self.rows: dict[str, Record] = {}

    async def connect(self) -> None:
        return None

    async def aclose(self) -> None:
        self.rows.clear()

    async def ping(self) -> None:
        return None

    async def info(self) -> Mapping[str, object]:
        return {"rows": len(self.rows)}

    async def read(self, keys: Sequence[str]) -> Sequence[Record | None]:
        return [self.rows.get(key) for key in keys]

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        for w in writes:
            if w.condition is not Condition.ALWAYS or w.ttl_ms is not None:
                raise UnsupportedOperationError("NothingClaimed claims neither ATOMIC nor EXPIRY")
            self.rows[w.key] = Record(w.value, w.version)
        return [True] * len(writes)

    async def remove(self, keys: Sequence[str]) -> int:
        return sum(self.rows.pop(key, None) is not None for key in keys)

    async def count(self, keys: Sequence[str]) -> int:
        return sum(key in self.rows for key in set(keys))

    async def scan(self, pattern: GlobPattern, batch_size: int) -> AsyncIterator[str]:
        for key in [k for k in self.rows if pattern.matches(k)]:
            yield key

    async def get_ttl(self, key: str) -> int:
        return NO_EXPIRY if key in self.rows else NO_KEY

    async def set_ttl(self, key: str, ttl_ms: int | None) -> bool:
        raise UnsupportedOperationError("NothingClaimed does not claim EXPIRY")

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        raise UnsupportedOperationError("NothingClaimed does not claim ATOMIC")


class TestNothingClaimedContract(StorageContract):
    """No EXPIRY, no ATOMIC, nothing: the whole kit passes (what does not apply is skipped)."""

    @pytest.fixture
    def harness(self) -> Harness:
        store = NothingClaimed()  # the same store for every backend made within a test
        return Harness(lambda clock: store)


class OffByOneMemory(MemoryBackend):
    """Shows a key during its expiry millisecond: ``<`` where the contract says ``<=``."""

    def _live(self, key: str, now_ms: int):
        entry = self._data.get(key)
        if entry is None or (entry.expires_at_ms is not None and entry.expires_at_ms < now_ms):
            return None
        return entry


class RacyMemory(MemoryBackend):
    """Claims ATOMIC but does increments and conditional writes as a network store without a
    script or a transaction would: read, await the round trip, then write. Alone, each call is
    right; concurrent calls on one key all read the old value and all write (lost increments,
    several set-if-absent winners, several version-checked writes applied)."""

    async def _check_then_write(self, write: Write) -> bool:
        (current,) = await self.read([write.key])
        await asyncio.sleep(0)  # the round trip: another caller reads the same value meanwhile
        if write.condition is Condition.IF_ABSENT and current is not None:
            return False
        if write.condition is Condition.IF_VERSION and (current is None or current.version != write.expected_version):
            return False
        (applied,) = await super().write([write._replace(condition=Condition.ALWAYS, expected_version=None)])
        return applied

    async def write(self, writes: Sequence[Write]) -> Sequence[bool]:
        return [await self._check_then_write(w) for w in writes]

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        (current,) = await self.read([key])
        await asyncio.sleep(0)
        if current is None:
            await super().write([Write(key, str(amount), version, ttl_ms)])
            return amount
        value = json.loads(current.value)
        if type(value) is not int or not -(2**63) <= value + amount < 2**63:
            raise InvalidValueError(f"cannot add {amount} to the value at {key!r}")
        await super().write([Write(key, str(value + amount), version, keep_ttl=True)])
        return value + amount


async def test_the_boundary_check_catches_a_key_visible_in_its_expiry_millisecond() -> None:
    clock = ManualClock()
    async with Store(OffByOneMemory(clock=clock)) as storage:
        subject = Subject(storage, clock, Harness(lambda c: OffByOneMemory(clock=c)))
        with pytest.raises(AssertionError, match=r"at its expiry instant \(expires_at <= now\) 'deal:edge'"):
            await TTLContract().test_a_key_expires_at_its_exact_millisecond(subject)
    clock = ManualClock()
    async with Store(MemoryBackend(clock=clock)) as storage:  # the same check passes on the reference
        await TTLContract().test_a_key_expires_at_its_exact_millisecond(
            Subject(storage, clock, Harness(lambda c: MemoryBackend(clock=c)))
        )


def test_every_kit_test_certifies_a_known_area() -> None:
    names = [name for name in dir(StorageContract) if name.startswith("test_")]
    assert len(names) > 50
    for name in names:
        marks = [m for m in getattr(getattr(StorageContract, name), "pytestmark", []) if m.name == "certifies"]
        assert len(marks) == 1, f"{name} must carry one certifies marker"
        assert marks[0].args[0] in kit_plugin.AREAS, f"{name} certifies an unknown area {marks[0].args[0]!r}"


def test_every_assertion_of_the_kit_says_which_rule_broke() -> None:
    bare = [
        f"{path.name}:{node.lineno}"
        for path in sorted(KIT.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Assert) and node.msg is None
    ]
    assert not bare, f"asserts without a message in the kit: {bare}"


def test_the_kit_cites_no_file_a_stranger_does_not_have() -> None:
    cited = {
        f"{path.name}: {match}"
        for path in sorted(KIT.glob("*.py"))
        for match in re.findall(r"[\w./-]+\.(?:md|rst|txt)\b", path.read_text(encoding="utf-8"))
    }
    assert not cited, f"the kit refers to files outside its package: {cited}"


KIT_RUN = """
import pytest
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.testing import Harness, KeyValueContract, LifecycleContract, StorageContract, TTLContract


class TestReference(StorageContract):
    @pytest.fixture
    def harness(self):
        return Harness(lambda clock: MemoryBackend(clock=clock))

{extra}
"""


def test_the_report_says_per_class_and_area_what_passed_was_skipped_and_failed(pytester: pytest.Pytester) -> None:
    extra = textwrap.dedent("""
        from tests.test_conformance_kit import NothingClaimed, OffByOneMemory

        class TestOffByOne(TTLContract):
            @pytest.fixture
            def harness(self):
                return Harness(lambda clock: OffByOneMemory(clock=clock))

        class TestNothing(StorageContract):
            @pytest.fixture
            def harness(self):
                store = NothingClaimed()
                return Harness(lambda clock: store)

        class TestForgotTheHarness(LifecycleContract):
            pass
    """)
    pytester.makepyfile(test_kit_run=KIT_RUN.format(extra=extra))
    pytester.syspathinsert(Path(__file__).parent.parent)  # so the inner run imports this module's backends
    result = pytester.runpytest("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1, result.stdout.str()  # the off-by-one
    assert outcomes["errors"] == 4, result.stdout.str()  # the 4 tests without a harness
    report = result.stdout.str().split("ad-buyer-storage conformance =", 1)[1]
    result.stdout.re_match_lines(
        [
            r"ad-buyer-storage conformance: TestReference \[memory \(atomic, expiry, pubsub, [a-z, ]+\)\]  CERTIFIED",
            r"  lifecycle      3/3 passed",
            r"  kv             \d+/\d+ passed, 1 skipped \(the harness gives no way to make the store refuse a key",
            r"  listing        (\d+)/\1 passed",
            r"  ttl            (\d+)/\1 passed",
            r"  atomic         (\d+)/\1 passed",
            r"  transactions   (\d+)/\1 passed, \d+ skipped \(not claimed: MULTI_PROCESS\)",
            r"  pubsub         1/1 passed",
            r"  multi_process  skipped \(not claimed: MULTI_PROCESS\)",
            r"  durable        skipped \(not claimed: DURABLE\)",
            r"  domain         (\d+)/\1 passed",
            r"ad-buyer-storage conformance: TestOffByOne \[memory \([a-z, ]+\)\]  FAILED \(1 failed\)",
            r"  ttl  \d+/\d+ passed",
            r"       failed: test_a_key_expires_at_its_exact_millisecond",
            r"ad-buyer-storage conformance: TestNothing \[nothing \(no capabilities\)\]  CERTIFIED",
            r"  lifecycle      3/3 passed",
            r"  ttl            \d+/\d+ passed, \d+ skipped \(not claimed: EXPIRY\)",
            r"  atomic         refusal 1/1 passed, \d+ skipped \(not claimed: ATOMIC, EXPIRY\)",
            r"  transactions   refusal 1/1 passed, \d+ skipped \(not claimed: TRANSACTIONS",
            r"  pubsub         refusal 1/1 passed, 1 skipped \(not claimed: PUBSUB\)",
            r"  multi_process  skipped \(not claimed: MULTI_PROCESS, ATOMIC\)",
            r"  durable        skipped \(not claimed: DURABLE\)",
            r"  domain         \d+/\d+ passed, 4 skipped \(not claimed: ATOMIC, EXPIRY, TRANSACTIONS\)",
            r"ad-buyer-storage conformance: TestForgotTheHarness  FAILED \(4 failed\)",
            r"  lifecycle  0/3 passed",
            r"             failed: test_backend_implements_the_protocol, test_lifecycle, test_ping_and_info",
            r"  durable    0/1 passed",
        ]
    )
    passed, ran = map(int, re.findall(r"TestOffByOne.*\n  ttl  (\d+)/(\d+) passed", report)[0])
    assert passed == ran - 1
    assert "expires_at <= now" in result.stdout.str()  # the failure says which rule broke


def test_no_report_without_kit_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 0
    assert "ad-buyer-storage conformance" not in result.stdout.str()


def test_a_strangers_first_run_is_warning_free(pytester: pytest.Pytester) -> None:
    """No pytest configuration of ours: a directory with one test file, run with ``-W error``."""
    assert not [p for p in pytester.path.iterdir() if p.suffix in (".ini", ".toml", ".cfg")]
    pytester.makepyfile(test_my_backend=KIT_RUN.format(extra=""))
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == 0, output
    assert not re.search(r"Warning|warnings summary|\d+ warnings?\b", output), output
    result.stdout.fnmatch_lines(["*asyncio_default_fixture_loop_scope=*", "*TestReference*CERTIFIED*"])


def test_a_loop_scope_the_project_sets_wins(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = module\n")
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*asyncio_default_fixture_loop_scope=module*"])


RACY_RUN = """
import pytest
from ad_buyer_storage.testing import AtomicContract, CoordinationContract, Harness, TransactionsContract
from tests.test_conformance_kit import RacyMemory


class TestRacy(AtomicContract, TransactionsContract, CoordinationContract):
    @pytest.fixture
    def harness(self):
        return Harness(lambda clock: RacyMemory(clock=clock))
"""


def test_a_backend_whose_atomics_race_is_not_certified(pytester: pytest.Pytester) -> None:
    """Through the store's coalescing and combining, concurrent calls on one key never reach the
    backend together, so the kit also runs its concurrency tests with them off: a backend that
    reads, awaits, then writes fails, and the failures say which atomic operation raced."""
    pytester.makepyfile(test_racy_run=RACY_RUN)
    pytester.syspathinsert(Path(__file__).parent.parent)  # so the inner run imports RacyMemory
    result = pytester.runpytest("-p", "no:cacheprovider")
    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert re.search(r"ad-buyer-storage conformance: TestRacy \[memory \([a-z, ]+\)\]  FAILED", output), output
    for race in (
        r"100 concurrent increments of one key gave \d+: increment is not atomic",
        r"50 concurrent set_if_absent\(\) of one key had \d+ winners: set-if-absent is not atomic",
        r"20 concurrent set\(if_version=\) of one key had \d+ winners: version-checked writes are not atomic",
        r"100 concurrent update\(\) of one key applied \d+: version-checked writes are not atomic",
    ):
        assert re.search(race, output), f"no failure says {race!r}:\n{output}"
    failed = re.findall(r"^FAILED \S+::(\S+)", output, flags=re.MULTILINE)
    assert failed, output
    assert all(name.endswith("[uncoalesced]") for name in failed), (
        f"only the runs with coalescing off can see the race: {sorted(failed)}"
    )
    assert RacyMemory.capabilities == MemoryBackend.capabilities  # it claims what the reference claims
