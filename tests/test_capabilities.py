"""One way to say what a backend can do: flags are the truth, protocols give their methods'
shape, hooks are protocols found with isinstance, and wrappers follow one rule (issue 24, point 2).

Runs on every Python the ``tests`` session runs (3.11 to 3.13): the wrappers' isinstance answers
must not depend on the version (3.12 stopped consulting ``__getattr__`` in protocol checks).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from ad_buyer_storage_example.backend import DictStore  # type: ignore[import-untyped]

from ad_buyer_storage import Capability, ConfigurationError, ManualClock, Store, UnsupportedOperationError
from ad_buyer_storage.backends.memory import MemoryBackend
from ad_buyer_storage.composed import BreakerPolicy, guarded
from ad_buyer_storage.composed.hybrid import HybridBackend, Route
from ad_buyer_storage.composed.mirror import MirrorBackend, mirror_of
from ad_buyer_storage.contract import (
    Record,
    SupportsPubSub,
    SupportsQuery,
    SupportsReleaseNamespace,
    SupportsRemovePrefix,
    SupportsRouting,
    SupportsTelemetry,
)
from ad_buyer_storage.contract.protocol import (
    FLAG_METHODS,
    Filter,
    StorageBackend,
    SupportsAtomic,
    SupportsExpiry,
    SupportsParts,
    unimplemented,
)
from ad_buyer_storage.testing import Harness, LifecycleContract, Subject

HOOKS = (SupportsQuery, SupportsRemovePrefix, SupportsReleaseNamespace, SupportsTelemetry, SupportsRouting)


class Boasting(DictStore):  # type: ignore[misc]
    """Claims ATOMIC and TRANSACTIONS without their methods."""

    name = "boasting"
    capabilities = frozenset({Capability.EXPIRY, Capability.ATOMIC, Capability.TRANSACTIONS})

    def __init__(self) -> None:
        super().__init__()
        self.connected = False

    async def connect(self) -> None:
        self.connected = True


class Stubbed(DictStore):  # type: ignore[misc]
    """A plugin written against the old protocol: stubs for flags it does not claim."""

    name = "stubbed"
    called: list[str]

    def __init__(self) -> None:
        super().__init__()
        self.called = []

    async def increment(self, key: str, amount: int, version: str, ttl_ms: int | None) -> int:
        self.called.append("increment")
        raise NotImplementedError("not ATOMIC")

    async def read_refresh(self, key: str, ttl_ms: int | None) -> Record | None:
        self.called.append("read_refresh")
        raise NotImplementedError("not REFRESH")


class Indexed(MemoryBackend):
    """A backend with a hook (query), to see wrappers take it on."""

    async def query(
        self, prefix: str, where: Sequence[Filter], after: str | None, limit: int
    ) -> Sequence[tuple[str, Record]]:
        return []


def test_every_flag_with_methods_has_its_protocol_and_the_primitives_are_only_mandatory() -> None:
    assert set(FLAG_METHODS) == set(Capability) - {Capability.DURABLE, Capability.MULTI_PROCESS}
    store = DictStore()
    assert isinstance(store, StorageBackend), "the mandatory primitives alone make a StorageBackend"
    assert isinstance(store, SupportsExpiry)
    assert not isinstance(store, SupportsAtomic), "the example plugin no longer stubs increment"
    assert unimplemented(store) == {}
    assert unimplemented(Boasting()) == {Capability.ATOMIC: ["increment"], Capability.TRANSACTIONS: ["commit"]}
    assert unimplemented(MemoryBackend()) == {}


async def test_a_flag_claimed_without_its_methods_is_refused_before_any_io() -> None:
    backend = Boasting()
    store = Store(backend)
    with pytest.raises(ConfigurationError) as caught:
        await store.connect()
    message = str(caught.value)
    assert "'boasting'" in message
    assert "ATOMIC needs increment" in message
    assert "TRANSACTIONS needs commit" in message
    assert not backend.connected, "refused before connecting"


@pytest.mark.parametrize("wrap", ["guarded", "hybrid route", "mirror secondary"])
async def test_a_false_claim_inside_a_composite_is_refused_too(wrap: str) -> None:
    backend = Boasting()
    composite: StorageBackend
    if wrap == "guarded":
        composite = guarded(backend, BreakerPolicy())
    elif wrap == "hybrid route":
        composite = HybridBackend([Route("", MemoryBackend(), "memory"), Route("b:", backend, "boasting")])
    else:
        composite = mirror_of(MemoryBackend(), backend)
    with pytest.raises(ConfigurationError, match="ATOMIC needs increment"):
        await Store(composite).connect()
    assert not backend.connected


async def test_stubs_of_flags_not_claimed_keep_working_and_are_never_called() -> None:
    backend = Stubbed()
    async with Store(backend) as store:
        await store.set("k", 1, ttl=60)
        with pytest.raises(UnsupportedOperationError, match="atomic"):
            await store.incr("n")
        with pytest.raises(UnsupportedOperationError, match="TTL"):  # no REFRESH: cannot recall the TTL
            await store.get("k", refresh_ttl=True)
        assert await store.get("k", refresh_ttl=30) == 1  # a read then an expire, not read_refresh
        assert 29 < (await store.ttl("k") or 0) <= 30
    assert backend.called == [], "the flags decide: a stub of a flag not claimed is never called"


async def test_the_refresh_flag_decides_not_the_method() -> None:
    class Unclaimed(MemoryBackend):
        capabilities = MemoryBackend.capabilities - {Capability.REFRESH}

    async with Store(Unclaimed()) as store:
        await store.set("s", 1, ttl=40)
        with pytest.raises(UnsupportedOperationError):
            await store.get("s", refresh_ttl=True)
    async with Store(MemoryBackend()) as store:
        await store.set("s", 1, ttl=40)
        assert await store.get("s", refresh_ttl=True) == 1


def _hooks(backend: object) -> dict[str, bool]:
    return {protocol.__name__: isinstance(backend, protocol) for protocol in HOOKS}


@pytest.mark.parametrize("inner", [MemoryBackend, DictStore, Indexed], ids=lambda c: c.__name__)
def test_the_breaker_has_exactly_its_backends_hooks(inner: type[Any]) -> None:
    backend = inner()
    wrapped = guarded(backend, BreakerPolicy())
    assert _hooks(wrapped) == _hooks(backend)
    assert wrapped.capabilities == backend.capabilities
    assert isinstance(wrapped, SupportsParts)
    assert list(wrapped.parts()) == [("", backend)]
    # The flags' methods are forwarded whatever the inner claims (called only under the flag).
    assert isinstance(wrapped, SupportsPubSub)
    assert isinstance(wrapped, SupportsAtomic)


def test_the_issue_s_case_answers_the_same_on_every_python() -> None:
    assert isinstance(guarded(MemoryBackend(), BreakerPolicy()), SupportsTelemetry)
    assert not isinstance(guarded(DictStore(), BreakerPolicy()), SupportsTelemetry)


def test_the_mirror_and_the_router_have_a_hook_only_where_their_parts_do() -> None:
    plain = mirror_of(MemoryBackend(), MemoryBackend())
    assert isinstance(plain, MirrorBackend)
    assert not isinstance(plain, SupportsQuery)
    assert isinstance(plain, SupportsTelemetry)  # the primary's facts
    assert not isinstance(plain, SupportsReleaseNamespace)
    indexed = mirror_of(Indexed(), MemoryBackend())
    assert isinstance(indexed, SupportsQuery)
    assert not isinstance(mirror_of(MemoryBackend(), Indexed()), SupportsQuery), "reads come from the primary"
    assert [label for label, _ in plain.parts()] == ["primary", "secondary"]
    assert Capability.PUBSUB in plain.capabilities
    assert Capability.REFRESH not in plain.capabilities

    router = HybridBackend([Route("", MemoryBackend(), "a"), Route("x:", DictStore(), "b")])
    assert not isinstance(router, SupportsQuery)
    assert isinstance(router, SupportsRouting)
    assert router.capabilities == {Capability.EXPIRY}
    assert router.capabilities_for("x:1") == {Capability.EXPIRY}
    assert Capability.PUBSUB in router.capabilities_for("y")
    assert sorted(label for label, _ in router.parts()) == ["a", "b"]
    assert (router.route_of("x:1"), router.route_of("y")) == ("b", "a")
    assert isinstance(HybridBackend([Route("", MemoryBackend(), "a"), Route("x:", Indexed(), "b")]), SupportsQuery)


def test_no_wrapper_reads_attributes_through() -> None:
    wrappers: list[object] = [
        guarded(MemoryBackend(), BreakerPolicy()),
        mirror_of(MemoryBackend(), MemoryBackend()),
        HybridBackend([Route("", MemoryBackend(), "a")]),
    ]
    for wrapper in wrappers:
        assert not any("__getattr__" in vars(cls) for cls in type(wrapper).__mro__), type(wrapper).__mro__
    # One class per combination of hooks, made once.
    assert type(guarded(MemoryBackend(), BreakerPolicy())) is type(guarded(MemoryBackend(), BreakerPolicy()))
    for inner in (MemoryBackend(), DictStore()):  # copies keep their class (copy calls __new__ bare)
        wrapped = guarded(inner, BreakerPolicy())
        copied = copy.copy(wrapped)
        assert type(copied) is type(wrapped)
        assert copied.inner is inner  # type: ignore[attr-defined]


async def test_a_router_route_without_a_flag_refuses_its_methods() -> None:
    router = HybridBackend([Route("", MemoryBackend(), "memory"), Route("plain:", DictStore(), "dict")])
    async with Store(router) as store:
        assert await store.incr("n") == 1
        with pytest.raises(UnsupportedOperationError, match="plain:n"):
            await store.incr("plain:n")
        info: Mapping[str, object] = await store.info()
        assert info["capabilities"] == ["expiry"]


async def test_the_kit_names_a_flag_claimed_without_its_methods() -> None:
    clock = ManualClock()
    storage = Store(Boasting())  # not connected: connect() would refuse it first
    subject = Subject(storage, clock, Harness(lambda c: Boasting()))
    with pytest.raises(AssertionError, match="ATOMIC needs increment; TRANSACTIONS needs commit"):
        await LifecycleContract().test_backend_implements_the_protocol(subject)
    honest = Store(guarded(MemoryBackend(clock=clock), BreakerPolicy()))
    await LifecycleContract().test_backend_implements_the_protocol(
        Subject(honest, clock, Harness(lambda c: MemoryBackend(clock=c)))
    )
