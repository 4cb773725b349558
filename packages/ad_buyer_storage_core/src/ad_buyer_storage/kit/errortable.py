"""For backend authors: a driver's errors mapped to ours by one table, most specific first.

httpx maps httpcore's exceptions with one ordered table (``HTTPCORE_EXC_MAP``); a backend does
the same with an :class:`ErrorTable`: rows of *driver class -> storage error*, most specific
first, and a short list of named :class:`TextRule` for the replies a driver does not give a
class of their own (Redis answers ``-READONLY`` as a plain ``ResponseError``). The first rule
whose class (and words, for a text rule) match wins; text rules are tried first, because each
narrows a class row. Nothing matching: the table's ``fallback`` (``BackendError``).

A row's error is either a :class:`~ad_buyer_storage.errors.StorageError` class, built with the
driver's message (redacted), or a :data:`Make` function for what depends on the call:
:func:`lost` and :func:`timed_out` (``OutcomeUnknownError`` for a write that may have been
applied), or a backend's own. Bind the table to a store's URL to get the backend's
:class:`~ad_buyer_storage.kit.errormap.Translator`::

    ERRORS = ErrorTable(
        "MyStore",
        rows=(
            Row(driver.AuthError, AuthenticationError, unchained=True),
            Row(driver.Timeout, timed_out),
            Row((driver.ConnectionError, OSError), lost),
        ),
        text_rules=(TextRule("read-only replica", driver.ResponseError, ("READONLY",), ReadOnlyError),),
    )
    self._errors = ErrorMap(ERRORS.bind(url), ERRORS.driver_errors, secrets=(url,))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from ad_buyer_storage.errors import BackendError, StorageError
from ad_buyer_storage.kit.errormap import Translator, driver_message, in_flight_error, unchained

__all__ = ["ErrorTable", "Make", "Row", "TextRule", "lost", "timed_out"]

#: Builds the storage error from the driver's (redacted) message and whether the failed call
#: was a write that may have been applied.
Make = Callable[[str, bool], StorageError]
Classes = type[BaseException] | tuple[type[BaseException], ...]


def lost(message: str, outcome_unknown: bool) -> StorageError:
    """The connection broke under the call: unavailable, or the outcome of a write unknown."""
    return in_flight_error(message, timed_out=False, outcome_unknown=outcome_unknown)


def timed_out(message: str, outcome_unknown: bool) -> StorageError:
    """No answer in time: a timeout, or the outcome of a write unknown."""
    return in_flight_error(message, timed_out=True, outcome_unknown=outcome_unknown)


class Row(NamedTuple):
    """Driver class(es) -> storage error. *in_chain*: also match the error's ``__cause__`` and
    ``__context__`` (an ``ssl.SSLError`` wrapped in the driver's connection error).
    *unchained*: raise it ``from None`` (wrong credentials: the driver's words add nothing)."""

    match: Classes
    error: type[StorageError] | Make
    unchained: bool = False
    in_chain: bool = False


class TextRule(NamedTuple):
    """A reply without a class of its own: the driver *match* class whose message holds every
    one of *words* (case-insensitive). *name* says which server reply it is, for readers."""

    name: str
    match: Classes
    words: tuple[str, ...]
    error: type[StorageError] | Make
    unchained: bool = False


class ErrorTable:
    """The one map of a backend: *store* names the system in messages (``"PostgreSQL"``)."""

    def __init__(
        self,
        store: str,
        *,
        rows: Sequence[Row],
        text_rules: Sequence[TextRule] = (),
        fallback: type[StorageError] = BackendError,
    ) -> None:
        self.store = store
        self.rows = tuple(rows)
        self.text_rules = tuple(text_rules)
        self.fallback = fallback

    @property
    def driver_errors(self) -> tuple[type[BaseException], ...]:
        """Every class the table names: what an :class:`~ad_buyer_storage.kit.errormap.ErrorMap`
        catches (and nothing else: a bug stays a bug)."""
        seen: dict[type[BaseException], None] = {}
        matches: list[Classes] = [rule.match for rule in self.text_rules] + [row.match for row in self.rows]
        for match in matches:
            for cls in match if isinstance(match, tuple) else (match,):
                seen.setdefault(cls, None)
        return tuple(seen)

    def rule_for(self, exc: BaseException) -> Row | TextRule | None:
        """The first rule matching *exc*: text rules, then rows, in order."""
        text = str(exc).upper()
        for rule in self.text_rules:
            if isinstance(exc, rule.match) and all(word.upper() in text for word in rule.words):
                return rule
        for row in self.rows:
            chain = (exc, exc.__cause__, exc.__context__) if row.in_chain else (exc,)
            if any(isinstance(e, row.match) for e in chain if e is not None):
                return row
        return None

    def translate(self, exc: BaseException, url: str, *, outcome_unknown: bool) -> StorageError:
        """The storage error *exc* means (returned, never raised), its message redacted for *url*."""
        message = driver_message(self.store, url, exc)
        rule = self.rule_for(exc)
        if rule is None:
            return self.fallback(message)
        error = rule.error(message) if isinstance(rule.error, type) else rule.error(message, outcome_unknown)
        return unchained(error) if rule.unchained else error

    def bind(self, url: str) -> Translator:
        """The backend's translator for the store at *url*."""

        def translate(exc: BaseException, /, *, outcome_unknown: bool) -> StorageError:
            return self.translate(exc, url, outcome_unknown=outcome_unknown)

        return translate
