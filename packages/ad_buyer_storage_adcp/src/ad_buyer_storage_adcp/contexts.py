"""The SDK's :class:`~adcp.decisioning.MediaBuyContextStore` on one of our stores.

Layout, under ``<namespace>:context:``: ``b:<account>:<media buy>`` holds the buy's ``context``
and each package's, as JSON text (returned unchanged: nulls, key order, numbers of any size).
First write wins, per buy and per package, in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from adcp.decisioning import MediaBuyContexts

from ad_buyer_storage import Store, Transaction
from ad_buyer_storage_adcp._base import StoreHolder, Target

__all__ = ["StorageMediaBuyContextStore"]


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class StorageMediaBuyContextStore:
    """Media-buy contexts shared by every process on the store (``is_durable``: the store's).

    *ttl*: seconds a buy's contexts live after their first write (None: for ever).
    """

    is_durable: bool = False  # the class's answer; each object answers for its own store

    def __init__(
        self, target: Target = None, *, ttl: float | None = None, namespace: str = "adcp", **overrides: Any
    ) -> None:
        self._holder = StoreHolder(target, namespace=namespace, kind="context", **overrides)
        self._ttl = ttl
        self.is_durable = self._holder.durable

    def __repr__(self) -> str:
        return f"<StorageMediaBuyContextStore {self._holder.raw_store!r}>"

    @property
    def store(self) -> Store:
        return self._holder.raw_store

    async def aclose(self) -> None:
        await self._holder.aclose()

    async def __aenter__(self) -> StorageMediaBuyContextStore:
        await self._holder.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _key(self, account_id: str, media_buy_id: str) -> str:
        return self._holder.key("b", account_id, media_buy_id)

    async def save_contexts(self, account_id: str, media_buy_id: str, contexts: MediaBuyContexts) -> None:
        key = self._key(account_id, media_buy_id)
        context = None if contexts.context is None else _text(contexts.context)
        packages = {str(pid): _text(value) for pid, value in contexts.package_contexts.items()}

        async def fn(tx: Transaction) -> None:
            value = await tx.get(key)
            if value is None:
                tx.set(key, {"c": context, "p": packages}, ttl=self._ttl)
                return
            new = {pid: text for pid, text in packages.items() if pid not in value["p"]}
            merged = {"c": value["c"] if value["c"] is not None else context, "p": {**value["p"], **new}}
            if merged != value:
                tx.set(key, merged, keep_ttl=True)

        store = await self._holder.store()
        await store.transact(fn, attempts=50)

    async def load_contexts(self, account_id: str, media_buy_ids: Sequence[str]) -> dict[str, MediaBuyContexts]:
        store = await self._holder.store()
        keys = {self._key(account_id, mid): mid for mid in media_buy_ids}
        found = await store.get_many(keys)
        return {
            keys[key]: MediaBuyContexts(
                context=None if value["c"] is None else json.loads(value["c"]),
                package_contexts={pid: json.loads(text) for pid, text in value["p"].items()},
            )
            for key, value in found.items()
        }
