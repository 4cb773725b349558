"""``probe_database`` / ``database_accessible``: is the store a URL names reachable?

Upstream opens the SQLite file and runs ``SELECT 1``. Here the URL is opened as a facade store
would open it (``AD_BUYER_STORAGE_COMPAT_URL`` included) and pinged: ``(True, None)``, or
``(False, message)`` when it is unreachable (the message never holds a password).
"""

from __future__ import annotations

from ad_buyer_storage.errors import StorageError
from ad_buyer_storage_buyer_agent import _runtime
from ad_buyer_storage_buyer_agent._backing import acquire, parse_url

__all__ = ["database_accessible", "probe_database"]


def _sqlite_path(database_url: str) -> str:
    """Upstream's URL reading (``sqlite:///x`` is ``x``)."""
    return parse_url(database_url)


async def _probe(database_url: str) -> None:
    backing = await acquire(database_url)
    try:
        await backing.store.ping()
    finally:
        await backing.release()


def probe_database(database_url: str) -> tuple[bool, str | None]:
    """``(True, None)`` when the store is reachable, else ``(False, error_message)``."""
    try:
        _runtime.call(_probe(database_url))
    except (StorageError, OSError) as exc:
        return False, str(exc)
    return True, None


def database_accessible(database_url: str) -> bool:
    """Whether the store is reachable."""
    ok, _ = probe_database(database_url)
    return ok
