"""The table's DDL and its migrations: created on first connect under an advisory lock (eight
instances cold-starting at once run it one at a time), its schema version recorded in
``<schema>.ad_buyer_storage_schema`` so later releases migrate in place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ad_buyer_storage.errors import ConfigurationError

from .statements import Statements

__all__ = ["SCHEMA_VERSION", "create_schema"]

SCHEMA_VERSION = 3  # 1: value jsonb; 2: value json (exact text); 3: ttl_ms, the TTL each key was given


async def create_schema(
    conn: Any, sql: Statements, *, where: str, table: str, lock: int, indexed_fields: Sequence[str]
) -> None:
    """Create or migrate the table *table* (*where*: ``schema.table``, for messages) on *conn*,
    in one transaction holding the advisory lock *lock*."""
    async with conn.transaction():
        await conn.execute(sql.ddl_lock, lock)
        await conn.execute(sql.create_schema)
        await conn.execute(sql.create_meta)
        found = await conn.fetchval(sql.read_version, table)
        if found is not None and found > SCHEMA_VERSION:
            raise ConfigurationError(
                f"table {where} has schema version {found}; this release knows "
                f"{SCHEMA_VERSION}: upgrade ad-buyer-storage-postgres"
            )
        await conn.execute(sql.create_table)
        await conn.execute(sql.create_index)
        for field in indexed_fields:
            await conn.execute(sql.field_index(field))
        if found == 1:
            # jsonb kept values as respelt documents; json keeps text. Their text is
            # already jsonb's, so nothing changes for them but their type.
            await conn.execute(sql.upgrade_to_json)
        if found is not None and found < 3:
            # Rows written before keep NULL: they are renewed only to an explicit TTL.
            await conn.execute(sql.add_ttl_column)
        await conn.execute(sql.write_version, table, SCHEMA_VERSION)
