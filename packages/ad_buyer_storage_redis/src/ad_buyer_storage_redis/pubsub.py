"""Publish and subscribe on one server (or Sentinel's master): redis-py's asyncio cluster client
has none, so a cluster does not claim the capability."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from ad_buyer_storage.contract.protocol import Capability
from ad_buyer_storage.errors import NotConnectedError

from .connections import RedisClient

__all__ = ["PubSub"]


class PubSub(RedisClient):
    """``publish`` and ``subscribe``: channels are keys of the namespace (PREFIX + channel)."""

    extra_capabilities = frozenset({Capability.PUBSUB})

    async def publish(self, channel: str, message: str) -> int:
        full = self._full(channel)
        return int(await self._call(lambda c: c.publish(full, message), idempotent=False))

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self._subscription(self._full(channel))

    @asynccontextmanager
    async def _subscription(self, full: bytes) -> AsyncIterator[AsyncIterator[str]]:
        if self._client is None:
            raise NotConnectedError("the Redis backend is not connected")
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            with self._errors.mapped():
                await pubsub.subscribe(full)
            yield self._messages(pubsub)
        finally:
            await pubsub.aclose()

    async def _messages(self, pubsub: Any) -> AsyncIterator[str]:
        with self._errors.mapped():
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield message["data"].decode()
