"""Pub/sub: the PUBSUB claim (a subscriber receives what is published after it subscribed), or its refusal."""

from __future__ import annotations

import asyncio

from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.errors import UnsupportedOperationError

from ._base import ContractBase, certifies, fails_with
from .harness import Subject

__all__ = ["PubSubContract"]

#: The channel the tests use; behind a router, PUBSUB counts on this channel's route.
CHANNEL = "pubsub:deals"


class PubSubContract(ContractBase):
    """Area ``pubsub``: publish/subscribe when PUBSUB is claimed, a refusal when it is not."""

    @certifies("pubsub", Capability.PUBSUB, key=CHANNEL)
    async def test_publish_reaches_a_subscriber(self, subject: Subject) -> None:
        storage = subject.storage
        async with storage.subscribe(CHANNEL) as messages:
            await storage.publish(CHANNEL, {"deal": "d1", "n": 1})
            try:
                got = await asyncio.wait_for(anext(aiter(messages)), timeout=5)
            except TimeoutError:
                got = "<nothing within 5 s>"
        assert got == {"deal": "d1", "n": 1}, (
            f"a subscriber must receive what is published after it subscribed: {got!r}"
        )

    @certifies("pubsub", absent=Capability.PUBSUB, key=CHANNEL)
    async def test_pubsub_is_refused_when_not_claimed(self, subject: Subject) -> None:
        storage = subject.storage
        await fails_with(
            UnsupportedOperationError,
            storage.publish(CHANNEL, {"a": 1}),
            "a backend that does not claim PUBSUB must refuse publish() with UnsupportedOperationError",
        )
