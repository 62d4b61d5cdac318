"""Deleting old request-log rows, a bounded batch per transaction.

Only ``request_logs`` is touched: the ledger and the daily usage aggregate are kept for
good, so spend, balances and usage reports stay whole after the raw log is gone.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store.tables import request_logs


async def prune_request_logs(engine: AsyncEngine, before_ms: int, batch: int) -> int:
    """Delete at most ``batch`` log rows created before ``before_ms``; returns how many.

    Small transactions keep each write lock short, so that on SQLite the log writer and
    the admin API wait for no more than one batch.
    """
    oldest = select(request_logs.c.id).where(request_logs.c.created_ms < before_ms).limit(batch)
    async with engine.begin() as connection:
        result = await connection.execute(delete(request_logs).where(request_logs.c.id.in_(oldest)))
    return int(result.rowcount)
