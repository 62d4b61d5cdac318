"""Stored responses of the Responses API, and their items.

A response row keeps the ``response`` object as JSON; its items (``response_items``) keep,
in order, every item it was made from (``input``: the conversation before it, then its own
input) and every item it made (``output``). So a response's input items are one query, and
so is the whole conversation a ``previous_response_id`` continues (its input, then its
output). Every read is by the key that made the response: another key finds nothing.

A background response is saved when it is queued, with its input items; it moves on
(``progress``) while it runs, and its end (``ending``: its last status and object, and the
items it made) commits in the transaction that ends its task.

Rows are deleted with their response, or by age (``prune``, a bounded batch at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store.tables import response_items, responses

INPUT = "input"
OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    key_id: int
    model: str
    status: str
    response: dict[str, Any]
    created_ms: int
    previous_response_id: str | None = None
    background: bool = False


@dataclass(frozen=True, slots=True)
class ItemPage:
    items: list[dict[str, Any]]
    has_more: bool


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def item_rows(
    stored: StoredResponse, kind: str, items: Sequence[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    return [
        {
            "response_id": stored.id,
            "kind": kind,
            "position": position,
            "item_id": identity,
            "key_id": stored.key_id,
            "item_json": _json(item),
            "created_ms": stored.created_ms,
        }
        for position, (identity, item) in enumerate(items)
    ]


def _moved(stored: StoredResponse) -> Any:
    """The update that gives a kept response its new status and object."""
    return (
        update(responses)
        .where(responses.c.id == stored.id, responses.c.key_id == stored.key_id)
        .values(status=stored.status, response_json=_json(stored.response))
    )


def ending(
    stored: StoredResponse, outputs: Sequence[tuple[str, dict[str, Any]]]
) -> Callable[[Connection], None]:
    """The statements that end a background response (``stored``: its last status and
    object), to run inside the caller's transaction. A response deleted meanwhile stays
    deleted: nothing is written."""

    def write(connection: Connection) -> None:
        moved = connection.execute(_moved(stored))
        rows = item_rows(stored, OUTPUT, outputs)
        if moved.rowcount == 1 and rows:
            connection.execute(response_items.insert(), rows)

    return write


def stopping(
    response_id: str, key_id: int, status: str, error: dict[str, Any] | None
) -> Callable[[Connection], None]:
    """The statements that end a background response where it stands (cancelled, or
    failed before it ran): its kept object with the new ``status`` and ``error``."""

    def write(connection: Connection) -> None:
        where = (responses.c.id == response_id, responses.c.key_id == key_id)
        kept = connection.execute(select(responses.c.response_json).where(*where)).scalar()
        if kept is None:
            return
        response = {**orjson.loads(kept), "status": status, "error": error}
        connection.execute(
            update(responses).where(*where).values(status=status, response_json=_json(response))
        )

    return write


class ResponseRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def save(
        self,
        stored: StoredResponse,
        inputs: Sequence[tuple[str, dict[str, Any]]],
        outputs: Sequence[tuple[str, dict[str, Any]]],
    ) -> None:
        """Keep a response and its items, each item under its id, in one transaction."""
        row = {
            "id": stored.id,
            "key_id": stored.key_id,
            "model": stored.model,
            "status": stored.status,
            "background": stored.background,
            "previous_response_id": stored.previous_response_id,
            "response_json": _json(stored.response),
            "created_ms": stored.created_ms,
        }
        rows = item_rows(stored, INPUT, inputs) + item_rows(stored, OUTPUT, outputs)
        async with self._engine.begin() as connection:
            await connection.execute(responses.insert(), [row])
            if rows:
                await connection.execute(response_items.insert(), rows)

    async def progress(self, stored: StoredResponse) -> bool:
        """A background response moved on (``in_progress``); False when it is gone."""
        async with self._engine.begin() as connection:
            moved = await connection.execute(_moved(stored))
        return moved.rowcount == 1

    async def get(self, response_id: str, key_id: int) -> StoredResponse | None:
        query = select(responses).where(responses.c.id == response_id, responses.c.key_id == key_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).mappings().first()
        if row is None:
            return None
        return StoredResponse(
            id=row["id"],
            key_id=int(row["key_id"]),
            model=row["model"],
            status=row["status"],
            response=orjson.loads(row["response_json"]),
            created_ms=int(row["created_ms"]),
            previous_response_id=row["previous_response_id"],
            background=bool(row["background"]),
        )

    async def delete(self, response_id: str, key_id: int) -> bool:
        async with self._engine.begin() as connection:
            gone = await connection.execute(
                delete(responses).where(responses.c.id == response_id, responses.c.key_id == key_id)
            )
            if not gone.rowcount:
                return False
            await connection.execute(
                delete(response_items).where(response_items.c.response_id == response_id)
            )
        return True

    async def conversation(self, response_id: str, key_id: int) -> list[dict[str, Any]] | None:
        """Every item of a stored response, its input then its output; None when the key has
        no such response."""
        query = (
            select(response_items.c.item_json)
            .where(response_items.c.response_id == response_id, response_items.c.key_id == key_id)
            .order_by(response_items.c.kind, response_items.c.position)  # "input" < "output"
        )
        async with self._engine.connect() as connection:
            if await self._missing(connection, response_id, key_id):
                return None
            found = (await connection.scalars(query)).all()
        return [orjson.loads(text) for text in found]

    async def input_items(
        self,
        response_id: str,
        key_id: int,
        *,
        limit: int,
        descending: bool,
        after: str | None = None,
    ) -> ItemPage | None:
        """One page of a response's input items; None when the key has no such response."""
        items = response_items.c
        query = select(items.item_json).where(items.response_id == response_id, items.kind == INPUT)
        async with self._engine.connect() as connection:
            if await self._missing(connection, response_id, key_id):
                return None
            if after is not None:
                start = await connection.scalar(
                    select(items.position)
                    .where(
                        items.response_id == response_id,
                        items.kind == INPUT,
                        items.item_id == after,
                    )
                    .limit(1)
                )
                if start is None:
                    return ItemPage([], False)
                query = query.where(
                    items.position < start if descending else items.position > start
                )
            order = items.position.desc() if descending else items.position
            found = (await connection.scalars(query.order_by(order).limit(limit + 1))).all()
        page = [orjson.loads(text) for text in found[:limit]]
        return ItemPage(page, len(found) > limit)

    async def find_items(self, key_id: int, item_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored items of a key by id (the newest copy of each)."""
        if not item_ids:
            return {}
        items = response_items.c
        query = (
            select(items.item_id, items.item_json)
            .where(items.key_id == key_id, items.item_id.in_(set(item_ids)))
            .order_by(items.created_ms)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return {row.item_id: orjson.loads(row.item_json) for row in rows}

    async def prune(self, before_ms: int, batch: int) -> int:
        """Delete at most ``batch`` responses made before ``before_ms``, with their items;
        returns how many responses went."""
        oldest = select(responses.c.id).where(responses.c.created_ms < before_ms).limit(batch)
        async with self._engine.begin() as connection:
            ids = list((await connection.scalars(oldest)).all())
            if ids:
                await connection.execute(
                    delete(response_items).where(response_items.c.response_id.in_(ids))
                )
                await connection.execute(delete(responses).where(responses.c.id.in_(ids)))
        return len(ids)

    @staticmethod
    async def _missing(connection: Any, response_id: str, key_id: int) -> bool:
        found = await connection.scalar(
            select(responses.c.id).where(
                responses.c.id == response_id, responses.c.key_id == key_id
            )
        )
        return found is None
