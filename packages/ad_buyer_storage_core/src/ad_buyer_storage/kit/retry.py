"""For backend authors: send a call again only when that cannot apply it twice.

A network store loses connections (a restart, a failover, an idle socket cut by a firewall):
the first call after that fails, the next one on a fresh connection succeeds. Sending a call
again is safe when it is idempotent (a read, an unconditional write of a given value and
version, a delete) or when the failure proves it never left the client. An increment whose
reply was lost may have been applied: sent again it would count twice, so it ends in
:class:`~ad_buyer_storage.errors.OutcomeUnknownError` instead, and the caller decides.

:class:`RetryPolicy` is that rule, shared; a backend describes its driver's errors to it:

* ``connection_lost``: the connection broke during the call (one retry, if safe);
* ``timed_out``: no answer in time. Never retried: the timeout is the caller's whole budget,
  and a blackholed server answers the second try no better than the first;
* ``never_sent``: the error itself proves the request never left (refused while connecting);
  whatever fails while *entering* the backend's ``connection()`` is never sent too;
* ``rolled_back``: the server refused the call and applied nothing (a deadlock victim, a
  serialization conflict): resent after a short random pause, a few times, whatever it does.

Each is a tuple of exception classes or a predicate. Every failure it does not resend goes
through the backend's :class:`~ad_buyer_storage.kit.errormap.ErrorMap`, told whether the
outcome is unknown. A :class:`~ad_buyer_storage.kit.errormap.NoConnection` raised by
``connection()`` (the pool gave no connection in time) is neither lost nor unknown: it
reaches the translator at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TypeVar

from ad_buyer_storage.kit.errormap import ErrorMap

__all__ = ["Classifier", "RetryPolicy"]

C = TypeVar("C")
T = TypeVar("T")

#: Which errors are of a kind: exception classes, or a predicate for drivers that tell by message.
Classifier = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def _is(classifier: Classifier, exc: BaseException) -> bool:
    return isinstance(exc, classifier) if isinstance(classifier, tuple) else classifier(exc)


@dataclass(frozen=True)
class RetryPolicy:
    """What may be sent again, for one driver. See the module's docstring."""

    connection_lost: Classifier
    timed_out: Classifier = ()
    never_sent: Classifier = ()
    rolled_back: Classifier = ()
    #: How many times a rolled-back call is resent, each after up to ``backoff * 2**n`` seconds.
    rolled_back_retries: int = 5
    rolled_back_backoff: float = 0.002

    async def run(
        self,
        connection: Callable[[], AbstractAsyncContextManager[C]],
        use: Callable[[C], Awaitable[T]],
        *,
        idempotent: bool,
        errors: ErrorMap,
    ) -> T:
        """``use(conn)`` inside ``connection()``, resent where that is safe; every driver error
        that ends it raised through *errors*. Errors that are not the driver's pass untouched."""
        may_reconnect = True
        rolled_back = 0
        while True:
            entered = False
            try:
                async with connection() as conn:
                    entered = True
                    return await use(conn)
            except Exception as exc:
                if not errors.catches(exc):  # ours (NotConnectedError...) or not the driver's: as is
                    raise
                sent = entered and not _is(self.never_sent, exc)
                if _is(self.rolled_back, exc) and rolled_back < self.rolled_back_retries:
                    rolled_back += 1  # the server applied nothing; the reconnect stays available
                    await asyncio.sleep(random.uniform(0, self.rolled_back_backoff * 2**rolled_back))
                    continue
                if _is(self.timed_out, exc):
                    errors.raise_from(exc, outcome_unknown=sent and not idempotent)
                if _is(self.connection_lost, exc) and may_reconnect and (idempotent or not sent):
                    may_reconnect = False
                    continue
                # Only a lost connection or a timeout leaves a write's outcome unknown; any
                # other error is the server's answer to the call.
                lost = _is(self.connection_lost, exc)
                errors.raise_from(exc, outcome_unknown=lost and sent and not idempotent)
