"""Usage reports, read only from the daily aggregate ``usage_daily``.

The log writer adds each call to its (day, key, model, channel) row in the same transaction
as the call's log row. Reports sum those rows, so a dashboard never scans the raw request
log, however large it grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store.tables import usage_daily

EPOCH = date(1970, 1, 1)
GROUPS = {
    "day": usage_daily.c.day,
    "key": usage_daily.c.key_id,
    "model": usage_daily.c.model,
    "channel": usage_daily.c.channel_id,
}
"""What a report can be grouped by, in the order its rows are sorted."""


def day_number(day: date) -> int:
    """Days since 1970-01-01: the ``day`` column."""
    return (day - EPOCH).days


def day_date(number: int) -> date:
    return date.fromordinal(EPOCH.toordinal() + number)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Sums over the rows of one group; a field not grouped by is None."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_nano: int
    day: date | None = None
    key_id: int | None = None
    model: str | None = None
    channel_id: int | None = None


class UsageRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def report(
        self,
        start: date,
        end: date,
        group_by: Sequence[str] = (),
        *,
        key_id: int | None = None,
        limit: int | None = None,
    ) -> list[UsageRow]:
        """Sums over the days in ``[start, end)``, one row per group, sorted by group.

        With no grouping there is one row, of zeros when nothing was used.
        """
        unknown = set(group_by) - set(GROUPS)
        if unknown:
            raise ValueError(f"cannot group usage by {', '.join(sorted(unknown))}")
        keys = [name for name in GROUPS if name in group_by]
        columns = [GROUPS[name] for name in keys]
        query = (
            select(
                *columns,
                func.sum(usage_daily.c.requests).label("requests"),
                func.sum(usage_daily.c.prompt_tokens).label("prompt_tokens"),
                func.sum(usage_daily.c.completion_tokens).label("completion_tokens"),
                func.sum(usage_daily.c.cost_nano).label("cost_nano"),
            )
            .where(usage_daily.c.day >= day_number(start), usage_daily.c.day < day_number(end))
            .group_by(*columns)
            .order_by(*columns)
        )
        if key_id is not None:
            query = query.where(usage_daily.c.key_id == key_id)
        if limit is not None:
            query = query.limit(limit)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [_row(keys, row) for row in rows]


def _row(keys: list[str], row: Any) -> UsageRow:
    day = row["day"] if "day" in keys else None
    return UsageRow(
        # PostgreSQL sums BIGINTs as NUMERIC, and a sum over no rows is NULL.
        requests=int(row["requests"] or 0),
        prompt_tokens=int(row["prompt_tokens"] or 0),
        completion_tokens=int(row["completion_tokens"] or 0),
        cost_nano=int(row["cost_nano"] or 0),
        day=None if day is None else day_date(int(day)),
        key_id=row["key_id"] if "key" in keys else None,
        model=row["model"] if "model" in keys else None,
        channel_id=row["channel_id"] if "channel" in keys else None,
    )
