"""The backend kit: what a backend author reuses instead of rewriting. Our SQLite, Redis and
PostgreSQL backends are built on it; a fourth copies their shape and imports these modules.

``errormap``
    One translator per backend, ``translate(exc, *, outcome_unknown) -> StorageError``, which
    returns the storage error a driver exception means; :class:`ErrorMap` raises it from
    ``with errors.mapped():`` blocks around driver calls (httpx-style), chained to the driver's
    error unless that would reveal a secret. Every driver error goes through it. Helpers for
    the translator: ``driver_message`` (redacted text), ``in_flight_error`` (lost or timed out,
    ``OutcomeUnknownError`` for a write), ``unchained``; ``NoConnection`` for a pool wait in vain.
``errortable``
    :class:`ErrorTable`: the translator as one table of driver class -> storage error, most
    specific first (httpx's ``HTTPCORE_EXC_MAP``), plus named :class:`TextRule` s for replies
    that have no class; ``table.bind(url)`` is the translator, ``table.driver_errors`` what the
    map catches.
``retry``
    :class:`RetryPolicy`: resend a call after a lost connection only if it is idempotent or
    provably never sent, resend a call the server rolled back, never resend a timeout; a write
    whose outcome is unknown raises ``OutcomeUnknownError``. The backend says which of its
    driver's errors are which, and gives a ``connection()`` context manager.
``scan``
    :func:`scan_pages`: a keyset-paginated key listing over an ordered index, given a
    one-statement ``fetch(page)``.
``sweeper``
    :func:`purge_in_batches` and :class:`Sweeper`: delete expired rows in bounded batches, in the
    background, for stores that do not expire keys themselves.
``identifiers``
    :func:`check_identifier`: refuse a table or schema name that is not a plain identifier.
``subscription``
    :func:`queue_subscription`: ``subscribe()`` for stores that deliver messages by callback
    (``LISTEN``, an in-process broker).
``batches``
    Give each item of a failed multi-row statement its own outcome (``PartialBatchError``).
``redaction``, ``urls``
    Keep passwords out of reprs, logs and errors; percent-encode credentials pasted raw.
``seen``, ``turns``
    Bounded de-duplication of listings (:class:`SeenKeys`); a transaction's turn held by the
    current task (:func:`held`, :func:`holding`).

This is exactly the backend author's toolbox: every name here is listed in ``__all__`` and
importable from ``ad_buyer_storage.kit`` (``from ad_buyer_storage.kit import ErrorTable, Row``);
what only core uses lives in core.

The wiring of a network backend (PostgreSQL's, in short)::

    _RETRY = RetryPolicy(connection_lost=(ConnectionError, ...), timed_out=(TimeoutError,))

    class MyBackend:
        def __init__(self, url):
            self._errors = ErrorMap(self._translate, (DriverError,), secrets=(url,))

        def _translate(self, exc, *, outcome_unknown): ...  # -> StorageError, returned

        async def _call(self, fn, *, idempotent):
            return await _RETRY.run(self._connection, fn, idempotent=idempotent, errors=self._errors)

        def scan(self, pattern, batch_size):
            return scan_pages(pattern, batch_size, self._scan_page)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ad_buyer_storage.kit.batches import each_or_error as each_or_error
    from ad_buyer_storage.kit.batches import in_bulk_or_each as in_bulk_or_each
    from ad_buyer_storage.kit.batches import results_or_raise as results_or_raise
    from ad_buyer_storage.kit.errormap import ErrorMap as ErrorMap
    from ad_buyer_storage.kit.errormap import NoConnection as NoConnection
    from ad_buyer_storage.kit.errormap import Translator as Translator
    from ad_buyer_storage.kit.errormap import driver_message as driver_message
    from ad_buyer_storage.kit.errormap import in_flight_error as in_flight_error
    from ad_buyer_storage.kit.errormap import unchained as unchained
    from ad_buyer_storage.kit.errortable import ErrorTable as ErrorTable
    from ad_buyer_storage.kit.errortable import Make as Make
    from ad_buyer_storage.kit.errortable import Row as Row
    from ad_buyer_storage.kit.errortable import TextRule as TextRule
    from ad_buyer_storage.kit.errortable import lost as lost
    from ad_buyer_storage.kit.errortable import timed_out as timed_out
    from ad_buyer_storage.kit.identifiers import DEFAULT_INDEXED_FIELDS as DEFAULT_INDEXED_FIELDS
    from ad_buyer_storage.kit.identifiers import check_identifier as check_identifier
    from ad_buyer_storage.kit.identifiers import indexed_fields as indexed_fields
    from ad_buyer_storage.kit.identifiers import is_identifier as is_identifier
    from ad_buyer_storage.kit.redaction import raise_redacted as raise_redacted
    from ad_buyer_storage.kit.redaction import redact_or_withhold as redact_or_withhold
    from ad_buyer_storage.kit.redaction import redact_routes as redact_routes
    from ad_buyer_storage.kit.redaction import redact_text as redact_text
    from ad_buyer_storage.kit.redaction import redact_url as redact_url
    from ad_buyer_storage.kit.redaction import reveals_secret as reveals_secret
    from ad_buyer_storage.kit.retry import Classifier as Classifier
    from ad_buyer_storage.kit.retry import RetryPolicy as RetryPolicy
    from ad_buyer_storage.kit.scan import scan_pages as scan_pages
    from ad_buyer_storage.kit.seen import SPILL_AFTER as SPILL_AFTER
    from ad_buyer_storage.kit.seen import SeenKeys as SeenKeys
    from ad_buyer_storage.kit.subscription import Deliver as Deliver
    from ad_buyer_storage.kit.subscription import queue_subscription as queue_subscription
    from ad_buyer_storage.kit.sweeper import Sweeper as Sweeper
    from ad_buyer_storage.kit.sweeper import purge_in_batches as purge_in_batches
    from ad_buyer_storage.kit.sweeper import sweep_forever as sweep_forever
    from ad_buyer_storage.kit.turns import held as held
    from ad_buyer_storage.kit.turns import holding as holding
    from ad_buyer_storage.kit.urls import SCHEME as SCHEME
    from ad_buyer_storage.kit.urls import encode_credentials as encode_credentials
    from ad_buyer_storage.kit.urls import query_secret_spans as query_secret_spans
    from ad_buyer_storage.kit.urls import server_of as server_of
    from ad_buyer_storage.kit.urls import split_routes as split_routes

_WHERE = {
    "each_or_error": "ad_buyer_storage.kit.batches",
    "in_bulk_or_each": "ad_buyer_storage.kit.batches",
    "results_or_raise": "ad_buyer_storage.kit.batches",
    "ErrorMap": "ad_buyer_storage.kit.errormap",
    "NoConnection": "ad_buyer_storage.kit.errormap",
    "Translator": "ad_buyer_storage.kit.errormap",
    "driver_message": "ad_buyer_storage.kit.errormap",
    "in_flight_error": "ad_buyer_storage.kit.errormap",
    "unchained": "ad_buyer_storage.kit.errormap",
    "ErrorTable": "ad_buyer_storage.kit.errortable",
    "Make": "ad_buyer_storage.kit.errortable",
    "Row": "ad_buyer_storage.kit.errortable",
    "TextRule": "ad_buyer_storage.kit.errortable",
    "lost": "ad_buyer_storage.kit.errortable",
    "timed_out": "ad_buyer_storage.kit.errortable",
    "DEFAULT_INDEXED_FIELDS": "ad_buyer_storage.kit.identifiers",
    "check_identifier": "ad_buyer_storage.kit.identifiers",
    "indexed_fields": "ad_buyer_storage.kit.identifiers",
    "is_identifier": "ad_buyer_storage.kit.identifiers",
    "raise_redacted": "ad_buyer_storage.kit.redaction",
    "redact_or_withhold": "ad_buyer_storage.kit.redaction",
    "redact_routes": "ad_buyer_storage.kit.redaction",
    "redact_text": "ad_buyer_storage.kit.redaction",
    "redact_url": "ad_buyer_storage.kit.redaction",
    "reveals_secret": "ad_buyer_storage.kit.redaction",
    "Classifier": "ad_buyer_storage.kit.retry",
    "RetryPolicy": "ad_buyer_storage.kit.retry",
    "scan_pages": "ad_buyer_storage.kit.scan",
    "SPILL_AFTER": "ad_buyer_storage.kit.seen",
    "SeenKeys": "ad_buyer_storage.kit.seen",
    "Deliver": "ad_buyer_storage.kit.subscription",
    "queue_subscription": "ad_buyer_storage.kit.subscription",
    "Sweeper": "ad_buyer_storage.kit.sweeper",
    "purge_in_batches": "ad_buyer_storage.kit.sweeper",
    "sweep_forever": "ad_buyer_storage.kit.sweeper",
    "held": "ad_buyer_storage.kit.turns",
    "holding": "ad_buyer_storage.kit.turns",
    "SCHEME": "ad_buyer_storage.kit.urls",
    "encode_credentials": "ad_buyer_storage.kit.urls",
    "query_secret_spans": "ad_buyer_storage.kit.urls",
    "server_of": "ad_buyer_storage.kit.urls",
    "split_routes": "ad_buyer_storage.kit.urls",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
