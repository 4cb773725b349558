"""Which turns (see :class:`~ad_buyer_storage.contract.protocol.SupportsTurns`) this context holds.

A backend's ``turn(keys)`` records here, for the block's duration, that the running context (its
task, and what that awaits) holds the turn on *keys* of that backend; its ``commit`` then lets
those keys through where it fails any other transaction touching a key under someone's turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["held", "holding"]

_HELD: ContextVar[frozenset[tuple[int, str]]] = ContextVar("ad_buyer_storage_turns", default=frozenset())


def held(owner: object, keys: Iterable[str]) -> set[str]:
    """Those of *keys* whose turn this context holds on *owner* (a backend)."""
    mine = _HELD.get()
    if not mine:
        return set()
    return {key for key in keys if (id(owner), key) in mine}


@contextmanager
def holding(owner: object, keys: Iterable[str]) -> Iterator[None]:
    """Record, for the block, that this context holds the turn on *keys* of *owner*."""
    token = _HELD.set(_HELD.get() | {(id(owner), key) for key in keys})
    try:
        yield
    finally:
        _HELD.reset(token)
