"""Keyset pages of time-ordered rows: newest first by ``(created_ms, id)``.

A page ends at a :class:`Cursor`, the last row's time and id; the next page starts after
it. Walking an index on ``created_ms`` (SQLite and PostgreSQL keep the row id in it, or
break its ties cheaply) a page reads about as many rows as it shows, whatever the table's
size, where an offset would read every row it skips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, or_


@dataclass(frozen=True, slots=True)
class Cursor:
    created_ms: int
    id: int

    def token(self) -> str:
        return f"{self.created_ms}.{self.id}"

    @classmethod
    def parse(cls, token: str) -> Cursor:
        """From :meth:`token`; ValueError when it is not one."""
        created, dot, row_id = token.partition(".")
        if not dot:
            raise ValueError(f"not a page cursor: {token!r}")
        return cls(int(created), int(row_id))

    @classmethod
    def of(cls, row: dict[str, Any]) -> Cursor:
        return cls(int(row["created_ms"]), int(row["id"]))


def after(created: Any, row_id: Any, cursor: Cursor) -> list[ColumnElement[bool]]:
    """The conditions for rows after ``cursor``, newest first. The first bounds the index
    range; the second breaks ties between rows of the same millisecond."""
    return [
        created <= cursor.created_ms,
        or_(created < cursor.created_ms, row_id < cursor.id),
    ]
