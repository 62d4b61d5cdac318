"""Dead letters: log rows the database refused, set aside so that the rest go on.

A dead letter keeps the row as it was submitted (as JSON), why it was refused (the
error's class and message), when, and its state: ``pending`` until it is replayed
(``store/replay.py``), then ``replayed``. ``charged`` says whether the row's essentials and
its charge were committed when it was set aside; when not, the charge is in no ledger and
no key's spend until the letter is replayed.

A letter is written so that the database cannot refuse it in turn: the row is ASCII JSON
in a text column, strings are cleaned and clipped to their columns, and a key id or cost
that does not fit a BIGINT is left NULL (the JSON still holds it). Letters are unique by
request id, so a row set aside twice (an earlier attempt's outcome lost) is kept once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store.db import dialect_insert, sqlite_file_read
from omnirelay.store.refusals import describe
from omnirelay.store.tables import dead_letters, holds

QUICK_READ_S = 2.0
PENDING = "pending"
REPLAYED = "replayed"
STATES = (PENDING, REPLAYED)
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


def letter(
    row: Mapping[str, Any], error: BaseException, *, charged: bool, now_ms: int | None = None
) -> dict[str, Any]:
    """The dead letter of ``row``, refused with ``error``, as the table's values."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    error_class, message = describe(error)
    return {
        "request_id": clean(row.get("request_id"), chars(dead_letters.c.request_id)),
        "key_id": _bigint(row.get("key_id")),
        "cost_nano": _bigint(row.get("cost_nano")),
        "row_json": dumps(row),
        "error_class": clean(error_class, chars(dead_letters.c.error_class)),
        "error_message": message,
        "charged": charged,
        "state": PENDING,
        "created_ms": now_ms,
        "updated_ms": now_ms,
    }


def dumps(row: Mapping[str, Any]) -> str:
    """The row as ASCII JSON: any integer, escaped NULs and lone surrogates, and the repr
    of a value JSON has no form for."""
    return json.dumps(dict(row), ensure_ascii=True, default=repr)


def clean(value: Any, length: int | None) -> str:
    """``value`` as text a column takes: no NUL, no lone surrogate, at most ``length``."""
    text = str(value).replace("\x00", "")
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:length] if length else text


def chars(column: ColumnElement[Any]) -> int | None:
    """The most characters a string column takes; None when it has no limit."""
    length = getattr(column.type, "length", None)
    return length if isinstance(length, int) else None


def _bigint(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and BIGINT_MIN <= value <= BIGINT_MAX:
        return value
    return None


def record(connection: Connection, letters: Sequence[Mapping[str, Any]]) -> None:
    """Set letters aside, inside the caller's transaction, and close their calls' holds:
    a letter's charge is settled by its replay, never from a checkpoint."""
    if not letters:
        return
    insert = dialect_insert(connection)(dead_letters)
    connection.execute(
        insert.on_conflict_do_nothing(index_elements=[dead_letters.c.request_id]), list(letters)
    )
    request_ids = [entry["request_id"] for entry in letters]
    connection.execute(delete(holds).where(holds.c.request_id.in_(request_ids)))


def view(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored letter as the admin API and the CLI show it, the row decoded."""
    shown = {str(name): value for name, value in stored.items() if name != "row_json"}
    shown["charged"] = bool(shown["charged"])
    shown["row"] = json.loads(stored["row_json"])
    return shown


class DeadLetterRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def recent(
        self, *, state: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Letters, newest first."""
        query = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(dead_letters.c.state == state)
        if before_id is not None:
            query = query.where(dead_letters.c.id < before_id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [view({str(name): value for name, value in row.items()}) for row in rows]

    async def pending_count(self) -> int:
        """Letters waiting for a replay; on SQLite read without waiting for the writer."""
        url = self._engine.url.render_as_string(hide_password=False)
        sql = f"SELECT COUNT(*) FROM dead_letters WHERE state = '{PENDING}'"  # noqa: S608
        rows = await asyncio.to_thread(sqlite_file_read, url, sql, QUICK_READ_S)
        if rows is not None:
            return int(rows[0][0])
        pending = dead_letters.c.state == PENDING
        query = select(func.count()).select_from(dead_letters).where(pending)
        async with self._engine.connect() as connection:
            return int((await connection.scalar(query)) or 0)

    async def pending_ids(self) -> list[int]:
        query = (
            select(dead_letters.c.id)
            .where(dead_letters.c.state == PENDING)
            .order_by(dead_letters.c.id)
        )
        async with self._engine.connect() as connection:
            return [int(letter_id) for letter_id in (await connection.scalars(query)).all()]
