"""TTL: the EXPIRY claim (keys expire at their instant, to the millisecond) or its refusal."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

import pytest

from ad_buyer_storage.client.validation import MAX_TTL_SECONDS
from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.errors import InvalidTTLError, KeyNotFoundError, UnsupportedOperationError

from ._base import ContractBase, certifies, fails_with
from ._elapsed import Elapsed
from .harness import Subject

__all__ = ["TTLContract"]


class TTLContract(ContractBase):
    """Area ``ttl``: TTL validation (every backend), then the EXPIRY claim, or its refusal."""

    @certifies("ttl", absent=Capability.EXPIRY)
    async def test_expiry_is_refused_when_not_claimed(self, subject: Subject) -> None:
        storage = subject.storage
        rule = "a backend that does not claim EXPIRY must refuse {} with UnsupportedOperationError"
        await fails_with(UnsupportedOperationError, storage.set("k", 1, ttl=5), rule.format("set(ttl=...)"))
        await fails_with(UnsupportedOperationError, storage.set_many({"k": 1}, ttl=5), rule.format("set_many(ttl=)"))
        assert not await storage.exists("k"), "a write refused for its TTL must store nothing"
        await storage.set("k", 1)
        assert await storage.ttl("k") is None, "without EXPIRY, ttl() of a live key must be None (it never expires)"
        await fails_with(UnsupportedOperationError, storage.expire("k", 5), rule.format("expire()"))
        await fails_with(UnsupportedOperationError, storage.persist("k"), rule.format("persist()"))
        assert await storage.get("k") == 1, "a refused expire() must leave the key alone"

    @certifies("ttl")
    @pytest.mark.parametrize(
        "bad_ttl",
        [0, -1, 0.0, -0.5, True, False, "2", math.nan, math.inf, dt.timedelta(0), MAX_TTL_SECONDS + 1, 10**13,
         dt.timedelta(days=365 * 101), 1e300],
    )  # fmt: skip
    async def test_bad_ttls_are_refused_before_io(self, subject: Subject, bad_ttl: Any) -> None:
        storage = subject.storage
        rule = f"the TTL {bad_ttl!r} must be refused with InvalidTTLError, whatever the backend claims"
        await fails_with(InvalidTTLError, storage.set("k", 1, ttl=bad_ttl), f"set(): {rule}")
        await fails_with(InvalidTTLError, storage.set_many({"k": 1}, ttl=bad_ttl), f"set_many(): {rule}")
        await fails_with(InvalidTTLError, storage.expire("k", bad_ttl), f"expire(): {rule}")
        assert not await storage.exists("k"), "a write refused for its TTL must store nothing"

    @certifies("ttl", Capability.EXPIRY)
    async def test_concurrent_sets_of_one_key_apply_in_order(self, subject: Subject) -> None:
        storage = subject.storage
        elapsed = Elapsed.of(subject)
        await asyncio.gather(
            storage.set("hot:warmup", 0),
            *(storage.set("hot:k", i, ttl=30) for i in range(5)),
            storage.set("hot:k", "kept", keep_ttl=True),
            *(storage.set("hot:j", i, ttl=30) for i in range(5)),
            storage.set("hot:j", "forever"),
        )
        assert await storage.get("hot:k") == "kept", "of concurrent sets of one key, the last to arrive wins"
        remaining = await storage.ttl("hot:k")
        assert remaining is not None, "set(keep_ttl=True) after set(ttl=30) must keep that expiry"
        elapsed.check_ttl(remaining, 30, "set(keep_ttl=True) after set(ttl=30) must keep 30 s")
        assert await storage.get("hot:j") == "forever", "of concurrent sets of one key, the last to arrive wins"
        assert await storage.ttl("hot:j") is None, "set() without ttl after set(ttl=30) must remove the expiry"

    @certifies("ttl", Capability.EXPIRY)
    async def test_the_longest_ttl_is_accepted_everywhere(self, subject: Subject) -> None:
        storage = subject.storage
        elapsed = Elapsed.of(subject)
        await storage.set("long", 1, ttl=MAX_TTL_SECONDS)
        await storage.set("long_delta", 1, ttl=dt.timedelta(seconds=MAX_TTL_SECONDS))
        assert await storage.expire("long_delta", MAX_TTL_SECONDS), "expire() of a live key must return True"
        for key in ("long", "long_delta"):
            remaining = await storage.ttl(key)
            assert remaining is not None, f"a key set with the longest TTL must expire: ttl({key!r}) is None"
            elapsed.check_ttl(
                remaining,
                MAX_TTL_SECONDS,
                f"the longest TTL ({MAX_TTL_SECONDS} s, 100 years) must be kept: ttl({key!r})",
            )

    @certifies("ttl", Capability.EXPIRY)
    async def test_expired_keys_are_invisible_everywhere(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("session:old", {"n": 1}, ttl=0.3)
        await storage.set("session:live", {"n": 2})
        await subject.elapse(0.45)
        assert await storage.get("session:old") is None, "an expired key must be invisible to get()"
        assert not await storage.exists("session:old"), "an expired key must be invisible to exists()"
        got = await storage.get_many(["session:old", "session:live"])
        assert got == {"session:live": {"n": 2}}, f"an expired key must be invisible to get_many(): {got!r}"
        listed = await storage.keys("session:*")
        assert listed == ["session:live"], f"an expired key must be invisible to keys(): {listed!r}"
        counted = await storage.count("session:*")
        assert counted == 1, f"an expired key must be invisible to count(): {counted}, not 1"
        selected = (await storage.select("session:")).rows
        assert selected == [("session:live", {"n": 2})], f"an expired key must be invisible to select(): {selected!r}"
        await fails_with(
            KeyNotFoundError, storage.ttl("session:old"), "ttl() of an expired key must raise KeyNotFoundError"
        )
        assert not await storage.expire("session:old", 10), "expire() of an expired key must return False"
        assert not await storage.delete("session:old"), "delete() of an expired key must return False"
        deleted = await storage.delete_pattern("session:*")
        assert deleted == 1, f"delete_pattern() must count live keys only, never expired ones: {deleted}, not 1"

    @certifies("ttl", Capability.EXPIRY)
    async def test_a_key_expires_at_its_exact_millisecond(self, subject: Subject) -> None:
        """Expiry is ``expires_at <= now``: at its instant a key is gone; one millisecond before, it is there."""
        if not subject.harness.uses_clock:
            pytest.skip("the store keeps time itself (Harness.uses_clock=False): the kit cannot stop its clock")
        storage = subject.storage
        start = float(math.ceil(subject.clock()))  # a whole second: start + 1.5 is exact, in seconds and in ms
        subject.move_clock_to(start)
        edge = ["deal:edge", "session:edge"]  # two keyspaces, so a router's routes are both crossed
        for key in edge:
            await storage.set(key, "v", ttl=1.5)
        await storage.set("session:stays", "v")

        subject.move_clock_to(start + 1.499)
        for key in edge:
            assert await storage.get(key) == "v", f"one millisecond before its expiry, get({key!r}) must find it"
            assert await storage.exists(key), f"one millisecond before its expiry, exists({key!r}) must be true"
            remaining = await storage.ttl(key)
            assert remaining is not None, f"one millisecond before its expiry, ttl({key!r}) must not be None"
            assert 0 < remaining <= 0.002, f"one millisecond before its expiry, ttl({key!r}) is {remaining}, not 0.001"
        got = await storage.get_many(edge)
        assert got == dict.fromkeys(edge, "v"), f"one millisecond before its expiry, get_many() must find it: {got}"
        listed = await storage.keys("*:edge")
        assert listed == edge, f"one millisecond before its expiry, keys() must list it: {listed}"

        subject.move_clock_to(start + 1.5)
        for key in edge:
            rule = f"at its expiry instant (expires_at <= now) {key!r} must already be invisible to"
            got_one = await storage.get(key)
            assert got_one is None, f"{rule} get() (read {got_one!r})"
            assert not await storage.exists(key), f"{rule} exists()"
            await fails_with(KeyNotFoundError, storage.ttl(key), f"{rule} ttl() (KeyNotFoundError)")
        got = await storage.get_many(edge)
        assert got == {}, f"at its expiry instant (expires_at <= now) a key must be invisible to get_many(): {got}"
        listed = await storage.keys("*:edge")
        assert listed == [], f"at its expiry instant (expires_at <= now) a key must be invisible to keys(): {listed}"
        counted = await storage.count("*:edge")
        assert counted == 0, f"at its expiry instant (expires_at <= now) a key must be invisible to count(): {counted}"
        scanned = [key async for key in storage.scan("*:edge")]
        assert scanned == [], f"at its expiry instant (expires_at <= now) a key must be invisible to scan(): {scanned}"
        for key in edge:
            assert not await storage.expire(key, 10), f"at its expiry instant, expire({key!r}) must return False"
        assert await storage.get("session:stays") == "v", "a key without a TTL must never expire"

    @certifies("ttl", Capability.EXPIRY)
    async def test_ttl_is_kept_to_the_millisecond(self, subject: Subject) -> None:
        storage = subject.storage
        elapsed = Elapsed.of(subject)
        await storage.set("k", 1, ttl=1.5)
        remaining = await storage.ttl("k")
        assert remaining is not None, "a key set with ttl=1.5 must have a TTL"
        elapsed.check_ttl(remaining, 1.5, "ttl=1.5 must be kept to the millisecond, not rounded")
        elapsed = Elapsed.of(subject)
        await storage.set("t", 1, ttl=dt.timedelta(seconds=1.5))
        remaining = await storage.ttl("t")
        assert remaining is not None, "a key set with a timedelta TTL must have a TTL"
        elapsed.check_ttl(remaining, 1.5, "a timedelta(seconds=1.5) TTL must be kept to the millisecond")
        if subject.harness.uses_clock:
            await subject.elapse(1.2)
            assert await storage.exists("k"), "a 1.5 s TTL must not be truncated to 1 s"
            await subject.elapse(0.31)
            assert not await storage.exists("k"), "a 1.5 s TTL must not be rounded up to 2 s"

    @certifies("ttl", Capability.EXPIRY)
    async def test_overwrite_without_ttl_removes_expiry_unless_kept(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("k", 1, ttl=100)
        await storage.set("k", 2)
        assert await storage.ttl("k") is None, "set() without ttl must remove the key's expiry"
        elapsed = Elapsed.of(subject)
        await storage.set("k", 3, ttl=100)
        await storage.set("k", 4, keep_ttl=True)
        remaining = await storage.ttl("k")
        assert remaining is not None, "set(keep_ttl=True) must keep the key's expiry"
        elapsed.check_ttl(remaining, 100, "set(keep_ttl=True) must keep the remaining TTL")
        assert await storage.get("k") == 4, "set(keep_ttl=True) must still write the new value"
        await storage.set("new", 1, keep_ttl=True)
        assert await storage.ttl("new") is None, "set(keep_ttl=True) of a new key has no expiry to keep"

    @certifies("ttl", Capability.EXPIRY)
    async def test_ttl_can_be_read_and_changed(self, subject: Subject) -> None:
        storage = subject.storage
        await fails_with(KeyNotFoundError, storage.ttl("missing"), "ttl() of a missing key must raise KeyNotFoundError")
        await storage.set("k", 1)
        assert await storage.ttl("k") is None, "ttl() of a key without expiry must be None"
        elapsed = Elapsed.of(subject)
        assert await storage.expire("k", 50), "expire() of a live key must return True"
        remaining = await storage.ttl("k")
        assert remaining is not None, "expire() must give the key an expiry"
        elapsed.check_ttl(remaining, 50, "expire(k, 50) must give the key 50 s")
        assert await storage.persist("k"), "persist() of a live key must return True"
        assert await storage.ttl("k") is None, "persist() must remove the key's expiry"
        assert not await storage.expire("missing", 5), "expire() of a missing key must return False"
        assert not await storage.persist("missing"), "persist() of a missing key must return False"
        assert await storage.get("k") == 1, "changing a key's TTL must leave its value alone"

    @certifies("ttl", Capability.EXPIRY)
    async def test_expired_key_can_be_written_again(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("k", "old", ttl=0.2)
        await subject.elapse(0.3)
        await storage.set("k", "new")
        assert await storage.get("k") == "new", "an expired key must be writable again"
        assert await storage.ttl("k") is None, "a key written again without ttl must not inherit the expired TTL"

    @certifies("ttl", Capability.EXPIRY)
    async def test_set_many_ttl_applies_to_all(self, subject: Subject) -> None:
        storage = subject.storage
        elapsed = Elapsed.of(subject)
        await storage.set_many({"c": 1, "d": 2}, ttl=10)
        for key in ("c", "d"):
            remaining = await storage.ttl(key)
            assert remaining is not None, f"set_many(ttl=10) must give every item the TTL: ttl({key!r}) is None"
            elapsed.check_ttl(remaining, 10, f"set_many(ttl=10) must give every item the TTL: ttl({key!r})")
        if subject.harness.uses_clock:
            await subject.elapse(10.5)
            got = await storage.get_many(["c", "d"])
            assert got == {}, f"every item of set_many(ttl=10) must expire after 10 s: {got!r}"

    @certifies("ttl", Capability.EXPIRY)
    async def test_a_read_can_renew_the_expiry_to_a_ttl(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("session:r", {"n": 1}, ttl=10)
        elapsed = Elapsed.of(subject)
        got = await storage.get("session:r", refresh_ttl=40)
        assert got == {"n": 1}, f"get(refresh_ttl=) must return the value: {got!r}"
        remaining = await storage.ttl("session:r") or 0.0
        elapsed.check_ttl(remaining, 40, "get(refresh_ttl=40) must renew the expiry to 40 s")
        await storage.set("session:plain", 1)
        elapsed = Elapsed.of(subject)
        await storage.get("session:plain", refresh_ttl=20)
        remaining = await storage.ttl("session:plain") or 0.0
        elapsed.check_ttl(remaining, 20, "get(refresh_ttl=20) of a key without expiry must give it one")
        assert await storage.get("session:none", "default", refresh_ttl=20) == "default", "a missing key: the default"
        assert not await storage.exists("session:none"), "get(refresh_ttl=) must never create a key"
        await fails_with(InvalidTTLError, storage.get("session:r", refresh_ttl=-1), "a bad refresh TTL is refused")

    @certifies("ttl", Capability.EXPIRY)
    async def test_a_read_can_renew_the_expiry_to_the_ttl_it_was_given(self, subject: Subject) -> None:
        storage = subject.storage
        await storage.set("session:g", 1, ttl=40)
        if Capability.REFRESH not in storage.capabilities_for("session:g"):
            await fails_with(
                UnsupportedOperationError,
                storage.get("session:g", refresh_ttl=True),
                "a backend that cannot recall a key's TTL must refuse get(refresh_ttl=True)",
            )
            return
        await subject.elapse(1.0)
        before = await storage.ttl("session:g") or 0.0
        elapsed = Elapsed.of(subject)
        assert await storage.get("session:g", refresh_ttl=True) == 1, "get(refresh_ttl=True) must return the value"
        after = await storage.ttl("session:g") or 0.0
        elapsed.check_ttl(
            after,
            40,
            f"get(refresh_ttl=True) must renew the expiry to the TTL it was given (40 s): {before} -> {after}",
        )
        await storage.set("session:g", 2, keep_ttl=True)  # keeps the expiry, and the TTL it was given
        await subject.elapse(1.0)
        elapsed = Elapsed.of(subject)
        await storage.get("session:g", refresh_ttl=True)
        remaining = await storage.ttl("session:g") or 0.0
        elapsed.check_ttl(remaining, 40, "a keep_ttl write must keep the TTL the key was given")
        await storage.expire("session:g", 100)
        elapsed = Elapsed.of(subject)
        await storage.get("session:g", refresh_ttl=True)
        remaining = await storage.ttl("session:g") or 0.0
        elapsed.check_ttl(remaining, 100, "expire(100) must become the TTL the key was given")
        await storage.set("session:g", 3)
        await storage.get("session:g", refresh_ttl=True)
        assert await storage.ttl("session:g") is None, "a key written without TTL must keep none when renewed"
        await storage.incr("counter:g", ttl=50)
        await subject.elapse(1.0)
        elapsed = Elapsed.of(subject)
        await storage.get("counter:g", refresh_ttl=True)
        remaining = await storage.ttl("counter:g") or 0.0
        elapsed.check_ttl(remaining, 50, "incr(ttl=) creating a key must give it that TTL to renew to")
