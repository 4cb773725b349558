"""The SDK's :class:`~adcp.decisioning.TaskRegistry` (and ``ListableTaskRegistry``) on one of our stores.

Layout, under ``<namespace>:task:``: ``t:<task id>`` holds the record (``account_id`` and
``state`` as plain fields, so that listing one account's tasks is a filtered ``select``; the
buyer's payloads as JSON text, returned exactly as given). Each transition is one transaction.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from adcp.decisioning.account_projection import strip_credentials_from_wire_result
from adcp.decisioning.task_queries import list_task_records

from ad_buyer_storage import InvalidInputError, Store, Transaction
from ad_buyer_storage_adcp._base import StoreHolder, Target

__all__ = ["StorageTaskRegistry"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_TERMINAL = ("completed", "failed")


def _text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), allow_nan=False)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class StorageTaskRegistry:
    """Tasks shared by every process on the store (``is_durable``: the store's).

    *ttl*: how long a task record lives after it is issued (None: until discarded).
    """

    is_durable: bool = False  # the class's answer; each object answers for its own store

    def __init__(
        self, target: Target = None, *, ttl: timedelta | None = None, namespace: str = "adcp", **overrides: Any
    ) -> None:
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidInputError("ttl must be positive or None")
        self._holder = StoreHolder(target, namespace=namespace, kind="task", **overrides)
        self._ttl = None if ttl is None else ttl.total_seconds()
        self.is_durable = self._holder.durable

    def __repr__(self) -> str:
        return f"<StorageTaskRegistry {self._holder.raw_store!r}>"

    @property
    def store(self) -> Store:
        return self._holder.raw_store

    async def aclose(self) -> None:
        await self._holder.aclose()

    async def __aenter__(self) -> StorageTaskRegistry:
        await self._holder.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _key(self, task_id: str) -> str:
        return self._holder.key("t", task_id)

    @staticmethod
    def _record(value: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task_id": value["task_id"],
            "account_id": value["account_id"],
            "state": value["state"],
            "task_type": value["task_type"],
            "progress": _load(value["progress"]),
            "result": _load(value["result"]),
            "error": _load(value["error"]),
            "created_at": value["created_at"],
            "updated_at": value["updated_at"],
        }
        if value["context"] is not None:
            out["context"] = _load(value["context"])
        return out

    async def _transact(self, fn: Callable[[Transaction], Awaitable[T]]) -> T:
        store = await self._holder.store()
        return await store.transact(fn, attempts=50)

    async def issue(
        self, *, account_id: str, task_type: str, request_context: dict[str, Any] | None = None, **_extra: Any
    ) -> str:
        if _extra:
            log.debug("StorageTaskRegistry.issue ignoring kwargs: %s", sorted(_extra))
        if not isinstance(account_id, str) or not account_id.strip() or account_id == "<unset>":
            raise ValueError(f"account_id must be a non-empty, non-default string; got {account_id!r}")
        store = await self._holder.store()
        now = time.time()
        value = {
            "task_id": "", "account_id": account_id, "state": "submitted", "task_type": task_type,
            "progress": None, "result": None, "error": None, "context": _text(request_context),
            "created_at": now, "updated_at": now,
        }  # fmt: skip
        while True:
            task_id = f"task_{uuid.uuid4().hex[:16]}"
            if await store.set_if_absent(self._key(task_id), {**value, "task_id": task_id}, ttl=self._ttl):
                return task_id

    async def update_progress(self, task_id: str, progress: dict[str, Any]) -> None:
        key, text = self._key(task_id), _text(progress)

        async def fn(tx: Transaction) -> None:
            value = await tx.get(key)
            if value is None:
                return
            if value["state"] in _TERMINAL:
                log.warning("StorageTaskRegistry.update_progress dropped: task is already %r", value["state"])
                return
            state = "working" if value["state"] == "submitted" else value["state"]
            tx.set(key, {**value, "progress": text, "state": state, "updated_at": time.time()}, keep_ttl=True)

        await self._transact(fn)

    async def complete(self, task_id: str, result: dict[str, Any]) -> None:
        key = self._key(task_id)

        async def fn(tx: Transaction) -> None:
            value = await tx.get(key)
            if value is None:
                raise ValueError(f"Task {task_id!r} not found")
            stripped = strip_credentials_from_wire_result(value["task_type"], result)
            text = _text(stripped)
            if value["state"] == "completed":
                if _load(value["result"]) == _load(text):
                    return
                raise ValueError(f"Task {task_id!r} already completed with a different result")
            if value["state"] == "failed":
                raise ValueError(f"Task {task_id!r} already in terminal state 'failed'")
            tx.set(key, {**value, "state": "completed", "result": text, "updated_at": time.time()}, keep_ttl=True)

        await self._transact(fn)

    async def fail(self, task_id: str, error: dict[str, Any]) -> None:
        key, text = self._key(task_id), _text(error)

        async def fn(tx: Transaction) -> None:
            value = await tx.get(key)
            if value is None:
                raise ValueError(f"Task {task_id!r} not found")
            if value["state"] == "failed":
                if _load(value["error"]) == _load(text):
                    return
                raise ValueError(f"Task {task_id!r} already failed with a different error")
            if value["state"] == "completed":
                raise ValueError(f"Task {task_id!r} already in terminal state 'completed'")
            tx.set(key, {**value, "state": "failed", "error": text, "updated_at": time.time()}, keep_ttl=True)

        await self._transact(fn)

    async def get(self, task_id: str, *, expected_account_id: str | None = None) -> dict[str, Any] | None:
        store = await self._holder.store()
        value = await store.get(self._key(task_id))
        if value is None or (expected_account_id is not None and value["account_id"] != expected_account_id):
            return None
        return self._record(value)

    async def list(
        self,
        *,
        account_id: str,
        filters: dict[str, Any] | None = None,
        sort: dict[str, Any] | None = None,
        pagination: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One account's tasks as the SDK's ``list_tasks`` page (filtered by account in the store)."""
        store = await self._holder.store()
        records: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            page = await store.select(self._holder.prefix + "t:", {"account_id": account_id}, after=after, limit=500)
            records.extend(self._record(value) for _, value in page.rows)
            if page.last_key is None:
                break
            after = page.last_key
        return list_task_records(records, account_id=account_id, filters=filters, sort=sort, pagination=pagination)

    async def discard(self, task_id: str) -> None:
        store = await self._holder.store()
        await store.delete(self._key(task_id))
