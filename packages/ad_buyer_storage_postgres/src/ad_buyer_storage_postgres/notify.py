"""Pub/sub on ``LISTEN``/``NOTIFY``: channel names, the payload limit, and the dedicated
connection a subscription listens on (never a pooled one: LISTEN state must not leak into the
pool), opened to ``POSTGRES_LISTEN_URL`` when set.

Through a pooler in transaction mode, ``LISTEN`` would register on a server session that goes
back to the pooler's pool: notifications would never come. So without a listen URL a
subscription is refused at once there (pooling ``transaction``), or after a probe ``NOTIFY``
through the pool did not reach the listening connection (pooling ``unknown``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from ad_buyer_storage.errors import ConfigurationError, InvalidValueError
from ad_buyer_storage.kit.errormap import ErrorMap
from ad_buyer_storage.kit.redaction import redact_url
from ad_buyer_storage.kit.subscription import Deliver

from .errors import URL_PARSE_ERRORS
from .statements import NOTIFY

__all__ = ["MAX_NOTIFY_BYTES", "Listener", "channel_name", "check_payload"]

MAX_NOTIFY_BYTES = 7999  # PostgreSQL's NOTIFY payload limit is 8000 bytes
PROBE_WAIT = 2.0  # seconds a probe NOTIFY may take to reach the LISTEN connection

#: Sends one statement through the pool: ``notify(sql, channel, payload)``.
Notify = Callable[[str, str, str], Awaitable[None]]


def channel_name(table: str, channel: str) -> str:
    """Channel names are identifiers of at most 63 bytes: ours hashed into that space, per table."""
    return "abs_" + hashlib.sha256(f"{table}\x00{channel}".encode()).hexdigest()[:40]


def check_payload(message: str) -> None:
    if len(message.encode()) > MAX_NOTIFY_BYTES:
        raise InvalidValueError(f"pub/sub messages on PostgreSQL are limited to {MAX_NOTIFY_BYTES} bytes")


class Listener:
    """Opens the LISTEN connections of one backend: to *listen_dsn* if given, else *dsn*."""

    def __init__(
        self,
        *,
        url: str,
        dsn: str,
        listen_dsn: str | None,
        errors: ErrorMap,
        connect_timeout: float,
        command_timeout: float,
    ) -> None:
        self._url, self._dsn, self.listen_dsn = url, dsn, listen_dsn
        self._errors = errors
        self._connect_timeout, self._command_timeout = connect_timeout, command_timeout

    @asynccontextmanager
    async def listen(self, name: str, deliver: Deliver, *, between: str, notify: Notify) -> AsyncIterator[None]:
        """Deliver each payload sent on channel *name* while the block runs. *between*: what
        stands between us and the server (``pooling.py``); *notify*: a NOTIFY through the pool."""
        if self.listen_dsn is None and between == "transaction":
            # LISTEN through transaction pooling registers on whichever server session ran it,
            # and that session goes back to the pooler's pool: notifications would never come.
            raise ConfigurationError(
                f"subscribe() through a pooler in transaction mode ({redact_url(self._url)}) would never "
                "receive anything: set POSTGRES_LISTEN_URL (listen_url=) to a direct connection to the "
                "PostgreSQL server, or use session pooling"
            )
        with self._errors.mapped(also=URL_PARSE_ERRORS):
            conn = await asyncpg.connect(
                self.listen_dsn or self._dsn, timeout=self._connect_timeout, statement_cache_size=0
            )
        try:
            with self._errors.mapped():
                await conn.add_listener(name, lambda _c, _pid, _ch, payload: deliver(payload))
                if self.listen_dsn is None and between == "unknown":
                    await self._check_delivery(conn, notify)
            yield
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=self._command_timeout)

    async def _check_delivery(self, conn: Any, notify: Notify) -> None:
        """Something of unknown mode stands between us and the server: check that a NOTIFY
        sent through the pool reaches this LISTEN connection. Through transaction pooling it
        never does (the listening server session went back to the pooler's pool)."""
        probe = "abs_probe_" + os.urandom(8).hex()
        arrived = asyncio.Event()

        def heard(*_: object) -> None:
            arrived.set()

        await conn.add_listener(probe, heard)
        try:
            await notify(NOTIFY, probe, "probe")
            wait = min(PROBE_WAIT, self._command_timeout)
            try:
                await asyncio.wait_for(arrived.wait(), timeout=wait)
            except TimeoutError:
                raise ConfigurationError(
                    f"subscribe() through {redact_url(self._url)} would never receive anything: a probe NOTIFY "
                    f"did not arrive within {wait:g} s (a pooler in transaction mode?); set POSTGRES_LISTEN_URL "
                    "(listen_url=) to a direct connection to the PostgreSQL server, or POSTGRES_POOLING=session "
                    "if it is a session pooler"
                ) from None
        finally:
            with contextlib.suppress(Exception):
                await conn.remove_listener(probe, heard)
