"""The request log, and the key spend it carries.

A batch of log rows and the spend they add to each key commit in one transaction, so the
keys' ``used_nano`` always equals the sum of their logged costs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import changes
from omnirelay.store.keys import add_usage_statement
from omnirelay.store.tables import keys, request_logs

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class DailyCost:
    day_start_ms: int
    model: str
    cost_nano: int


class LogRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def write_batch(
        self, rows: Sequence[Mapping[str, Any]], spend: Mapping[int, int]
    ) -> dict[int, int]:
        """Insert log rows and add their spend to keys; returns each key's new ``used_nano``."""
        charged = {key_id: delta for key_id, delta in spend.items() if delta}
        async with self._engine.begin() as connection:
            if rows:
                await connection.execute(insert(request_logs), list(rows))
            if not charged:
                return {}
            await connection.execute(
                add_usage_statement(),
                [{"key_id": key_id, "delta": delta} for key_id, delta in charged.items()],
            )
            used = await connection.execute(
                select(keys.c.id, keys.c.used_nano).where(keys.c.id.in_(list(charged)))
            )
            totals = {row.id: int(row.used_nano) for row in used}
            await changes.record(connection, changes.KEY_USAGE, *sorted(totals))
        return totals

    async def recent(
        self, *, key_id: int | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        query = select(request_logs).order_by(request_logs.c.id.desc()).limit(limit)
        if key_id is not None:
            query = query.where(request_logs.c.key_id == key_id)
        if before_id is not None:
            query = query.where(request_logs.c.id < before_id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [{str(name): value for name, value in row.items()} for row in rows]

    async def daily_costs(self, key_id: int, start_ms: int, end_ms: int) -> list[DailyCost]:
        """Cost per UTC day and model for one key, over ``[start_ms, end_ms)``."""
        day = (request_logs.c.created_ms // DAY_MS).label("day")
        query = (
            select(day, request_logs.c.model, func.sum(request_logs.c.cost_nano).label("cost"))
            .where(
                request_logs.c.key_id == key_id,
                request_logs.c.created_ms >= start_ms,
                request_logs.c.created_ms < end_ms,
                request_logs.c.cost_nano > 0,
            )
            .group_by(day, request_logs.c.model)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        totals: dict[tuple[int, str], int] = defaultdict(int)
        for row in rows:
            totals[(int(row.day), row.model or "")] += int(row.cost)
        return [
            DailyCost(day * DAY_MS, model, cost) for (day, model), cost in sorted(totals.items())
        ]
