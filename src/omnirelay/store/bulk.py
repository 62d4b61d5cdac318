"""Many rows as one bound parameter: a JSON array the database unpacks itself.

An ``executemany`` of a few thousand rows is slow on SQLite for a reason outside SQL:
Python's ``sqlite3`` binds every row while holding the GIL, so the writer thread must win
the GIL back from the busy event loop once per row. Sent as one JSON document, a batch is
one bind and one statement step: SQLite reads it with ``json_each``, PostgreSQL with
``jsonb_to_recordset``. The statements are built once per table and dialect, so
SQLAlchemy compiles each of them once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from sqlalchemy import (
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
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.expression import Insert

PARAMETER = "rows"


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
        return select(*(_defaulted(f, c) for f, c in zip(fields, columns, strict=True))).subquery()
    each = func.json_each(bindparam(PARAMETER, type_=Text)).table_valued("value")
    fields = [func.json_extract(each.c.value, literal_column(f"'$.{c.name}'")) for c in columns]
    return select(*(_defaulted(f, c) for f, c in zip(fields, columns, strict=True))).subquery()


@functools.cache
def insert_rows(table: Table, dialect: str) -> Insert:
    """``INSERT INTO table (...) SELECT ... FROM rows``, for every column but the key."""
    columns = tuple(c for c in table.columns if c.autoincrement is not True)
    rows = source(columns, dialect)
    return insert(table).from_select([c.name for c in columns], select(*rows.c))


def _defaulted(field: ColumnElement[Any], target: Column[Any]) -> ColumnElement[Any]:
    default = target.server_default
    if default is None or target.nullable:
        return field.label(target.name)
    argument = getattr(default, "arg", None)
    fallback = literal_column(argument) if isinstance(argument, str) else argument
    return func.coalesce(field, fallback).label(target.name)
