"""The request log, and the money it carries.

A batch of log rows commits in one transaction with everything that follows from it: the
ledger entries, the spend added to each key, the holds closed, opened or checkpointed, and
the daily usage aggregate. So ``keys.used_nano`` always equals the sum of the key's ledger.

On SQLite the whole transaction runs in one worker thread, on a synchronous connection of
its own. Through the async driver each statement was a round trip between the event loop
and the driver's thread, and under load every one of them waited behind the loop's other
work: the writer then committed a third of the rows the gateway answered, and its backlog
grew without bound. One thread hop per batch keeps it in step.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import bulk, changes
from omnirelay.store.db import dialect_insert
from omnirelay.store.errors import DuplicateEntry
from omnirelay.store.keys import add_usage_statement
from omnirelay.store.ledger import record_charges, record_holds, used_totals
from omnirelay.store.tables import request_logs, usage_daily

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class HoldChanges:
    opened: Sequence[Mapping[str, Any]] = ()
    checkpoints: Mapping[str, int] = field(default_factory=dict)
    renew: Sequence[str] = ()
    lease_until_ms: int = 0


def write_batch(
    connection: Connection,
    rows: Sequence[Mapping[str, Any]],
    spend: Mapping[int, int],
    holds: HoldChanges | None = None,
) -> dict[int, int]:
    """One batch, inside the caller's transaction; returns the charged keys' ``used_nano``."""
    charged = dict(spend)
    if holds is not None:
        record_holds(connection, holds.opened, holds.checkpoints, holds.renew, holds.lease_until_ms)
    if rows:
        bulk.insert_many(connection, request_logs, rows)
        for key_id, refund in record_charges(connection, rows).items():
            charged[key_id] = charged.get(key_id, 0) - refund
        add_daily_usage(connection, rows)
    charged = {key_id: delta for key_id, delta in charged.items() if delta}
    if not charged:
        return {}
    connection.execute(
        add_usage_statement(),
        [{"key_id": key_id, "delta": delta} for key_id, delta in charged.items()],
    )
    totals = used_totals(connection, charged.keys())
    changes.record_sync(connection, changes.KEY_USAGE, *sorted(totals))
    return totals


def add_daily_usage(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Fold rows into the per-day aggregate that usage reports read instead of the log."""
    totals: dict[tuple[int, int, str, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in rows:
        if row.get("key_id") is None:
            continue
        group = (
            row["created_ms"] // DAY_MS,
            row["key_id"],
            row.get("model") or "",
            row.get("channel_id") or 0,
        )
        total = totals[group]
        total[0] += 1
        total[1] += row.get("prompt_tokens", 0)
        total[2] += row.get("completion_tokens", 0)
        total[3] += row.get("cost_nano", 0)
    if not totals:
        return
    statement = dialect_insert(connection)(usage_daily)
    counted = ("requests", "prompt_tokens", "completion_tokens", "cost_nano")
    upsert = statement.on_conflict_do_update(
        index_elements=["day", "key_id", "model", "channel_id"],
        set_={name: usage_daily.c[name] + statement.excluded[name] for name in counted},
    )
    connection.execute(
        upsert,
        [
            {"day": day, "key_id": key_id, "model": model, "channel_id": channel_id,
             **dict(zip(counted, total, strict=True))}
            for (day, key_id, model, channel_id), total in totals.items()
        ],
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class DailyCost:
    day_start_ms: int
    model: str
    cost_nano: int


class LogRepository:
    def __init__(self, engine: AsyncEngine, writer: Engine | None = None) -> None:
        self._engine = engine
        self._writer = writer  # SQLite: the synchronous engine write_batch runs on
        # One thread, as SQLite takes one writer at a time: a pool of them would only add
        # threads, and a malloc arena each, when strict settlement flushes every call.
        self._thread = (
            ThreadPoolExecutor(1, thread_name_prefix="omnirelay-log-writer") if writer else None
        )

    async def write_batch(
        self,
        rows: Sequence[Mapping[str, Any]],
        spend: Mapping[int, int],
        holds: HoldChanges | None = None,
    ) -> dict[int, int]:
        """Commit log rows with their charges; returns each charged key's new ``used_nano``.

        DuplicateEntry when a row's request id is stored already: nothing was written.
        """
        try:
            if self._thread is not None:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self._thread, self._write_in_thread, rows, spend, holds
                )
            async with self._engine.begin() as connection:
                return await connection.run_sync(write_batch, rows, spend, holds)
        except IntegrityError as exc:
            if rows and await self._any_stored(row["request_id"] for row in rows):
                raise DuplicateEntry("a log row with this request id is stored already") from exc
            raise

    async def _any_stored(self, request_ids: Iterable[str]) -> bool:
        query = (
            select(request_logs.c.request_id)
            .where(request_logs.c.request_id.in_(list(request_ids)))
            .limit(1)
        )
        async with self._engine.connect() as connection:
            return (await connection.scalar(query)) is not None

    def _write_in_thread(
        self,
        rows: Sequence[Mapping[str, Any]],
        spend: Mapping[int, int],
        holds: HoldChanges | None,
    ) -> dict[int, int]:
        assert self._writer is not None
        with self._writer.begin() as connection:
            return write_batch(connection, rows, spend, holds)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._writer is not None:
            self._writer.dispose()

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
