"""The one exception tree of ad-buyer-storage.

Every error this library raises on purpose derives from :class:`StorageError`.
Input errors also derive from the builtin a caller would expect (``ValueError``,
``TypeError``, ``KeyError``, ``TimeoutError``), so ``except ValueError`` keeps working.

::

    StorageError
    ├── ConfigurationError                  bad settings, URL, route table (ValueError)
    │   └── BackendNotFoundError            unknown backend name (LookupError)
    ├── PluginLoadError                     a plugin or its driver failed to import (ImportError)
    ├── InvalidInputError                   rejected before any I/O (ValueError)
    │   ├── InvalidKeyError
    │   │   └── KeyTypeError                key is not a str (TypeError)
    │   ├── InvalidValueError               NaN, NUL, over the size cap, not an integer, ...
    │   ├── InvalidTTLError
    │   ├── InvalidPatternError
    │   └── TransactionTooLargeError        over MAX_TRANSACTION_WRITES writes in one transaction
    ├── KeyNotFoundError                    TTL of a missing key (KeyError)
    ├── VersionConflictError                conditional write lost the race
    │   └── TransactionConflictError        a key a transaction read changed before it committed
    ├── BudgetExceededError                 a booking would take a campaign over its budget
    ├── LockError
    │   ├── LockNotOwnedError               release/extend of a lease that expired or changed hands
    │   ├── LockTimeoutError                lease not acquired in time (TimeoutError)
    │   └── StaleFencingTokenError          a fenced write carried an older token than one already seen
    ├── UnsupportedOperationError           capability not offered by this backend
    ├── LifecycleError
    │   ├── NotConnectedError               used before connect()
    │   └── StorageClosedError              used after aclose()
    └── BackendError                        a driver/server error, translated in one place per backend
        ├── PartialBatchError               some items of a batch failed on their own (backends -> core)
        ├── UnavailableError                refused, reset, unreachable
        │   ├── StorageTimeoutError         no answer within the timeout (TimeoutError)
        │   ├── BusyError                   pool exhausted / database locked
        │   └── CircuitOpenError            failing fast: the store's circuit breaker is open
        ├── AuthenticationError             wrong or missing credentials; never retried
        ├── TLSError                        server certificate not trusted, or no TLS where required
        ├── OutcomeUnknownError             a write the server may or may not have applied
        ├── StorageFullError                disk full
        └── ReadOnlyError                   store mounted or opened read-only

Messages never contain a password or token: URLs pass through
:func:`ad_buyer_storage.kit.redaction.redact_url` before they reach an error, and a driver error
whose words would reveal one is cut from the chain (:func:`~ad_buyer_storage.kit.redaction.raise_redacted`).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AuthenticationError",
    "PartialBatchError",
    "BackendError",
    "BackendNotFoundError",
    "BudgetExceededError",
    "BusyError",
    "CircuitOpenError",
    "ConfigurationError",
    "InvalidInputError",
    "InvalidKeyError",
    "InvalidPatternError",
    "InvalidTTLError",
    "InvalidValueError",
    "KeyNotFoundError",
    "KeyTypeError",
    "LifecycleError",
    "LockError",
    "LockNotOwnedError",
    "LockTimeoutError",
    "NotConnectedError",
    "OutcomeUnknownError",
    "PluginLoadError",
    "ReadOnlyError",
    "StaleFencingTokenError",
    "StorageClosedError",
    "StorageError",
    "StorageFullError",
    "StorageTimeoutError",
    "TLSError",
    "TransactionConflictError",
    "TransactionTooLargeError",
    "UnavailableError",
    "UnsupportedOperationError",
    "VersionConflictError",
    "fails_alone",
]


class StorageError(Exception):
    """Root of every error raised by ad-buyer-storage."""


class ConfigurationError(StorageError, ValueError):
    """Settings, URLs or route tables that cannot work."""


class BackendNotFoundError(ConfigurationError, LookupError):
    """No installed plugin provides the requested backend name."""


class PluginLoadError(StorageError, ImportError):
    """A backend plugin (or the driver it needs) could not be imported."""


class InvalidInputError(StorageError, ValueError):
    """Input rejected before any I/O; nothing was written."""


class InvalidKeyError(InvalidInputError):
    """A key that breaks the key rules (empty, too long, NUL, lone surrogate)."""


class KeyTypeError(InvalidKeyError, TypeError):
    """A key that is not a ``str``."""


class InvalidValueError(InvalidInputError):
    """A value that cannot be stored as JSON by the contract's rules."""


