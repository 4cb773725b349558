"""Rows as upstream's tables hold them, kept as JSON records of the generic store.

A :class:`Table` knows its columns (SQLite type affinity, NOT NULL, default), its primary key,
its UNIQUE and FOREIGN KEY constraints, and how its rows are keyed: ``ba:<ns>:<table>:<pk>``,
or, for rows only ever listed per parent (negotiation rounds per deal, transitions per
entity...), ``ba:<ns>:<table>:<parent>:<seq>``, so a parent's rows are one key range. Each row
carries ``_seq``, its insertion number in the table (upstream's rowid order), which breaks ties
in ordered lists and is never returned.

Values are stored as SQLite would store them in that column: an ``int`` in a REAL column
becomes a ``float``, a number in a TEXT column its text, an integral ``float`` or a numeric
text in an INTEGER column an ``int``; a value ``sqlite3`` cannot bind (a dict, a Decimal) is
refused with ``sqlite3.ProgrammingError``'s message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from ad_buyer_storage.client.transaction import Transaction
from ad_buyer_storage_buyer_agent._backing import Backing
from ad_buyer_storage_buyer_agent.errors import IntegrityError, ProgrammingError

__all__ = ["NOW", "Column", "Table", "coerce", "now_iso", "sql_now", "table"]

SEQ = "_seq"


class _Now:
    """The default ``strftime('%Y-%m-%dT%H:%M:%fZ', 'now')``: milliseconds, as SQLite writes it."""

    def __repr__(self) -> str:
        return "NOW"


NOW = _Now()


def now_iso() -> str:
    """Upstream's Python timestamps: microseconds and a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sql_now() -> str:
    """SQLite's default timestamps (``strftime('%Y-%m-%dT%H:%M:%fZ', 'now')``): milliseconds."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Column:
    name: str
    affinity: str  # TEXT, INTEGER, REAL
    notnull: bool = False
    default: Any = None


_INT = re.compile(r"[+-]?\d+")
_REAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT64 = 2**63


def coerce(value: Any, affinity: str, where: str = "") -> Any:
    """*value* as SQLite stores it in a column of that affinity."""
    if value is None:
        return None
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        if affinity == "REAL":
            return float(value)
        return str(value) if affinity == "TEXT" else value
    if isinstance(value, float):
        if affinity == "TEXT":
            return repr(value)
        if affinity == "INTEGER" and value.is_integer() and -_INT64 <= value < _INT64:
            return int(value)
        return value
    if isinstance(value, str):
        stripped = value.strip()
        if affinity in ("INTEGER", "REAL") and _REAL.fullmatch(stripped):
            if affinity == "INTEGER" and _INT.fullmatch(stripped) and -_INT64 <= int(stripped) < _INT64:
                return int(stripped)
            number = float(stripped)
            if affinity == "INTEGER" and number.is_integer() and -_INT64 <= number < _INT64:
                return int(number)
            return number
        return value
    raise ProgrammingError(f"Error binding parameter{where}: type '{type(value).__name__}' is not supported")


@dataclass(frozen=True)
class Table:
    """One of upstream's tables (see :mod:`ad_buyer_storage_buyer_agent.schema`)."""

    name: str
    columns: tuple[Column, ...]
    pk: tuple[str, ...]
    autoincrement: bool = False
    parent: tuple[str, ...] = ()  # rows keyed (and listed) under these columns' values
    unique: tuple[tuple[str, ...], ...] = ()
    references: tuple[tuple[str, str], ...] = ()  # (column, parent table): FOREIGN KEY
    by_name: dict[str, Column] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({c.name: c for c in self.columns})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    # -- keys ---------------------------------------------------------------------------------
    def prefix(self, backing: Backing, parent: Sequence[Any] = ()) -> str:
        """The key prefix of the table's rows, or of one parent's rows."""
        if not parent:
            return backing.key(self.name, "")
        return backing.key(self.name, *(quote(str(v), safe="") for v in parent), "")

    def key(self, backing: Backing, row: Mapping[str, Any]) -> str:
        if self.parent:
            return self.prefix(backing, [row[c] for c in self.parent]) + f"{row[SEQ]:019d}"
        return self.pk_key(backing, [row[c] for c in self.pk])

    def pk_key(self, backing: Backing, values: Sequence[Any]) -> str:
        """The key of the row with this primary key (tables not keyed under a parent)."""
        parts = [f"{v:019d}" if isinstance(v, int) else quote(str(v), safe="") for v in values]
        return backing.key(self.name, *parts)

    def seq_key(self, backing: Backing) -> str:
        return backing.key("seq", self.name)

    def unique_key(self, backing: Backing, columns: Sequence[str], row: Mapping[str, Any]) -> str:
        return backing.key("uniq", self.name, *columns, *(quote(str(row[c]), safe="") for c in columns))

    # -- rows ---------------------------------------------------------------------------------
    def build(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """A new row: the given columns coerced, the others their default (NOT NULL checked)."""
        unknown = set(given) - set(self.by_name)
        if unknown:
            raise ProgrammingError(f"table {self.name} has no column named {sorted(unknown)[0]}")
        row: dict[str, Any] = {}
        for index, column in enumerate(self.columns, start=1):
            if column.name in given:
                value = coerce(given[column.name], column.affinity, f" {index}")
            elif column.default is NOW:
                value = sql_now()
            else:
                value = column.default
            row[column.name] = value
        self.check_not_null(row)
        return row

    def check_not_null(self, row: Mapping[str, Any]) -> None:
        for column in self.columns:
            if column.notnull and row.get(column.name) is None and not (self.autoincrement and column.name in self.pk):
                raise IntegrityError(f"NOT NULL constraint failed: {self.name}.{column.name}")

    def changed(self, row: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
        """*row* with *updates* applied (coerced, NOT NULL checked)."""
        new = dict(row)
        for name, value in updates.items():
            column = self.by_name.get(name)
            if column is None:
                raise ProgrammingError(f"no such column: {name}")
            new[name] = coerce(value, column.affinity)
        self.check_not_null(new)
        return new

    def public(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The row as upstream returns it: its columns in table order, nothing else."""
        return {name: row.get(name) for name in self.names}

    # -- writes inside a transaction ------------------------------------------------------------
    async def insert(self, tx: Transaction, backing: Backing, tables: Mapping[str, Table], row: dict[str, Any]) -> int:
        """Stage *row* (built by :meth:`build`) after checking the table's constraints as
        SQLite would, in the transaction: a key read is a key the commit depends on. Gives the
        row its ``_seq`` (and its id, for an autoincrement key) and returns it."""
        seq = int(await backing.store.incr(self.seq_key(backing)))
        row[SEQ] = seq
        if self.autoincrement:
            row[self.pk[0]] = seq
        elif not self.parent and await tx.exists(self.key(backing, row)):
            raise IntegrityError(f"UNIQUE constraint failed: {', '.join(f'{self.name}.{c}' for c in self.pk)}")
        for columns in self.unique:
            if any(row[c] is None for c in columns):
                continue  # NULLs are distinct in SQLite's UNIQUE
            guard = self.unique_key(backing, columns, row)
            if await tx.exists(guard):
                raise IntegrityError(f"UNIQUE constraint failed: {', '.join(f'{self.name}.{c}' for c in columns)}")
            tx.set(guard, self.key(backing, row))
        for column, parent_name in self.references:
            if row[column] is None:
                continue
            parent = tables[parent_name]
            if not await tx.exists(parent.pk_key(backing, [row[column]])):
                raise IntegrityError("FOREIGN KEY constraint failed")
        tx.set(self.key(backing, row), row)
        return seq


def table(
    name: str,
    spec: str,
    *,
    autoincrement: bool = False,
    parent: Iterable[str] = (),
    unique: Iterable[Iterable[str]] = (),
    references: Iterable[tuple[str, str]] = (),
) -> Table:
    """A table from a compact spec: ``"id TEXT pk; seller_url TEXT nn; status TEXT nn='draft';
    price REAL; created_at TEXT nn=now"``."""
    columns: list[Column] = []
    pk: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        words = part.split(None, 2)
        col_name, affinity = words[0], words[1]
        flags = words[2] if len(words) > 2 else ""
        notnull = "nn" in flags.split("=")[0].split() or "pk" in flags.split()
        default: Any = None
        if "=" in flags:
            raw = flags.split("=", 1)[1].strip()
            if raw == "now":
                default = NOW
            elif raw.startswith("'"):
                default = raw.strip("'")
            else:
                default = float(raw) if "." in raw else int(raw)
        if "pk" in flags.split():
            pk.append(col_name)
        columns.append(Column(col_name, affinity, notnull, default))
    return Table(
        name,
        tuple(columns),
        tuple(pk),
        autoincrement=autoincrement,
        parent=tuple(parent),
        unique=tuple(tuple(u) for u in unique),
        references=tuple(references),
    )
