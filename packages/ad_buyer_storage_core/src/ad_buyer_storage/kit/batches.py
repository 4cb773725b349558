"""For backend authors: give each item of a batch its own outcome.

A backend applies a batch of writes in as few statements as it can. If the server refuses one
row (a trigger, a constraint, a key of the wrong type), the statement that carried it fails as
a whole, and with it every caller whose write happened to share the batch. These helpers
attribute the error to its row instead: a multi-row statement that fails with an error about
its data (:func:`~ad_buyer_storage.errors.fails_alone`) is tried again row by row (a statement
that failed applied nothing, so that is exact), and the batch ends with
:class:`~ad_buyer_storage.errors.PartialBatchError` carrying each item's result or error.

Only for statements that are atomic on their own (one SQL statement): a store that may have
applied part of a failed statement must report per-item outcomes itself.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

from ad_buyer_storage.errors import PartialBatchError, StorageError, fails_alone

__all__ = ["each_or_error", "in_bulk_or_each", "results_or_raise"]

T = TypeVar("T")


async def each_or_error(call: Callable[[], Awaitable[T]]) -> T | StorageError:
    """One item's statement: its result, or its error if that error concerns the item alone."""
    try:
        return await call()
    except StorageError as exc:
        if not fails_alone(exc):
            raise
        return exc


async def in_bulk_or_each(
    items: Sequence[T], bulk: Callable[[Sequence[T]], Awaitable[Sequence[object]]],
    one: Callable[[T], Awaitable[object]],
) -> list[object]:  # fmt: skip
    """``bulk(items)`` (one atomic statement, one result per item); if the server refuses it
    for one item's data, each item alone, so that only the culprit fails."""
    try:
        return list(await bulk(items))
    except StorageError as exc:
        if not fails_alone(exc):
            raise
        if len(items) == 1:
            return [exc]
    return [await each_or_error(functools.partial(one, item)) for item in items]


def results_or_raise(outcomes: Sequence[object]) -> list[T]:
    """The batch's results; :class:`PartialBatchError` if some items failed (a lone item: its error)."""
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if not failed:
        return cast(list[T], list(outcomes))
    if len(outcomes) == 1:
        raise failed[0]
    raise PartialBatchError(outcomes)