class InvalidTTLError(InvalidInputError):
    """A TTL that is not a positive number of seconds."""


class InvalidPatternError(InvalidInputError):
    """A glob pattern that is malformed, or empty where that is refused."""


class TransactionTooLargeError(InvalidInputError):
    """A transaction staged more writes than one commit takes."""


class KeyNotFoundError(StorageError, KeyError):
    """The key does not exist (or has expired)."""

    def __str__(self) -> str:
        # KeyError.__str__ quotes its argument; a message reads better plain.
        return str(self.args[0]) if self.args else ""


class VersionConflictError(StorageError):
    """A conditional write found another version than the one expected."""


class TransactionConflictError(VersionConflictError):
    """A key the transaction read (or required) changed before it committed: nothing was applied."""


class BudgetExceededError(StorageError):
    """A booking would take a campaign's spend over its budget: nothing was applied."""


class LockError(StorageError):
    """A lease lock could not be taken, kept or given back."""


class LockNotOwnedError(LockError):
    """The lease expired or another owner holds it now."""


class LockTimeoutError(LockError, TimeoutError):
    """The lease was not acquired within the time allowed."""


class StaleFencingTokenError(LockError):
    """A fenced write carried a fencing token older than one the resource has already seen:
    its writer's lease ended and another holder has written since. Nothing was written."""


class UnsupportedOperationError(StorageError, NotImplementedError):
    """The backend does not declare the capability this operation needs."""


class LifecycleError(StorageError, RuntimeError):
    """The storage object is not in a state that allows the operation."""


class NotConnectedError(LifecycleError):
    """Used before ``connect()`` / ``async with``."""


class StorageClosedError(LifecycleError):
    """Used after ``aclose()``."""


class BackendError(StorageError):
    """An error reported by the driver or server, translated by the backend."""


class PartialBatchError(BackendError):
    """Some items of a batch failed on their own, the others did not.

    A backend raises it from ``read``/``write`` when the server refused some rows (a trigger,
    a key of the wrong type...) but served the rest: :attr:`outcomes` holds, per item in
    order, its result or its error. Core gives every caller of a coalesced batch its own
    outcome, so one bad row never fails its batch-mates; it never reaches users as such.
    """

    def __init__(self, outcomes: Sequence[object]) -> None:
        self.outcomes = list(outcomes)
        failed = [o for o in self.outcomes if isinstance(o, BaseException)]
        first = failed[0] if failed else None
        super().__init__(f"{len(failed)} of {len(self.outcomes)} items failed; the first: {first}")

    def first_error(self) -> BaseException:
        return next(o for o in self.outcomes if isinstance(o, BaseException))


def fails_alone(exc: BaseException) -> bool:
    """True for an error about one item's data (the server refused that row), which says
    nothing about the others: a batch that met it is worth trying row by row. Errors about the
    store itself (unreachable, busy, full, read-only, auth...) are not."""
    return type(exc) is BackendError or isinstance(exc, InvalidInputError)


class UnavailableError(BackendError, ConnectionError):
    """The server could not be reached or dropped the connection."""


class StorageTimeoutError(UnavailableError, TimeoutError):
    """The server did not answer within the configured timeout."""


class BusyError(UnavailableError):
    """Every connection is in use, or the store is locked by another writer."""


class CircuitOpenError(UnavailableError):
    """The store failed too many calls in a row: calls fail at once, without reaching it, until
    its cool-down ends and one call probes it (see :mod:`ad_buyer_storage.composed.breaker`)."""


class AuthenticationError(BackendError, PermissionError):
    """Wrong or missing credentials. Never retried."""


class OutcomeUnknownError(BackendError):
    """A non-idempotent write whose result the server never confirmed."""


class TLSError(BackendError):
    """The server's certificate was not trusted, or it does not speak the TLS the URL asks for.

    Never retried, and never answered by falling back to plaintext.
    """


class StorageFullError(BackendError, OSError):
    """The store has no space left."""


class ReadOnlyError(BackendError, PermissionError):
    """The store refuses writes."""
