"""For backend authors: turn every driver error into a storage error in one place.

Write one translator, ``translate(exc, *, outcome_unknown) -> StorageError``, that *returns*
the error your driver's exception means (it never raises), and give it to an :class:`ErrorMap`
with the exception classes your driver raises and the URLs whose secrets must never show.
Then wrap every driver call::

    with self._errors.mapped():
        rows = await conn.fetch(sql)

Like httpx's ``map_httpcore_exceptions``: a driver error leaving the block is raised again as
its translation, ``from`` the driver's error, and cut out of the chain if its words would
reveal a secret (:func:`~ad_buyer_storage.kit.redaction.raise_redacted`). A
:class:`~ad_buyer_storage.errors.StorageError` raised inside the block is already translated
and passes untouched, and so does anything that is not a driver error (a bug stays a bug).

A translator starts from :func:`driver_message` (the store, its URL redacted, the driver's
words with any secret hidden), ends a lost connection or a timeout with :func:`in_flight_error`
(which is where a write's unknown outcome becomes ``OutcomeUnknownError``), and marks an
error :func:`unchained` when even a redacted driver message should not follow it (wrong
credentials, a URL the parser choked on): it is raised ``from None``.
A backend's own code that gives up waiting for a connection raises :class:`NoConnection`,
which every map catches, so that this condition too reaches the user through the translator.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import NoReturn, Protocol, TypeVar

from ad_buyer_storage.errors import OutcomeUnknownError, StorageError, StorageTimeoutError, UnavailableError
from ad_buyer_storage.kit.redaction import raise_redacted, redact_or_withhold, redact_url

__all__ = ["ErrorMap", "NoConnection", "Translator", "driver_message", "in_flight_error", "unchained"]

E = TypeVar("E", bound=StorageError)


class Translator(Protocol):
    """A backend's one translator: the storage error *exc* means, returned, never raised.

    *outcome_unknown* is True when the failed call was a write that may have been applied:
    a connection or timeout error then means :class:`~ad_buyer_storage.errors.OutcomeUnknownError`.
    """

    def __call__(self, exc: BaseException, /, *, outcome_unknown: bool) -> StorageError: ...


class NoConnection(Exception):
    """No connection within the pool's timeout: nothing was sent, and the wait spent the caller's
    budget (never retried). *busy* tells "every connection in use" from "the server was slow
    to accept a new one"; the message says how long and how many, never a URL."""

    def __init__(self, message: str, *, busy: bool) -> None:
        super().__init__(message)
        self.busy = busy


def driver_message(store: str, url: str, exc: BaseException) -> str:
    """``"PostgreSQL postgresql://app:***@db/x: ConnectionResetError: ..."``: what a translated
    error says, with the URL's secrets (and anything shaped like credentials) hidden; the
    driver's words are withheld whole if they quote a secret of *url* outside the URL."""
    words = redact_or_withhold(str(exc), url, what="the driver's message")
    return f"{store} {redact_url(url)}: {type(exc).__name__}: {words}"


def in_flight_error(message: str, *, timed_out: bool, outcome_unknown: bool) -> StorageError:
    """The error for a call whose connection broke or timed out under it: for a write that may
    have been applied, :class:`OutcomeUnknownError`; else a timeout or "unavailable"."""
    if outcome_unknown:
        why = "timed out" if timed_out else "connection lost"
        return OutcomeUnknownError(f"{message} ({why}; the write may or may not have been applied; not retried)")
    return StorageTimeoutError(message) if timed_out else UnavailableError(message)


def unchained(error: E) -> E:
    """Mark *error* (from a translator) to be raised ``from None``: the driver's error stays out
    of tracebacks, and out of the object entirely if its words would reveal a secret."""
    error.__suppress_context__ = True
    return error


class ErrorMap:
    """A backend's translator with what it needs to raise: its driver's exception classes and
    the URLs (or other secrets) that must never show in an error or its chain."""

    def __init__(
        self,
        translate: Translator,
        driver_errors: tuple[type[BaseException], ...],
        *,
        secrets: Sequence[str | None] = (),
    ) -> None:
        self._translate = translate
        # NoConnection is raised by backends' own pool waits: always the translator's to map.
        self._driver_errors = (*driver_errors, NoConnection)
        self._secrets = tuple(secrets)

    def catches(self, exc: BaseException) -> bool:
        """Whether *exc* is a driver error this map translates (a StorageError never is)."""
        return isinstance(exc, self._driver_errors) and not isinstance(exc, StorageError)

    def raise_from(self, exc: BaseException, *, outcome_unknown: bool = False) -> NoReturn:
        """Raise the translation of *exc*, from *exc* unless the translator said :func:`unchained`."""
        error = self._translate(exc, outcome_unknown=outcome_unknown)
        raise_redacted(error, *self._secrets, cause=None if error.__suppress_context__ else exc)

    def error_for(self, exc: BaseException) -> StorageError:
        """The translation of *exc* as a value, chained as :meth:`raise_from` would raise it: the
        outcome of one item of a batch, which the server reported without failing the call."""
        try:
            self.raise_from(exc)
        except StorageError as error:
            return error

    def mapped(self, *, outcome_unknown: bool = False, also: tuple[type[BaseException], ...] = ()) -> _Mapped:
        """A ``with`` block whose driver errors (and those of the classes *also* names, say the
        ``ValueError`` a driver raises for a malformed URL) leave it translated."""
        return _Mapped(self, outcome_unknown, also)


class _Mapped:
    # A class, not @contextmanager: its __exit__ is typed to return None, so type checkers know
    # the block never swallows an exception (a function ending in one needs no extra return).
    def __init__(self, errors: ErrorMap, outcome_unknown: bool, also: tuple[type[BaseException], ...]) -> None:
        self._errors, self._outcome_unknown, self._also = errors, outcome_unknown, also

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc is None or isinstance(exc, StorageError):
            return
        if self._errors.catches(exc) or isinstance(exc, self._also):
            self._errors.raise_from(exc, outcome_unknown=self._outcome_unknown)
