"""Make a target hold a source's current state of some keys, correctly under concurrency.

The mirror (every write), ``migrate`` (keys that changed while they were copied) and
``mirror-repair`` all copy keys from one store to another while other writers (other tasks,
other processes, each with a mirror of its own) change those keys on the source. Replaying
each caller's operation on the target in the order calls happen to finish would leave the
target with whichever copy landed last. Instead, a copy of a key goes in rounds:

1. take the key's state on the source: what a write just stored there (known without a read),
   or a read of its record and remaining TTL, or "absent";
2. put exactly that state on the target (an unconditional write with the same value, version
   and expiry, or a delete);
3. read the key's version on the source again. If it is still the version of step 1, the copy
   is *settled*; otherwise another write came in between, and the next round copies the newer
   state.

Why that converges once writers stop: versions are never reused (core mints 64 random bits for
every write, expiry changes through the mirror included), so a settled round proves that no
write reached the source between its step 1 and step 3, and its put, made in between, carried
the state that was current then. Take the put that lands last on the target: it belongs to a
settled round (an unsettled one is always followed by another put), and every write to the
source is followed by a settled round of its own writer that starts after it. So the last
write's state is current for the whole of the last put's round: the target ends with it.

Within one process, copies of the same key share one copier: writers that arrive while a round
is in flight wait for the next round, which takes the newest state for all of them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from ad_buyer_storage.contract.protocol import (
    NO_EXPIRY,
    NO_KEY,
    Capability,
    Record,
    StorageBackend,
    SupportsExpiry,
    SupportsRouting,
    Write,
)
from ad_buyer_storage.errors import BusyError

__all__ = ["ABSENT", "KeyState", "Replicator", "read_states"]

_TTL_READS_IN_FLIGHT = 64
_MAX_ROUNDS = 100


@dataclass(frozen=True, slots=True)
class KeyState:
    """A key's state on the source: its record and remaining TTL (ms, None: none), or absent.

    ``ttl_known=False``: the record is known (a write just stored it) but the expiry it kept is
    not; a copy reads only the TTL.
    """

    record: Record | None
    ttl_ms: int | None = None
    ttl_known: bool = True

    @property
    def version(self) -> str | None:
        return None if self.record is None else self.record.version


ABSENT = KeyState(None)


def _text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode()


async def read_states(source: StorageBackend, keys: Sequence[str]) -> dict[str, KeyState]:
    """Each key's record and remaining TTL on *source* (one bulk read, then one TTL read per key)."""
    records = await source.read(keys)
    return await _with_ttls(source, dict(zip(keys, records, strict=True)))


async def _with_ttls(source: StorageBackend, records: Mapping[str, Record | None]) -> dict[str, KeyState]:
    """The states of known *records*, completed with their remaining TTL read on *source*."""
    gate = asyncio.Semaphore(_TTL_READS_IN_FLIGHT)
    routing = source if isinstance(source, SupportsRouting) else None

    async def state(key: str, record: Record | None) -> KeyState:
        if record is None:
            return ABSENT
        if Capability.EXPIRY not in (source.capabilities if routing is None else routing.capabilities_for(key)):
            return KeyState(record, None)  # no expiry there: nothing to read
        async with gate:
            remaining = await cast(SupportsExpiry, source).get_ttl(key)
        if remaining == NO_KEY:
            return ABSENT  # gone since: the check after the put decides
        return KeyState(record, None if remaining == NO_EXPIRY else max(int(remaining), 1))

    found = await asyncio.gather(*(state(k, r) for k, r in records.items()))
    return dict(zip(records, found, strict=True))


async def _nothing() -> dict[str, KeyState]:
    return {}


@dataclass(slots=True)
class _Copy:
    """The copy of one key in this process: who waits for which write, and its copier."""

    wanted: int = 0  # writes registered so far
    known: KeyState | None = None  # the newest written state, if a writer knew it (else read)
    busy: bool = False
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)


