"""Copy a gateway's whole database into an empty one: growing out of SQLite.

``omnirelay db copy --to postgresql+asyncpg://...`` (``cli_db.py``). The target must be
empty (no table of it may hold a row; tables an ``omnirelay migrate`` created are fine).
It is migrated to this version's schema, then every table is copied, rows and ids as they
are: each table of ``tables.metadata`` in dependency order, then any other table the
source's migrations made (found by reflecting the source, so that a table added later is
copied without naming it here). The copy reads the source in one transaction, so it is one
consistent moment of it; on SQLite that transaction holds the write lock, so a gateway
still running on the file waits (stop it first: what it writes after the copy would not
be in the target anyway). The target is written in one transaction too: a copy that fails
leaves it empty.

Afterwards, PostgreSQL's id sequences are moved past the copied ids, and the copy is
checked: every table's row count, the ledger's total and each key's, and each key's
``used_nano`` must be equal on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, MetaData, Table, func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from omnirelay.store.db import create_engine, migrate
from omnirelay.store.tables import keys, ledger, metadata

BATCH = 1000
SKIPPED = frozenset({"alembic_version"})  # written by the target's own migration


class CopyRefused(Exception):
    """The copy did not start (the target is not empty) or did not check out."""


@dataclass
class CopyReport:
    rows: dict[str, int] = field(default_factory=dict)
    """Rows copied, per table, in the order copied."""
    ledger_total_nano: int = 0
    keys: int = 0


async def copy_database(source: AsyncEngine, target_url: str) -> CopyReport:
    """Copy everything from ``source`` into the empty database at ``target_url``."""
    target = create_engine(target_url)
    try:
        async with target.connect() as connection:
            full = await connection.run_sync(_tables_with_rows)
        if full:
            raise CopyRefused(
                "The target database is not empty (rows in: " + ", ".join(sorted(full)) + "). "
                "Copy into a new, empty database."
            )
        await migrate(target)
        report = CopyReport()
        async with source.connect() as reading, target.begin() as writing:
            await reading.begin()  # one snapshot of the source for the whole copy
            for table in await reading.run_sync(_tables_of):
                report.rows[table.name] = await _copy_table(reading, writing, table)
            if writing.dialect.name == "postgresql":
                await writing.run_sync(_advance_sequences, list(report.rows))
            await _verify(reading, writing, report)
            await reading.rollback()
        return report
    finally:
        await target.dispose()


def _tables_with_rows(connection: Connection) -> list[str]:
    names = [name for name in inspect(connection).get_table_names() if name not in SKIPPED]
    reflected = MetaData()
    reflected.reflect(connection, only=names)
    return [
        name
        for name in names
        if connection.execute(select(func.count()).select_from(reflected.tables[name])).scalar()
    ]


def _tables_of(connection: Connection) -> list[Table]:
    """Every table to copy: the schema's, in dependency order, then any other the source has."""
    present = set(inspect(connection).get_table_names()) - SKIPPED
    known = [table for table in metadata.sorted_tables if table.name in present]
    others = sorted(present - {table.name for table in known})
    if not others:
        return known
    reflected = MetaData()
    reflected.reflect(connection, only=others)
    return known + [reflected.tables[name] for name in others]


async def _copy_table(reading: AsyncConnection, writing: AsyncConnection, table: Table) -> int:
    target_columns = await writing.run_sync(
        lambda c: {column["name"] for column in inspect(c).get_columns(table.name)}
    )
    if not target_columns:
        raise CopyRefused(f"The target has no table {table.name!r}; is it the same version?")
    columns = [column for column in table.columns if column.name in target_columns]
    missing = {column.name for column in table.columns} - target_columns
    if missing:
        raise CopyRefused(f"The target's {table.name!r} lacks columns: {sorted(missing)}")
    order = list(table.primary_key.columns) or columns
    insert = _written_as_read(table).insert()
    copied = 0
    result = await reading.stream(select(*columns).order_by(*order))
    async for rows in result.partitions(BATCH):
        await writing.execute(insert, [dict(row._mapping) for row in rows])
        copied += len(rows)
    return copied


def _written_as_read(table: Table) -> Table:
    """The table to insert into: a JSON column's SQL NULL stays NULL (by default SQLAlchemy
    writes Python's None as the JSON value ``null``)."""
    copy = table.to_metadata(MetaData())
    for column in copy.columns:
        if isinstance(column.type, JSON):
            column.type = JSON(none_as_null=True)
    return copy


def _advance_sequences(connection: Connection, names: list[str]) -> None:
    """Each serial id's sequence past the largest id copied, so new rows get new ids."""
    for name in names:
        for column in inspect(connection).get_columns(name):
            sequence = connection.execute(
                text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": name, "column": column["name"]},
            ).scalar()
            if sequence is None:
                continue
            # Identifiers come from the database's own catalogue, quoted.
            quoted_table = connection.dialect.identifier_preparer.quote(name)
            quoted_column = connection.dialect.identifier_preparer.quote(column["name"])
            connection.execute(
                text(
                    f"SELECT setval(:sequence, COALESCE(MAX({quoted_column}), 1), "  # noqa: S608
                    f"MAX({quoted_column}) IS NOT NULL) FROM {quoted_table}"
                ),
                {"sequence": sequence},
            )


async def _verify(reading: AsyncConnection, writing: AsyncConnection, report: CopyReport) -> None:
    for name, copied in report.rows.items():
        table = metadata.tables.get(name)
        if table is None:
            continue  # another table: its count was checked as it was copied
        stored = await writing.scalar(select(func.count()).select_from(table))
        if stored != copied:
            raise CopyRefused(f"{name}: {copied} rows read but {stored} in the target")
    ledgers = [await _ledger_totals(side) for side in (reading, writing)]
    if ledgers[0] != ledgers[1]:
        raise CopyRefused("The ledger's totals differ between the source and the target.")
    spends = [await _key_spend(side) for side in (reading, writing)]
    if spends[0] != spends[1]:
        raise CopyRefused("The keys' spend differs between the source and the target.")
    report.ledger_total_nano = sum(ledgers[0].values())
    report.keys = len(spends[0])


async def _ledger_totals(connection: AsyncConnection) -> dict[Any, int]:
    query = select(ledger.c.key_id, func.sum(ledger.c.amount_nano)).group_by(ledger.c.key_id)
    return {key_id: int(total) for key_id, total in (await connection.execute(query)).all()}


async def _key_spend(connection: AsyncConnection) -> dict[Any, int]:
    query = select(keys.c.id, keys.c.used_nano)
    return {key_id: int(used) for key_id, used in (await connection.execute(query)).all()}
