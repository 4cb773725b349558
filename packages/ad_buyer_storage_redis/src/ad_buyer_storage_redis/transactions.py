"""Transactions (one script, see scripts.COMMIT) and turns (``SupportsTurns``) on Redis.

A commit checks every version read and, only if all still hold, applies every write and delete;
it is never sent twice. A turn is, per key, a lease key (``<prefix>\\0turn\\0<key>``) set to the
turn's token once that token heads the key's queue of waiters; commits of other tokens fail
while a key they touch is under a lease. On a cluster, a key without a hash tag has no turn (its
lease could not share its slot): a transaction of such keys stays optimistic.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from ad_buyer_storage.contract.protocol import Check, Write
from ad_buyer_storage.errors import UnsupportedOperationError
from ad_buyer_storage.kit import turns

from . import scripts
from .connections import RedisClient

__all__ = ["Transactions"]

#: Between a user key and the prefix in the keys of its turn: no user key holds a NUL.
_TURN_MARK = b"\x00turn\x00"
#: How long a turn lasts at most if its holder dies (ms); a holder slower than that just
#: conflicts and retries, as without a turn.
_TURN_LEASE_MS = 10_000
#: The token of the turn this context holds (see turn()).
_TURN_TOKEN: ContextVar[str] = ContextVar("ad_buyer_storage_redis_turn", default="")


class Transactions(RedisClient):
    """``commit`` and ``turn``, for one server or a cluster."""

    async def commit(self, checks: Sequence[Check], writes: Sequence[Write], deletes: Sequence[str]) -> bool:
        """One script: every check, then every write and delete, atomically (see scripts.COMMIT).

        On a cluster a script runs on one node, so every key must be in one hash slot: give the
        keys of a transaction one hash tag (``campaign:{c1}``, ``order:{c1}:o1``); otherwise the
        commit is refused before anything is sent."""
        keys = (
            [self._full(k) for k, _ in checks] + [self._full(w.key) for w in writes] + [self._full(k) for k in deletes]
        )
        if self.cluster and len({self._client.keyslot(k) for k in keys}) > 1:
            raise UnsupportedOperationError(
                "on Redis Cluster a transaction's keys must share one hash slot; give them one hash tag "
                f"(campaign:{{c1}} and order:{{c1}}:o1); these span several: {', '.join(k for k, _ in checks[:3])}"
            )
        if not self._registered:
            await self._register()
        args: list[Any] = [len(checks), len(writes)]
        args += [version or "" for _, version in checks]
        for w in writes:
            args += (w.value, w.version, "" if w.ttl_ms is None else str(w.ttl_ms), "1" if w.keep_ttl else "0")
        # A commit that only checks (a read set validated) writes nothing a turn protects: no turn check.
        turn_keys = (
            [t for t in (self._turn_key(k) for k in dict.fromkeys(keys)) if t is not None] if writes or deletes else []
        )
        keys += turn_keys
        args += [len(turn_keys), _TURN_TOKEN.get()]
        # Never sent twice: a resend after a lost reply would find its own writes and fail its checks.
        applied = await self._run_script(scripts.COMMIT, keys, args, idempotent=False)
        return int(applied) == 1

    def _turn_key(self, full: bytes) -> bytes | None:
        """The key of *full*'s turn (in its hash slot on a cluster; None if it cannot be)."""
        turn = self._prefix_bytes + _TURN_MARK + full[self._cut :]
        if self.cluster and self._client is not None and self._client.keyslot(turn) != self._client.keyslot(full):
            return None  # a key without a hash tag: a transaction of it alone stays optimistic
        return turn

    @asynccontextmanager
    async def turn(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """The turn on *keys* (see SupportsTurns): per key, in key order, a lease key set to this
        turn's token once the token heads the key's queue of waiters (ordered by arrival; a
        waiter that stops polling drops out after a second); the lease lapses after 10 s if its
        holder dies. Commits elsewhere fail while a key they touch has another token's lease."""
        wanted = sorted(set(keys) - turns.held(self, keys))
        if not wanted or _TURN_TOKEN.get():
            yield
            return
        token = uuid.uuid4().hex
        taken: list[list[bytes]] = []
        waiting: list[bytes] | None = None
        try:
            for key in wanted:
                turn = self._turn_key(self._full(key))
                if turn is None:
                    continue
                waiting = [turn, turn + b"\x00queue", turn + b"\x00beats"]
                pause = 0.001
                while not await self._turn_script(scripts.TAKE_TURN, waiting, [token, _TURN_LEASE_MS]):
                    await asyncio.sleep(random.uniform(pause / 2, pause))
                    pause = min(pause * 2, 0.02)
                taken.append(waiting)
                waiting = None
            with turns.holding(self, wanted):
                context = _TURN_TOKEN.set(token)
                try:
                    yield
                finally:
                    _TURN_TOKEN.reset(context)
        finally:
            for triple in [*taken, *([waiting] if waiting else [])]:  # give back, or leave the queue
                with contextlib.suppress(Exception):
                    await self._turn_script(scripts.GIVE_TURN, triple, [token])

    async def _turn_script(self, script: scripts.Script, keys: list[bytes], args: list[Any]) -> bool:
        """Run a turn script (safe to resend: taking a turn held already answers 1)."""
        return bool(await self._run_script(script, keys, args, idempotent=True))
