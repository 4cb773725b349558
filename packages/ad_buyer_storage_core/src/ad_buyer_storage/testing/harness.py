"""What a backend author gives the conformance kit: a way to make backends on one store."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ad_buyer_storage.client.store import Store
from ad_buyer_storage.contract.clock import ManualClock
from ad_buyer_storage.contract.protocol import Capability, StorageBackend

__all__ = ["Harness", "Subject", "load_callable", "new_storage", "new_store"]


@dataclass
class Harness:
    """How the kit builds backends for one test.

    ``make_backend(clock)`` returns a new, unconnected backend on the *same* store each time
    it is called within a test (the kit reopens the store to check durability), isolated
    from other tests (a temp file, a unique namespace...).
    """

    make_backend: Callable[[ManualClock], StorageBackend]
    #: True if the backend keeps time with the clock it is given (memory, SQLite): TTL tests
    #: then advance the clock instead of sleeping. False for server clocks (Redis, Postgres).
    uses_clock: bool = True
    #: For backends claiming MULTI_PROCESS: ``("package.module:function", args)``, a picklable
    #: recipe a child process calls to get a backend on the same store.
    child_backend: tuple[str, tuple[Any, ...]] | None = None
    #: Settings for the :class:`~ad_buyer_storage.Store` the kit wraps the backend in (``max_value_bytes`` ...).
    storage_options: dict[str, Any] = field(default_factory=dict)
    #: Optional: make the *store itself* refuse every write to a key from now on (a trigger, a
    #: value of another type...), called after connect. With it, the kit checks that a write
    #: the server refuses fails alone, never the writes that shared its round trip.
    fail_writes_to: Callable[[str], Awaitable[None]] | None = None


@dataclass
class Subject:
    """The connected store under test (a plain :class:`~ad_buyer_storage.Store`: the kit
    certifies the generic API), its clock, and ways to wait and reopen.

    *coalesce* False: the storage (and every one ``reopen`` makes) sends each call to the
    backend on its own, without coalescing or combining concurrent ones (``Store(...,
    coalesce=False)``), so concurrent calls on one key reach the backend together.
    """

    storage: Store
    clock: ManualClock
    harness: Harness
    coalesce: bool = True

    async def elapse(self, seconds: float) -> None:
        """Let *seconds* pass for expiry purposes (instantly, on a controllable clock)."""
        if self.harness.uses_clock:
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    def reopen(self) -> Store:
        """A new, unconnected Store on the same store (same clock, same coalescing)."""
        return new_store(self.harness, self.clock, coalesce=self.coalesce)

    def domain(self, **options: Any) -> Any:
        """The buyer agent's ``Storage`` on the store under test (the opt-in ``domain`` area;
        *options* as ``Storage`` takes them). Imported here, so the rest of the kit never loads
        the domain."""
        from ad_buyer_storage.domain.storage import Storage  # noqa: PLC0415 - the opt-in area only

        return Storage(self.storage, **options)

    def claims(self, capability: Capability, key: str | None = None) -> bool:
        """Whether the backend claims *capability* (for *key*'s route, behind a router)."""
        claimed = self.storage.capabilities if key is None else self.storage.capabilities_for(key)
        return capability in claimed

    def move_clock_to(self, instant: float) -> None:
        """Set the kit's clock to exactly *instant* (seconds since the epoch; never backwards).

        ``ManualClock.advance`` adds floats, which may land a hair off a millisecond; this lands
        on the very float given, so a test can stand on an expiry instant.
        """
        self.clock.advance(instant - self.clock())
        if self.clock() != instant:  # pragma: no cover - float addition is exact between near values
            raise RuntimeError(f"the clock reads {self.clock()!r}, not {instant!r}")


def new_store(harness: Harness, clock: ManualClock, *, coalesce: bool = True) -> Store:
    """A new, unconnected Store on a new backend from *harness*; with *coalesce* False, one
    that sends every call to the backend on its own (else as ``storage_options`` say)."""
    options = dict(harness.storage_options)
    if not coalesce:
        options["coalesce"] = False
    return Store(harness.make_backend(clock), **options)


#: The name before the kit certified the generic store: it makes a :class:`Store` too.
new_storage = new_store


def load_callable(path: str) -> Callable[..., Any]:
    module_name, _, attr = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]
