"""Every SQL statement of the backend, built once per table. Keys and values are always bound;
only our own checked identifiers (schema, table, indexed field names) are written into the text."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from ad_buyer_storage.contract.glob import prefix_upper_bound
from ad_buyer_storage.contract.protocol import Filter
from ad_buyer_storage.kit.identifiers import is_identifier

__all__ = ["CAUGHT_UP", "NOTIFY", "WAL_POSITION", "Statements", "lock_id", "turn_ids"]

# On a replica: has it replayed the WAL up to $1? (On a primary named as a replica: always.)
CAUGHT_UP = (
    "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END"
    " >= $1::text::pg_lsn"
)
#: The primary's WAL position now: what a replica must have replayed to hold our writes.
WAL_POSITION = "SELECT pg_current_wal_lsn()::text"
NOTIFY = "SELECT pg_notify($1, $2)"


def lock_id(*parts: str) -> int:
    """A 64-bit advisory lock id for *parts* (the DDL lock of one table; +1: its sweep lock)."""
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def turn_ids(table: str, keys: Iterable[str]) -> set[int]:
    """One advisory lock id per key of *table* (64 bits of a hash of the table and the key; two
    keys sharing one only make their turns wait for each other)."""
    prefix = f"{table}\x00"
    return {
        int.from_bytes(hashlib.blake2b((prefix + key).encode(), digest_size=8).digest(), "big", signed=True)
        for key in keys
    }


class Statements:
    """Every SQL statement, built once per table. Keys and values are always bound."""

    def __init__(self, t: str) -> None:
        schema = t.split(".")[0]
        live = "(expires_at IS NULL OR expires_at > now())"
        expiry = "CASE WHEN {ms} IS NULL THEN NULL ELSE now() + {ms} * interval '1 millisecond' END"
        self.create_schema = f"CREATE SCHEMA IF NOT EXISTS {schema}"
        self.ddl_lock = "SELECT pg_advisory_xact_lock($1)"  # transaction-scoped: safe behind any pooler
        self.try_sweep_lock = "SELECT pg_try_advisory_xact_lock($1)"
        self.create_meta = (
            f"CREATE TABLE IF NOT EXISTS {schema}.ad_buyer_storage_schema "
            "(table_name text PRIMARY KEY, schema_version integer NOT NULL, updated_at timestamptz DEFAULT now())"
        )
        self.read_version = f"SELECT schema_version FROM {schema}.ad_buyer_storage_schema WHERE table_name = $1"
        self.write_version = (
            f"INSERT INTO {schema}.ad_buyer_storage_schema (table_name, schema_version) VALUES ($1, $2) "
            "ON CONFLICT (table_name) DO UPDATE SET schema_version = excluded.schema_version, updated_at = now()"
        )
        self.create_table = (
            f'CREATE TABLE IF NOT EXISTS {t} (key text COLLATE "C" PRIMARY KEY, value json NOT NULL, '
            "version text NOT NULL, expires_at timestamptz, ttl_ms bigint)"
        )
        self.upgrade_to_json = f"ALTER TABLE {t} ALTER COLUMN value TYPE json USING value::text::json"
        self.add_ttl_column = f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS ttl_ms bigint"
        index = t.split(".")[1][:-1] + '_expires_at"'
        self.create_index = f"CREATE INDEX IF NOT EXISTS {index} ON {t} (expires_at) WHERE expires_at IS NOT NULL"
        self.read_one = f"SELECT value, version FROM {t} WHERE key = $1 AND {live}"
        self.read_many = f"SELECT key, value, version FROM {t} WHERE key = ANY($1::text[]) AND {live}"
        new_expiry = expiry.format(ms="u.ttl")
        upsert = (
            f"INSERT INTO {t} AS kv (key, value, version, expires_at, ttl_ms) "
            f"SELECT u.key, u.value::json, u.version, {new_expiry}, u.ttl "
            "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(key, value, version, ttl) "
            # Rows are locked in key order, as by every other multi-row statement here: two
            # batches sharing keys wait for each other instead of deadlocking.
            "ORDER BY u.key "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version, "
        )
        replaced = "expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms"
        self.upsert_many = upsert + replaced
        kept = "kv.expires_at IS NULL OR kv.expires_at > now()"  # a live row keeps its expiry
        self.upsert_many_keep_ttl = (
            upsert + f"expires_at = CASE WHEN {kept} THEN kv.expires_at ELSE excluded.expires_at END, "
            f"ttl_ms = CASE WHEN {kept} THEN kv.ttl_ms ELSE excluded.ttl_ms END"
        )
        self.insert_many_if_absent = (
            upsert + replaced + " WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now() RETURNING kv.key"
        )
        self.insert_if_absent = (
            f"INSERT INTO {t} AS kv (key, value, version, expires_at, ttl_ms) "
            f"VALUES ($1, $2::text::json, $3, {expiry.format(ms='$4::bigint')}, $4::bigint) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version, "
            "expires_at = excluded.expires_at, ttl_ms = excluded.ttl_ms "
            "WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= now() RETURNING true"
        )
        self.update_if_version = (
            f"UPDATE {t} SET value = $2::text::json, version = $3, "
            f"expires_at = CASE WHEN $5::bool THEN expires_at ELSE {expiry.format(ms='$4::bigint')} END, "
            "ttl_ms = CASE WHEN $5::bool THEN ttl_ms ELSE $4::bigint END "
            f"WHERE key = $1 AND version = $6 AND {live} RETURNING true"
        )
        self.remove = f"DELETE FROM {t} WHERE key = ANY($1::text[]) RETURNING {live}"
        self.count = f"SELECT count(*) FROM {t} WHERE key = ANY($1::text[]) AND {live}"
        self.take_turn = "SELECT pg_advisory_xact_lock($1::bigint)"
        self.try_turns_shared = "SELECT bool_and(pg_try_advisory_xact_lock_shared(id)) FROM unnest($1::bigint[]) AS id"
        self.lock_versions = (
            f"SELECT key, version FROM {t} WHERE key = ANY($1::text[]) AND {live} ORDER BY key FOR UPDATE"
        )
        gone = (
            "WITH gone AS (DELETE FROM {t} WHERE {where} RETURNING {live} AS live) "
            "SELECT count(*) FILTER (WHERE live) FROM gone"
        )
        self.remove_range = gone.format(t=t, where="key >= $1 AND key < $2", live=live)
        self.remove_from = gone.format(t=t, where="key >= $1", live=live)
        self.get_ttl = (
            f"SELECT CASE WHEN expires_at IS NULL THEN NULL ELSE "
            f"greatest(1, ceil(extract(epoch FROM expires_at - now()) * 1000))::bigint END "
            f"FROM {t} WHERE key = $1 AND {live}"
        )
        self.set_ttl = (
            f"UPDATE {t} SET expires_at = {expiry.format(ms='$2::bigint')}, ttl_ms = $2::bigint "
            f"WHERE key = $1 AND {live} RETURNING true"
        )
        renew = "coalesce($2::bigint, ttl_ms)"  # the TTL given, else the one recorded
        self.read_refresh = (
            f"UPDATE {t} SET expires_at = CASE WHEN {renew} IS NULL THEN expires_at "
            f"ELSE now() + {renew} * interval '1 millisecond' END, ttl_ms = {renew} "
            f"WHERE key = $1 AND {live} RETURNING value, version"
        )
        expired = "(kv.expires_at IS NOT NULL AND kv.expires_at <= now())"
        current = "(kv.value #>> '{}')"
        self.increment = (
            f"INSERT INTO {t} AS kv (key, value, version, expires_at, ttl_ms) "
            f"VALUES ($1, to_json($2::bigint), $3, {expiry.format(ms='$4::bigint')}, $4::bigint) "
            f"ON CONFLICT (key) DO UPDATE SET "
            f"value = CASE WHEN {expired} THEN excluded.value "
            f"ELSE to_json(({current})::numeric + $2::bigint) END, "
            f"version = excluded.version, "
            f"expires_at = CASE WHEN {expired} THEN excluded.expires_at ELSE kv.expires_at END, "
            f"ttl_ms = CASE WHEN {expired} THEN excluded.ttl_ms ELSE kv.ttl_ms END "
            # Only a JSON integer, and only if the sum stays in 64 bits: else nothing is written.
            f"WHERE {expired} OR (json_typeof(kv.value) = 'number' AND {current} ~ '^-?[0-9]+$' "
            f"AND ({current})::numeric + $2::bigint BETWEEN -9223372036854775808 AND 9223372036854775807) "
            "RETURNING (value #>> '{}')::bigint"
        )
        self.purge = (
            f"WITH gone AS (DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires_at <= now() "
            "LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING 1) SELECT count(*) FROM gone"
        )
        self._t, self._live = t, live

    def field_index(self, field: str) -> str:
        """An index on one top-level JSON field (and the key, so a prefix range stays in it)."""
        name = self._t.split(".")[1][:-1] + f'_f_{field}"'
        path = f"(value->>'{field}')"  # the very text query() writes, or it is not used
        return f"CREATE INDEX IF NOT EXISTS {name} ON {self._t} ({path}, key) WHERE {path} IS NOT NULL"

    def query(self, prefix: str, where: Sequence[Filter], after: str | None, limit: int) -> tuple[str, list[Any]]:
        """A filtered page: the key range, liveness, and per filter a condition that holds
        exactly when the field equals the value as JSON (an index serves plain field names)."""
        params: list[Any] = []

        def bind(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        conds = [f"key >= {bind(prefix)}" if after is None or after < prefix else f"key > {bind(after)}"]
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            conds.append(f"key < {bind(upper)}")
        conds.append(self._live)
        for field, value in where:
            name = f"'{field}'" if is_identifier(field) else f"{bind(field)}::text"
            text, kind = f"(value->>{name})", f"json_typeof(value->{name})"
            if value is None:
                conds.append(f"{kind} = 'null'")
            elif isinstance(value, bool):
                conds.append(f"({kind} = 'boolean' AND {text} = '{str(value).lower()}')")
            elif isinstance(value, str):
                conds.append(f"({text} = {bind(value)}::text AND {kind} = 'string')")
            else:  # a number: by value (1 = 1.0), and only if the field is a number
                conds.append(f"(CASE WHEN {kind} = 'number' THEN {text}::numeric = {bind(str(value))}::numeric END)")
        where_sql = " AND ".join(conds)
        return f"SELECT key, value, version FROM {self._t} WHERE {where_sql} ORDER BY key LIMIT {bind(limit)}", params

    def scan(self, *, first: bool, bounded: bool) -> str:
        lower = "key >= $1" if first else "key > $1"
        upper, limit = ("AND key < $2 ", "$3") if bounded else ("", "$2")
        return f"SELECT key FROM {self._t} WHERE {lower} {upper}AND {self._live} ORDER BY key LIMIT {limit}"
