"""Every SQL statement of the backend, built once per table. Keys are always bound, never formatted in."""

# ruff: noqa: S608 - the table name is a checked identifier (SQLITE_TABLE), quoted; every value is bound

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ad_buyer_storage.contract.glob import prefix_upper_bound
from ad_buyer_storage.contract.protocol import Filter
from ad_buyer_storage.kit.identifiers import is_identifier

__all__ = ["MAX_KEYS_PER_STATEMENT", "MAX_ROWS_PER_STATEMENT", "Statements"]

MAX_ROWS_PER_STATEMENT = 1000  # 5 parameters a row, well under SQLite's 32,766 limit
MAX_KEYS_PER_STATEMENT = 5000


class Statements:
    """Every SQL statement, built once per table. Keys are always bound, never formatted in."""

    def __init__(self, t: str) -> None:
        live = "(expires_at IS NULL OR expires_at > ?)"
        self.t = t
        self.create_table = (
            f"CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, "
            "version TEXT NOT NULL, expires_at INTEGER, ttl_ms INTEGER)"
        )
        index = t[:-1] + '_expires_at"'
        self.create_index = f"CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at) WHERE expires_at IS NOT NULL"
        self.read_one = f"SELECT value, version FROM {t} WHERE key = ? AND {live}"
        self.insert_if_absent = (
            f"INSERT INTO {t} (key, value, version, expires_at, ttl_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version, "
            "expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms "
            f"WHERE {t}.expires_at IS NOT NULL AND {t}.expires_at <= ? RETURNING 1"
        )
        self.update_if_version = (
            f"UPDATE {t} SET value = ?, version = ?, expires_at = ?, ttl_ms = ? "
            f"WHERE key = ? AND version = ? AND {live} RETURNING 1"
        )
        self.update_if_version_keep = (
            f"UPDATE {t} SET value = ?, version = ? WHERE key = ? AND version = ? AND {live} RETURNING 1"
        )
        self.get_expiry = f"SELECT expires_at FROM {t} WHERE key = ? AND {live}"
        self.set_expiry = f"UPDATE {t} SET expires_at = ?, ttl_ms = ? WHERE key = ? AND {live} RETURNING 1"
        # (ttl, now, ttl, ttl, key, now): renew to the TTL given, else to the one recorded.
        self.read_refresh = (
            f"UPDATE {t} SET expires_at = CASE WHEN coalesce(?, ttl_ms) IS NULL THEN expires_at "
            "ELSE ? + coalesce(?, ttl_ms) END, ttl_ms = coalesce(?, ttl_ms) "
            f"WHERE key = ? AND {live} RETURNING value, version"
        )
        # Plain placeholders only (CPython 3.12.0-3.12.3 warn on numbered ones bound to a
        # sequence): parameters are (key, amount text, version, expiry, ttl, now, amount, now,
        # now, now, low, high), in the order the ? appear.
        expired = f"({t}.expires_at IS NOT NULL AND {t}.expires_at <= ?)"
        self.increment = (
            f"INSERT INTO {t} (key, value, version, expires_at, ttl_ms) VALUES (?, ?, ?, ?, ?) "
            f"ON CONFLICT(key) DO UPDATE SET "
            f"value = CASE WHEN {expired} THEN excluded.value "
            f"ELSE CAST(CAST({t}.value AS INTEGER) + ? AS TEXT) END, "
            f"version = excluded.version, "
            f"expires_at = CASE WHEN {expired} THEN excluded.expires_at ELSE {t}.expires_at END, "
            f"ttl_ms = CASE WHEN {expired} THEN excluded.ttl_ms ELSE {t}.ttl_ms END "
            # Canonical integer text only (what the codec writes): rejects floats, big ints, text.
            f"WHERE {expired} OR ({t}.value = CAST(CAST({t}.value AS INTEGER) AS TEXT) "
            f"AND CAST({t}.value AS INTEGER) BETWEEN ? AND ?) RETURNING value"
        )
        self.remove_range = f"DELETE FROM {t} WHERE key >= ? AND key < ? RETURNING expires_at"
        self.remove_from = f"DELETE FROM {t} WHERE key >= ? RETURNING expires_at"
        self.purge = f"DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires_at <= ? LIMIT ?) RETURNING 1"
        self._live = live
        self._cache: dict[tuple[str, int, bool], str] = {}

    def _cached(self, kind: str, n: int, flag: bool, build: Callable[[], str]) -> str:
        sql = self._cache.get((kind, n, flag))
        if sql is None:
            sql = build()
            if len(self._cache) < 256:
                self._cache[(kind, n, flag)] = sql
        return sql

    def upsert(self, rows: int, keep_ttl: bool) -> str:
        def build() -> str:
            t = self.t
            values = ", ".join(["(?, ?, ?, ?, ?)"] * rows)
            kept = f"{t}.expires_at IS NULL OR {t}.expires_at > ?"  # the live row keeps its expiry
            expiry = (
                f"expires_at = CASE WHEN {kept} THEN {t}.expires_at ELSE excluded.expires_at END, "
                f"ttl_ms = CASE WHEN {kept} THEN {t}.ttl_ms ELSE excluded.ttl_ms END"
                if keep_ttl
                else "expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms"
            )
            return (
                f"INSERT INTO {t} (key, value, version, expires_at, ttl_ms) VALUES {values} "
                f"ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version, {expiry}"
            )

        return self._cached("upsert", rows, keep_ttl, build)

    def _in(self, n: int) -> str:
        return ", ".join(["?"] * n)

    def read_many(self, n: int) -> str:
        return self._cached(
            "read",
            n,
            False,
            lambda: f"SELECT key, value, version FROM {self.t} WHERE key IN ({self._in(n)}) AND {self._live}",
        )

    def field_index(self, field: str) -> str:
        """An index on one top-level JSON field (and the key, so a prefix range stays in it)."""
        path = f"json_extract(value, '$.{field}')"  # the very text query() writes, or it is not used
        return f'CREATE INDEX IF NOT EXISTS {self.t[:-1]}_f_{field}" ON {self.t} ({path}, key) WHERE {path} IS NOT NULL'

    def query(
        self, prefix: str, where: Sequence[Filter], after: str | None, now: int, limit: int
    ) -> tuple[str, list[Any]]:
        """A filtered page: the key range, liveness, and a condition per filter on a plain field
        name (a field with other characters is left to core, which checks every record)."""
        params: list[Any]
        if after is None or after < prefix:
            conds, params = ["key >= ?"], [prefix]
        else:
            conds, params = ["key > ?"], [after]
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            conds.append("key < ?")
            params.append(upper)
        conds.append(self._live)
        params.append(now)
        for field, value in where:
            if not is_identifier(field):
                continue
            path = f"'$.{field}'"
            if value is None or isinstance(value, bool):
                conds.append(f"json_type(value, {path}) = '{'null' if value is None else str(value).lower()}'")
            else:  # text equals text only, numbers compare by value (1 = 1.0), as JSON equality
                conds.append(f"json_extract(value, {path}) = ?")
                params.append(value)
        params.append(limit)
        return f"SELECT key, value, version FROM {self.t} WHERE {' AND '.join(conds)} ORDER BY key LIMIT ?", params

    def versions(self, n: int) -> str:
        return self._cached(
            "versions",
            n,
            False,
            lambda: f"SELECT key, version FROM {self.t} WHERE key IN ({self._in(n)}) AND {self._live}",
        )

    def remove(self, n: int) -> str:
        return self._cached(
            # Only the raw column: SQLite 3.40 returns NULL for `RETURNING <expression>` of a
            # DELETE on a file database, so liveness is computed by the caller.
            "remove",
            n,
            False,
            lambda: f"DELETE FROM {self.t} WHERE key IN ({self._in(n)}) RETURNING expires_at",
        )

    def count(self, n: int) -> str:
        return self._cached(
            "count", n, False, lambda: f"SELECT count(*) FROM {self.t} WHERE key IN ({self._in(n)}) AND {self._live}"
        )

    def scan(self, *, first: bool, bounded: bool) -> str:
        """A page of a keyset scan (see ad_buyer_storage.kit.scan)."""
        lower = "key >= ?" if first else "key > ?"
        upper = "AND key < ? " if bounded else ""
        return f"SELECT key FROM {self.t} WHERE {lower} {upper}AND {self._live} ORDER BY key LIMIT ?"
