"""The backend kit's error table: first matching rule wins, text rules before rows, chains."""

from __future__ import annotations

import ssl

import pytest

from ad_buyer_storage.errors import (
    AuthenticationError,
    BackendError,
    OutcomeUnknownError,
    ReadOnlyError,
    StorageTimeoutError,
    TLSError,
    UnavailableError,
)
from ad_buyer_storage.kit.errormap import ErrorMap
from ad_buyer_storage.kit.errortable import ErrorTable, Row, TextRule, lost, timed_out


class DriverError(Exception):
    pass


class ReplyError(DriverError):
    pass


class AuthError(DriverError):
    pass


class DriverTimeout(DriverError, TimeoutError):
    pass


TABLE = ErrorTable(
    "Thing",
    rows=(
        Row(AuthError, AuthenticationError, unchained=True),
        Row(ssl.SSLError, TLSError, in_chain=True),
        Row(DriverTimeout, timed_out),
        Row((ConnectionError, OSError), lost),
    ),
    text_rules=(TextRule("read-only replica", ReplyError, ("readonly",), ReadOnlyError),),
)
URL = "thing://user:s3cret@host/0"


def translate(exc: BaseException, *, outcome_unknown: bool = False) -> BackendError:
    error = TABLE.translate(exc, URL, outcome_unknown=outcome_unknown)
    assert isinstance(error, BackendError)
    return error


def test_rows_in_order_and_text_rules_first() -> None:
    assert type(translate(AuthError("bad"))) is AuthenticationError
    assert translate(AuthError("bad")).__suppress_context__
    assert type(translate(ReplyError("READONLY You can't write against a replica"))) is ReadOnlyError
    assert type(translate(ReplyError("ERR something else"))) is BackendError  # the fallback
    assert type(translate(DriverTimeout("slow"))) is StorageTimeoutError  # before OSError's row
    assert type(translate(ConnectionResetError("reset"))) is UnavailableError


def test_in_flight_rows_know_a_write_may_have_been_applied() -> None:
    assert type(translate(ConnectionResetError("reset"), outcome_unknown=True)) is OutcomeUnknownError
    assert type(translate(DriverTimeout("slow"), outcome_unknown=True)) is OutcomeUnknownError


def test_a_row_can_match_the_cause() -> None:
    wrapped = DriverError("handshake")
    wrapped.__cause__ = ssl.SSLError("certificate verify failed")
    assert type(translate(wrapped)) is TLSError
    assert type(translate(DriverError("plain"))) is BackendError


def test_messages_hide_the_secret_and_name_the_store() -> None:
    error = translate(ConnectionResetError(f"cannot reach {URL}"))
    assert "s3cret" not in str(error)
    assert str(error).startswith("Thing thing://")


def test_the_map_catches_only_the_classes_the_table_names() -> None:
    errors = ErrorMap(TABLE.bind(URL), TABLE.driver_errors, secrets=(URL,))
    assert set(TABLE.driver_errors) == {AuthError, ssl.SSLError, DriverTimeout, ConnectionError, OSError, ReplyError}
    with pytest.raises(ReadOnlyError), errors.mapped():
        raise ReplyError("READONLY")
    with pytest.raises(KeyError), errors.mapped():  # a bug stays a bug
        raise KeyError("x")
