"""Batches of rows in few statements, not one statement step per row.

An ``executemany`` of a few thousand rows is slow on SQLite for a reason outside SQL:
Python's ``sqlite3`` binds every row while holding the GIL, so the writer thread must win
the GIL back from the busy event loop once per row, and under load it fell tens of seconds
behind. So rows go in as

- multi-row ``INSERT ... VALUES (...), (...)`` of up to ``SQLITE_ROWS_PER_STATEMENT`` rows
  on SQLite: one bind and one step per statement, and ~7 µs of CPU a log row (reading the
  same rows from JSON took ~16, as ``json_extract`` parses the row once per column);
- one JSON document on PostgreSQL, unpacked by ``jsonb_to_recordset``: one round trip.

Sets of request ids (rows to delete or update) travel as one JSON document on both, read
by ``json_each`` or ``jsonb_to_recordset``. Every statement is built once per table and
dialect, so SQLAlchemy compiles each of them once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    FromClause,
    Table,
    Text,
    bindparam,
    cast,
    column,
    func,
    insert,
    literal_column,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import Insert

PARAMETER = "rows"
SQLITE_ROWS_PER_STATEMENT = 50


def insert_many(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` into every column of ``table`` but its key; a key a row leaves out
    reads as NULL, or as the column's server default when it has one."""
    if not rows:
        return
    dialect = connection.dialect.name
    if dialect != "sqlite":
        connection.execute(insert_rows(table, dialect), {PARAMETER: dumps(rows)})
        return
    names, json_at = _value_columns(table)
    step = SQLITE_ROWS_PER_STATEMENT
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        values: list[Any] = []
        for row in part:
            base = len(values)
            values.extend(map(row.get, names))
            for index in json_at:
                if values[base + index] is not None:
                    values[base + index] = orjson.dumps(values[base + index]).decode()
        connection.exec_driver_sql(_sqlite_insert(table, len(part)), tuple(values))


@functools.cache
def _value_columns(table: Table) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The inserted columns' names, and the positions of those that hold JSON."""
    columns = _inserted(table)
    json_at = tuple(i for i, c in enumerate(columns) if isinstance(c.type, JSON))
    return tuple(c.name for c in columns), json_at


@functools.cache
def _sqlite_insert(table: Table, rows: int) -> str:
    columns = _inserted(table)
    placeholders = []
    for target in columns:
        default = _server_default(target, "sqlite")
        placeholders.append("?" if default is None else f"coalesce(?, {default})")
    one = "(" + ", ".join(placeholders) + ")"
    names = ", ".join(c.name for c in columns)
    # Names and defaults come from the schema, never from the rows; values are bound.
    statement = f"INSERT INTO {table.name} ({names}) VALUES "  # noqa: S608
    return statement + ", ".join([one] * rows)


def _inserted(table: Table) -> tuple[Column[Any], ...]:
    return tuple(c for c in table.columns if c.autoincrement is not True)


def _server_default(target: Column[Any], dialect: str) -> str | None:
    """The SQL text of a NOT NULL column's server default, which a NULL falls back to."""
    default = target.server_default
    if default is None or target.nullable:
        return None
    argument: Any = getattr(default, "arg", None)
    if isinstance(argument, str):
        return argument
    return str(argument.compile(dialect=_DIALECTS[dialect]()))


def dumps(rows: Iterable[Mapping[str, Any]]) -> str:
    """The value to bind as ``rows`` for the statements built here."""
    return orjson.dumps(list(rows)).decode()


@functools.cache
def source(columns: tuple[Column[Any], ...], dialect: str) -> FromClause:
    """A selectable over the ``rows`` parameter with one typed column per given column.

    A key missing from a row reads as NULL, or as the column's server default when it has
    one, as it would in a plain INSERT that leaves the column out.
    """
    if dialect == "postgresql":
        document = cast(bindparam(PARAMETER, type_=Text), JSONB)
        records = (
            func.jsonb_to_recordset(document)
            .table_valued(*(column(c.name, c.type) for c in columns))
            .render_derived(with_types=True)
        )
        fields: list[ColumnElement[Any]] = [records.c[c.name] for c in columns]
    else:
        each = func.json_each(bindparam(PARAMETER, type_=Text)).table_valued("value")
        fields = [func.json_extract(each.c.value, literal_column(f"'$.{c.name}'")) for c in columns]
    return select(
        *(_or_default(f, c, dialect) for f, c in zip(fields, columns, strict=True))
    ).subquery()


def _or_default(field: ColumnElement[Any], target: Column[Any], dialect: str) -> ColumnElement[Any]:
    default = _server_default(target, dialect)
    if default is not None:
        field = func.coalesce(field, literal_column(default))
    return field.label(target.name)


@functools.cache
def insert_rows(table: Table, dialect: str) -> Insert:
    """``INSERT INTO table (...) SELECT ... FROM rows``, for every column but the key."""
    columns = _inserted(table)
    rows = source(columns, dialect)
    return insert(table).from_select([c.name for c in columns], select(*rows.c))


_DIALECTS = {"sqlite": sqlite.dialect, "postgresql": postgresql.dialect}
