"""What every part of the kit shares: its fixtures, the ``certifies`` and ``also_uncoalesced``
markers, and a check that an awaitable fails with the right error (saying which rule broke
when it does not)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, NamedTuple, TypeVar

import pytest
import pytest_asyncio

from ad_buyer_storage.contract.clock import ManualClock
from ad_buyer_storage.contract.protocol import Capability

from .harness import Harness, Subject, new_store
from .plugin import AREAS, BACKEND_PROPERTY

__all__ = ["ContractBase", "Rule", "also_uncoalesced", "certifies", "fails_with", "rule_of"]

E = TypeVar("E", bound=BaseException)


class Rule(NamedTuple):
    """What a kit test certifies: its area, the capabilities it needs, or the one whose absence it checks."""

    area: str
    needs: tuple[Capability, ...] = ()
    absent: Capability | None = None
    #: The key whose route's capabilities count (a router may offer pub/sub on one route only).
    key: str | None = None

    def skip_reason(self, subject: Subject) -> str | None:
        """Why this test does not apply to the backend under test, or None if it does."""
        missing = [cap for cap in self.needs if not subject.claims(cap, self.key)]
        if missing:
            return "not claimed: " + ", ".join(cap.name for cap in missing)
        if self.absent is not None and subject.claims(self.absent, self.key):
            return f"{self.absent.name} claimed: its refusal is checked only on backends that do not claim it"
        return None


def certifies(
    area: str, *needs: Capability, absent: Capability | None = None, key: str | None = None
) -> pytest.MarkDecorator:
    """Mark a kit test: the *area* it certifies, and when it applies.

    ``certifies("ttl", Capability.EXPIRY)`` runs only if the backend claims EXPIRY (it is skipped,
    with the reason, if not); ``certifies("ttl", absent=Capability.EXPIRY)`` runs only if it does
    not (it checks the refusal); ``certifies("kv")`` always runs.
    """
    if area not in AREAS:
        raise ValueError(f"unknown conformance area {area!r}; one of {', '.join(AREAS)}")
    return pytest.mark.certifies(area, needs=needs, absent=absent, key=key)


#: Run a kit test twice: through the store's coalescing and combining, as every deployment
#: runs (``[coalesced]``), and with them off (``[uncoalesced]``). Coalescing sends concurrent
#: writes of one key in one batch and combines concurrent increments and updates of one key
#: into one call, so with it on, concurrent calls on one key never reach the backend together:
#: a backend whose increment or conditional write reads, awaits, then writes would pass. With
#: it off, each call is its own round trip, and such a race shows. Only tests that contend on
#: a key need both runs.
also_uncoalesced = pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "uncoalesced"])


def rule_of(node: pytest.Item) -> Rule | None:
    marker = node.get_closest_marker("certifies")
    if marker is None:
        return None
    return Rule(marker.args[0], tuple(marker.kwargs.get("needs", ())), marker.kwargs.get("absent"),
                marker.kwargs.get("key"))  # fmt: skip


async def fails_with(error: type[E], call: Awaitable[Any], rule: str) -> E:
    """Await *call*; return the *error* it raised, or fail saying which *rule* broke."""
    try:
        result = await call
    except error as exc:
        return exc
    except Exception as exc:
        raise AssertionError(f"{rule}: expected {error.__name__}, got {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"{rule}: expected {error.__name__}, but the call returned {result!r}")


@pytest.mark.conformance
@pytest.mark.asyncio
class ContractBase:
    """The fixtures every part of the kit uses. Subclass a part and provide ``harness``."""

    @pytest.fixture
    def harness(self) -> Harness:
        raise NotImplementedError("provide a `harness` fixture returning ad_buyer_storage.testing.Harness")

    @pytest.fixture
    def coalesce(self) -> bool:
        """Whether the kit's ``Store`` coalesces concurrent calls: yes (or as the harness's
        ``storage_options`` say), except in the ``[uncoalesced]`` run of an ``also_uncoalesced`` test."""
        return True

    @pytest_asyncio.fixture
    async def subject(self, harness: Harness, coalesce: bool, request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
        clock = ManualClock()
        storage = new_store(harness, clock, coalesce=coalesce)
        await storage.connect()
        try:
            subject = Subject(storage, clock, harness, coalesce=coalesce)
            claimed = ", ".join(sorted(c.value for c in storage.capabilities)) or "no capabilities"
            request.node.user_properties.append((BACKEND_PROPERTY, f"{storage.name} ({claimed})"))
            rule = rule_of(request.node)
            reason = None if rule is None else rule.skip_reason(subject)
            if reason is not None:
                pytest.skip(reason)
            yield subject
        finally:
            if storage.is_open:
                await storage.clear()
            await storage.aclose()
