"""The change feed: how every gateway process learns of admin changes within a second.

Each admin write appends a row in the same transaction. Processes poll for rows newer
than the last they saw and refresh just those entities from the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from omnirelay.store.tables import change_feed

KEY = "key"
KEY_USAGE = "key_usage"
KEY_TASKS = "key_tasks"  # the holds of a key's open tasks changed
CHANNEL = "channel"
PRICE = "price"
GROUP = "group"  # a group's price multiplier
FEED_RETENTION_S = 3600


@dataclass(frozen=True, slots=True)
class Change:
    id: int
    entity: str
    entity_id: str


async def record(connection: AsyncConnection, entity: str, *entity_ids: object) -> None:
    await connection.run_sync(record_sync, entity, *entity_ids)


def record_sync(connection: Connection, entity: str, *entity_ids: object) -> None:
    """:func:`record` on a synchronous connection (the SQLite log writer's thread)."""
    if not entity_ids:
        return
    now = int(time.time())
    connection.execute(
        insert(change_feed),
        [{"entity": entity, "entity_id": str(eid), "created_at": now} for eid in entity_ids],
    )


class ChangeFeed:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def latest_id(self) -> int:
        async with self._engine.connect() as connection:
            value = await connection.scalar(select(func.max(change_feed.c.id)))
        return int(value or 0)

    async def since(self, after_id: int, limit: int = 1000) -> list[Change]:
        query = (
            select(change_feed.c.id, change_feed.c.entity, change_feed.c.entity_id)
            .where(change_feed.c.id > after_id)
            .order_by(change_feed.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [Change(row.id, row.entity, row.entity_id) for row in rows]

    async def prune(self) -> None:
        cutoff = int(time.time()) - FEED_RETENTION_S
        async with self._engine.begin() as connection:
            await connection.execute(delete(change_feed).where(change_feed.c.created_at < cutoff))
