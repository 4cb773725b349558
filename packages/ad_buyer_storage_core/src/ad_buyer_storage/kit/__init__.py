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
