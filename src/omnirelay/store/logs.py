"""The request log, and the money it carries.

A batch of log rows commits in one transaction with everything that follows from it: the
ledger entries, the spend added to each key, the holds closed, opened or checkpointed, and
the daily usage aggregate. So ``keys.used_nano`` always equals the sum of the key's ledger.
Rows the database refused are set aside in the same kind of transaction, as dead letters
(``store/deadletters.py``), with whatever of them is still committed.

On SQLite the whole transaction runs in one worker thread, on a synchronous connection of
its own. Through the async driver each statement was a round trip between the event loop
and the driver's thread, and under load every one of them waited behind the loop's other
work: the writer then committed a third of the rows the gateway answered, and its backlog
grew without bound. One thread hop per batch keeps it in step.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import func, select, union
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import bulk, changes, deadletters, paging
from omnirelay.store.db import dialect_insert
from omnirelay.store.keys import add_usage_statement
from omnirelay.store.ledger import CHARGE, record_charges, record_holds, used_totals
from omnirelay.store.paging import Cursor
from omnirelay.store.tables import ledger, request_logs, usage_daily

DAY_MS = 86_400_000

ESSENTIAL = ("request_id", "created_ms", "key_id", "endpoint", "model", "cost_nano", "status")
"""The columns that identify a call and carry its charge; the rest only describe it."""
MODEL_CHARS = deadletters.chars(request_logs.c.model)

P = ParamSpec("P")
T = TypeVar("T")


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
    dead: Sequence[Mapping[str, Any]] = (),
) -> dict[int, int]:
    """One batch, inside the caller's transaction; returns the charged keys' ``used_nano``.

    ``dead`` are letters of rows set aside (``deadletters.letter``), committed with it.
    """
    charged = dict(spend)
    if holds is not None:
        record_holds(connection, holds.opened, holds.checkpoints, holds.renew, holds.lease_until_ms)
    deadletters.record(connection, dead)
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


def spend_of(rows: Iterable[Mapping[str, Any]]) -> dict[int, int]:
    """What log rows charge each key."""
    spend: dict[int, int] = defaultdict(int)
    for row in rows:
        key_id, cost = row.get("key_id"), row.get("cost_nano", 0)
        if key_id is not None and cost:
            spend[key_id] += cost
    return dict(spend)


def essentials_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row's essential columns, its model name cleaned to what the column takes."""
    essentials = {name: row.get(name) for name in ESSENTIAL}
    model = essentials["model"]
    essentials["model"] = None if model is None else deadletters.clean(model, MODEL_CHARS) or None
    return essentials


def stored_request_ids(connection: Connection, request_ids: Collection[str]) -> set[str]:
    """Which of these calls are settled already: their log row is stored, or (the row
    pruned since) their charge is in the ledger."""
    wanted = list(request_ids)
    logged = select(request_logs.c.request_id).where(request_logs.c.request_id.in_(wanted))
    charged = select(ledger.c.request_id).where(
        ledger.c.request_id.in_(wanted), ledger.c.kind == CHARGE
    )
    return {str(request_id) for request_id in connection.scalars(union(logged, charged))}


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
class LogFilter:
    """What a page of the request log is narrowed to; None: any."""

    key_id: int | None = None
    model: str | None = None
    channel_id: int | None = None
    status: int | None = None
    failed: bool | None = None
    """True: only calls answered with an error status (400 and up); False: only the rest."""
    endpoint: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    """Calls made before this time (exclusive)."""
    before_id: int | None = None


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
        dead: Sequence[Mapping[str, Any]] = (),
    ) -> dict[int, int]:
        """Commit log rows with their charges; returns each charged key's new ``used_nano``.

        ``dead`` are letters of refused rows, set aside in the same transaction.
        """
        if dead:
            return await self._transaction(write_batch, rows, spend, holds, dead)
        return await self._transaction(write_batch, rows, spend, holds)

    async def write_once(
        self, row: Mapping[str, Any], spend: Mapping[int, int]
    ) -> dict[int, int] | None:
        """Commit one settled call in its own transaction, like :meth:`write_batch`; None,
        writing nothing, when a row with its request id is stored already."""
        request_id = str(row["request_id"])
        if await self.stored([request_id]):
            return None
        try:
            return await self.write_batch([row], spend)
        except Exception:
            # Another process settled the same id between the look and the write.
            if await self.stored([request_id]):
                return None
            raise

    async def stored(self, request_ids: Collection[str]) -> set[str]:
        """Which of these calls are settled already (``stored_request_ids``)."""
        return await self._transaction(stored_request_ids, request_ids)

    async def transaction(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``work`` in a transaction where the writer runs its batches (a settlement
        that commits other rows with its log row, such as a task's end)."""
        return await self._transaction(work, *args, **kwargs)

    async def _transaction(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``work`` in a transaction: on SQLite in the writer's thread, else on the loop."""
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            bound = functools.partial(self._in_thread, work, *args, **kwargs)
            return await loop.run_in_executor(self._thread, bound)
        async with self._engine.begin() as connection:
            return await connection.run_sync(work, *args, **kwargs)

    def _in_thread(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        assert self._writer is not None
        with self._writer.begin() as connection:
            return work(connection, *args, **kwargs)

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

    async def page(
        self, where: LogFilter, *, limit: int = 100, after: Cursor | None = None
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """Rows newest first by the time the call was made, and the cursor of the next page
        (None at the end). The order follows ``ix_request_logs_created``, or
        ``ix_request_logs_key_created`` for one key, so a page reads about ``limit`` rows
        however long the log is; other filters narrow the rows as the index is walked."""
        logs = request_logs.c
        query = select(request_logs).order_by(logs.created_ms.desc(), logs.id.desc())
        conditions = [
            column == value
            for column, value in (
                (logs.key_id, where.key_id),
                (logs.model, where.model),
                (logs.channel_id, where.channel_id),
                (logs.status, where.status),
                (logs.endpoint, where.endpoint),
            )
            if value is not None
        ]
        if where.failed is not None:
            conditions.append(logs.status >= 400 if where.failed else logs.status < 400)
        if where.since_ms is not None:
            conditions.append(logs.created_ms >= where.since_ms)
        if where.until_ms is not None:
            conditions.append(logs.created_ms < where.until_ms)
        if where.before_id is not None:
            conditions.append(logs.id < where.before_id)
        if after is not None:
            conditions.extend(paging.after(logs.created_ms, logs.id, after))
        query = query.where(*conditions).limit(limit + 1)
        async with self._engine.connect() as connection:
            found = (await connection.execute(query)).mappings().all()
        rows = [{str(name): value for name, value in row.items()} for row in found[:limit]]
        more = len(found) > limit
        cursor = Cursor.of(rows[-1]) if more else None
        return rows, cursor

    async def by_request_id(self, request_id: str) -> dict[str, Any] | None:
        query = select(request_logs).where(request_logs.c.request_id == request_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).mappings().first()
        return None if row is None else {str(name): value for name, value in row.items()}

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
