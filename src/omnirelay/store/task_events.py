"""The webhook outbox: events of tasks that ended, waiting to reach the client's URL.

An event is written in the transaction that ends its task (``store.tasks.finish_task``),
so a task never ends without its event, nor gets one twice (one per task and kind).
Deliveries are claimed like polls: claiming pushes ``next_attempt_ms`` past the attempt,
so an event whose deliverer died is tried again, and two processes never send one at once.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store.tables import task_events

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class TaskEventRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim_due(self, now_ms: int, lease_ms: int, limit: int) -> list[dict[str, Any]]:
        due = (
            select(task_events.c.id)
            .where(task_events.c.next_attempt_ms <= now_ms)
            .order_by(task_events.c.next_attempt_ms)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(task_events)
            .where(task_events.c.id.in_(due), task_events.c.next_attempt_ms <= now_ms)
            .values(next_attempt_ms=now_ms + lease_ms, attempts=task_events.c.attempts + 1)
            .returning(task_events)
        )
        async with self._engine.begin() as connection:
            rows = (await connection.execute(claim)).mappings().all()
        return [dict(row) for row in rows]

    async def delivered(self, event_id: int, now_ms: int | None = None) -> None:
        await self._set(
            event_id,
            state=DELIVERED,
            next_attempt_ms=None,
            delivered_ms=now_ms or int(time.time() * 1000),
            last_error=None,
        )

    async def retry(self, event_id: int, error: str, next_attempt_ms: int | None) -> None:
        """A failed attempt: try again at ``next_attempt_ms``, or give up (None)."""
        state = PENDING if next_attempt_ms is not None else FAILED
        await self._set(event_id, state=state, next_attempt_ms=next_attempt_ms, last_error=error)

    async def for_task(self, task_id: int) -> list[dict[str, Any]]:
        query = select(task_events).where(task_events.c.task_id == task_id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query.order_by(task_events.c.id))).mappings().all()
        return [dict(row) for row in rows]

    async def _set(self, event_id: int, **values: Any) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(task_events).where(task_events.c.id == event_id).values(**values)
            )
