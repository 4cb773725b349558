"""Multi-process: the MULTI_PROCESS claim (atomics stay exact across processes sharing the store)."""

from __future__ import annotations

import pytest

from ad_buyer_storage.contract.protocol import Capability

from ._base import ContractBase, certifies
from ._child import increment_in_processes
from .harness import Subject

__all__ = ["MultiProcessContract"]


class MultiProcessContract(ContractBase):
    """Area ``multi_process``: four processes incrementing one store lose nothing.

    Needs ``Harness.child_backend``: how a child process opens the same store.
    """

    @pytest.mark.multiprocess
    @certifies("multi_process", Capability.MULTI_PROCESS, Capability.ATOMIC)
    async def test_atomics_across_processes(self, subject: Subject) -> None:
        recipe = subject.harness.child_backend
        assert recipe is not None, "a backend claiming MULTI_PROCESS needs a harness with child_backend"
        await subject.storage.set("deal:mp", {"spend": 0})
        await increment_in_processes(recipe, "counter:mp", 100, "deal:mp", join_timeout=120)
        counter = await subject.storage.get("counter:mp")
        assert counter == 400, f"4 processes x 100 incr() on one store must add up to 400, none lost: {counter!r}"
        doc = await subject.storage.get("deal:mp")
        assert doc == {"spend": 400}, f"4 processes x 100 update() on one store must each apply once: {doc!r}"