class Replicator:
    """Copies keys from *source* to *target* in settled rounds (see the module docstring)."""

    def __init__(self, source: StorageBackend, target: StorageBackend, *, max_rounds: int = _MAX_ROUNDS) -> None:
        self.source, self.target = source, target
        self.max_rounds = max_rounds
        self._copies: dict[str, _Copy] = {}

    async def settle(self, states: Mapping[str, KeyState | None]) -> None:
        """Return once each key's state on the target is the one the source held at some moment
        after this call began. *states* gives, per key, the state a write just left on the
        source, or None to read it there."""
        loop = asyncio.get_running_loop()
        mine: list[str] = []
        waiting: list[asyncio.Future[None]] = []
        for key, state in states.items():
            copy = self._copies.get(key)
            if copy is None:
                copy = self._copies[key] = _Copy()
            copy.wanted += 1
            copy.known = state
            if copy.busy:
                future: asyncio.Future[None] = loop.create_future()
                copy.waiters.append((copy.wanted, future))
                waiting.append(future)
            else:
                copy.busy = True
                mine.append(key)
        error: BaseException | None = None
        if mine:
            try:
                await self._drive(mine)
            except Exception as exc:  # noqa: BLE001 - the waiters are still owed an answer
                error = exc
        for outcome in await asyncio.gather(*waiting, return_exceptions=True):
            if error is None and isinstance(outcome, BaseException):
                error = outcome
        if error is not None:
            raise error

    async def _drive(self, keys: list[str]) -> None:
        """Copy *keys* (this task is their copier) until every write registered for them settled."""
        todo = keys
        try:
            for rounds in range(1, self.max_rounds + 1):
                taken = {key: self._copies[key].wanted for key in todo}
                known = {key: self._copies[key].known for key in todo}
                for key in todo:
                    self._copies[key].known = None  # a later write sets it again
                unsettled = await self._round(todo, known)
                still: list[str] = []
                for key in todo:
                    if key not in unsettled:
                        self._release(key, taken[key], None)
                    if key in unsettled or self._copies[key].wanted > taken[key]:
                        still.append(key)
                    else:
                        self._finish(key)  # a later writer of it becomes its copier
                todo = still
                if not todo:
                    return
                if unsettled:
                    # Other writers are at it: let them finish before looking again.
                    await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**rounds)))
            raise BusyError(
                f"{len(todo)} key(s) kept changing for {self.max_rounds} rounds of copying; "
                "the copy is behind until writes to them pause"
            )
        except BaseException as exc:
            for key in todo:
                self._release(key, self._copies[key].wanted, exc)
                self._finish(key)
            raise

    def _finish(self, key: str) -> None:
        copy = self._copies.pop(key)
        assert not copy.waiters, "a waiter outlived its copier"

    def _release(self, key: str, upto: int, error: BaseException | None) -> None:
        copy = self._copies[key]
        still: list[tuple[int, asyncio.Future[None]]] = []
        for wanted, future in copy.waiters:
            if wanted > upto:
                still.append((wanted, future))
            elif not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
        copy.waiters = still

    async def _round(self, keys: list[str], known: Mapping[str, KeyState | None]) -> set[str]:
        """One round for *keys*; return those that did not settle."""
        states = {k: s for k, s in known.items() if s is not None and s.ttl_known}
        ttl_only = {k: s.record for k, s in known.items() if s is not None and not s.ttl_known}
        unknown = [k for k in keys if k not in states and k not in ttl_only]
        if unknown or ttl_only:
            read, completed = await asyncio.gather(
                read_states(self.source, unknown) if unknown else _nothing(), _with_ttls(self.source, ttl_only)
            )
            states.update(read)
            states.update(completed)
        writes = [
            Write(k, _text(s.record.value), s.record.version, s.ttl_ms)
            for k in keys
            if (s := states[k]).record is not None
        ]
        gone = [k for k in keys if states[k].record is None]
        await asyncio.gather(
            *([self.target.write(writes)] if writes else []), *([self.target.remove(gone)] if gone else [])
        )
        now = await self.source.read(keys)
        return {k for k, r in zip(keys, now, strict=True) if (None if r is None else r.version) != states[k].version}
