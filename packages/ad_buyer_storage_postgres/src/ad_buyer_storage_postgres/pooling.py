"""What stands between us and the server (``POSTGRES_POOLING``), and the pools we open.

* ``direct``: the server sees our own socket (its ``inet_client_port()`` is our local port; on
  a unix socket, its own socket directory and port are the ones we dialled);
* ``session``: said so (a direct connection, session pooling or a plain TCP proxy);
* ``transaction``: said so, or two client connections open at once ran statements in one
  server session (``pg_backend_pid()``), or one client's statements moved between sessions,
  which only a pooler in transaction (or statement) mode does;
* ``unknown``: something else is in between (a session pooler, a TCP proxy, or a transaction
  pooler busy enough to hide it): run as if transaction pooling, but let subscriptions check
  that LISTEN delivers (see ``notify.py``).

Under ``transaction`` and ``unknown`` no statement is cached: a pooler in transaction mode
hands each transaction any server session, where a statement prepared in another is unknown,
or worse, another client's of the same name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from .errors import PoolExhausted, SlowConnect

__all__ = [
    "POOLING_MODES",
    "PoolGate",
    "between_at_start",
    "cache_size",
    "close_quietly",
    "create_pool",
    "detect_pooler",
]

#: ``auto``: detect a pooler in transaction mode at connect; ``transaction``: one is there;
#: ``session``: a direct connection or session pooling (each client its own server session).
POOLING_MODES = ("auto", "transaction", "session")
_PROBE = (
    "SELECT pg_backend_pid(), inet_client_port(), current_setting('port'), current_setting('unix_socket_directories')"
)
_BACKEND_PID = "SELECT pg_backend_pid()"


def between_at_start(pooling: str) -> str:
    """What is taken to stand in between before any probe (``auto`` probes at connect)."""
    return {"transaction": "transaction", "session": "session"}.get(pooling, "unknown")


def cache_size(between: str, configured: int) -> int:
    """Prepared statements cached per connection: as configured only where one client keeps
    one server session (``direct``, ``session``), else none."""
    return configured if between in ("direct", "session") else 0


async def _keep_session(conn: Any) -> None:
    """Pool reset hook: asyncpg still rolls back open transactions; we change no session state,
    so the default RESET ALL round trip on every release is skipped."""


async def create_pool(
    dsn: str, *, min_size: int, max_size: int, connect_timeout: float, command_timeout: float, cache: int
) -> Any:
    """An asyncpg pool of *dsn* (``min_size=0``: no connection before one is asked for)."""
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=connect_timeout,
        command_timeout=command_timeout,
        statement_cache_size=cache,
        reset=_keep_session,
    )


async def close_quietly(conn: Any, seconds: float) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=seconds)
    except Exception:  # noqa: BLE001 - a probe connection: drop it hard
        conn.terminate()


async def detect_pooler(dsn: str, *, connect_timeout: float, command_timeout: float) -> str:
    """``direct``, ``transaction`` or ``unknown`` (see the module's docstring), from a probe
    connection, and a second one when the first is not direct."""

    async def probe() -> Any:
        return await asyncpg.connect(
            dsn, timeout=connect_timeout, command_timeout=command_timeout, statement_cache_size=0
        )

    first = await probe()
    try:
        row = await first.fetchrow(_PROBE)
        a = row[0]
        if _sees_our_socket(first, row[1], row[2], row[3]):
            return "direct"
        second = None
        try:
            second = await probe()
            b = await second.fetchval(_BACKEND_PID)
        except TimeoutError:
            # A second server session was not to be had while the first is held: a session
            # pooler at its pool size (a transaction pooler would have lent the first one).
            if second is not None:
                second.terminate()
            return "unknown"
        try:
            seen = {a}
            for _ in range(3):
                if a == b or len(seen) > 1:
                    return "transaction"
                a = await first.fetchval(_BACKEND_PID)
                b = await second.fetchval(_BACKEND_PID)
                seen.add(a)
            return "transaction" if a == b or len(seen) > 1 else "unknown"
        finally:
            await close_quietly(second, command_timeout)
    finally:
        await close_quietly(first, command_timeout)


def _sees_our_socket(conn: Any, client_port: int | None, port: str, socket_dirs: str) -> bool:
    """Whether the server's view of this connection's client is this very socket."""
    transport = getattr(conn, "_transport", None)
    if transport is None:
        return False
    local = transport.get_extra_info("sockname")
    if isinstance(local, tuple) and len(local) >= 2:  # TCP: the port the server sees is ours
        return client_port is not None and client_port == local[1]
    peer = transport.get_extra_info("peername")
    if client_port is None and isinstance(peer, str) and peer:  # a unix socket: the server's own?
        directory, _, name = peer.rpartition("/")
        dirs = {d.strip() for d in socket_dirs.split(",")}
        return name == f".s.PGSQL.{port}" and directory in dirs
    return False


class PoolGate:
    """Hands out a pool's connections within *timeout* seconds, counting the callers waiting
    (telemetry); a connection that died or timed out under its user is terminated, not released."""

    def __init__(self, *, timeout: float, most: int, lost: tuple[type[BaseException], ...]) -> None:
        self._timeout, self._most, self._lost = timeout, most, lost
        self.waiting = 0

    @asynccontextmanager
    async def connection(self, pool: Any) -> AsyncIterator[Any]:
        self.waiting += 1
        try:
            conn = await pool.acquire(timeout=self._timeout)
        except TimeoutError:
            if pool.get_size() >= self._most and pool.get_idle_size() == 0:
                raise PoolExhausted(f"no free connection among {self._most} within {self._timeout} s") from None
            # The pool had room: opening a new connection is what timed out.
            raise SlowConnect(f"no connection within {self._timeout} s") from None
        finally:
            self.waiting -= 1
        broken = False
        try:
            yield conn
        except self._lost:  # TimeoutError included
            broken = True
            raise
        finally:
            if broken:
                # Never wait on a connection that timed out or died: a graceful release
                # would wait for the query's cancellation, itself stuck on a dead link.
                # (If asyncpg already saw it die, it has returned it to the pool itself.)
                with contextlib.suppress(Exception):
                    conn.terminate()
            with contextlib.suppress(Exception):
                await pool.release(conn)
