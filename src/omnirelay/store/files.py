"""The files table: files uploaded for batches and the files batches wrote, per key.

A file's bytes are a blob (``store.blobs``); its row and the blob's reference
(``blob_refs`` owner ``file:<id>``) are written and removed together, so a blob no file
references any more can be deleted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import delete, insert, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from omnirelay.store.tables import blob_refs, files


@dataclass(frozen=True, slots=True)
class FileRow:
    id: str
    key_id: int
    purpose: str
    filename: str
    bytes: int
    digest: str
    lines: int
    created_ms: int
    expires_ms: int | None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> FileRow:
        return cls(**{name: row[name] for name in _FIELDS})

    @property
    def owner(self) -> str:
        """The name its blob is referenced by (``blob_refs.owner``)."""
        return f"file:{self.id}"

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(field.name for field in fields(FileRow))


async def insert_file(connection: AsyncConnection, file: FileRow) -> None:
    """The file's row and its blob's reference, in the caller's transaction."""
    await connection.execute(insert(files).values(**file.values()))
    await connection.execute(
        insert(blob_refs).values(digest=file.digest, owner=file.owner, created_ms=file.created_ms)
    )


class FileRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, file: FileRow) -> None:
        async with self._engine.begin() as connection:
            await insert_file(connection, file)

    async def get(self, file_id: str) -> FileRow | None:
        async with self._engine.connect() as connection:
            row = (
                (await connection.execute(select(files).where(files.c.id == file_id)))
                .mappings()
                .one_or_none()
            )
        return None if row is None else FileRow.of(row)

    async def list_for_key(
        self,
        key_id: int,
        *,
        limit: int,
        after: FileRow | None = None,
        purpose: str | None = None,
        ascending: bool = False,
    ) -> tuple[list[FileRow], bool]:
        """A key's files, newest first (or oldest), after a cursor file; and whether more
        follow."""
        query = select(files).where(files.c.key_id == key_id)
        if purpose is not None:
            query = query.where(files.c.purpose == purpose)
        order = (files.c.created_ms, files.c.id)
        if after is not None:
            cursor = (after.created_ms, after.id)
            if ascending:
                query = query.where(_tuple(order) > _tuple_literal(cursor))
            else:
                query = query.where(_tuple(order) < _tuple_literal(cursor))
        ordering = order if ascending else tuple(column.desc() for column in order)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query.order_by(*ordering).limit(limit + 1))).mappings()
            found = [FileRow.of(row) for row in rows]
        return found[:limit], len(found) > limit

    async def delete(self, file: FileRow) -> bool:
        """Remove the file and its reference; True when its blob is referenced no more."""
        async with self._engine.begin() as connection:
            await connection.execute(delete(files).where(files.c.id == file.id))
            await connection.execute(delete(blob_refs).where(blob_refs.c.owner == file.owner))
            left = await connection.scalar(
                select(blob_refs.c.digest).where(blob_refs.c.digest == file.digest).limit(1)
            )
        return left is None

    async def expired(self, now_ms: int | None = None, limit: int = 100) -> list[FileRow]:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        query = select(files).where(files.c.expires_ms < now_ms).limit(limit)
        async with self._engine.connect() as connection:
            return [FileRow.of(row) for row in (await connection.execute(query)).mappings()]


def _tuple(columns: tuple[Any, ...]) -> Any:
    return tuple_(*columns)


def _tuple_literal(values: tuple[Any, ...]) -> Any:
    return tuple_(*(literal(value) for value in values))
