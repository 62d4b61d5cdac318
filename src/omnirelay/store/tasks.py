"""The tasks table: one row per asynchronous task of any family, and its transitions.

Every change but the first insert is a compare-and-swap on the row's ``version``, so a
process that lost its lease (or raced a cancel) changes nothing. Polling is claimed with a
lease: claiming a due task pushes its ``next_poll_ms`` to the lease's end, so a task whose
poller died becomes due again when the lease runs out, and the due query reads only the
head of the ``next_poll_ms`` index, however many tasks are active. On PostgreSQL the claim
skips rows another process has locked (``FOR UPDATE SKIP LOCKED``); on SQLite the single
writer serializes claims.

A task's end is one transaction (:func:`finish_task`): the terminal transition, the log
row that carries its charge into the ledger and the key's spend (``store.logs``), the
references to its stored results, and its outbound webhook event. Holds of open tasks are
read back per key (:meth:`TaskRepository.open_holds`), so they survive a restart; every
insert and every end records a ``key_tasks`` change, so other processes re-read them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import changes
from omnirelay.store.db import sqlite_file_read
from omnirelay.store.logs import LogRepository, write_batch
from omnirelay.store.tables import blob_refs, task_events, tasks

SUBMITTING, QUEUED, RUNNING = "submitting", "queued", "running"
SUCCEEDED, FAILED, CANCELLED, EXPIRED = "succeeded", "failed", "cancelled", "expired"
ACTIVE = (SUBMITTING, QUEUED, RUNNING)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED, EXPIRED)
STATES = (*ACTIVE, *TERMINAL)
QUICK_READ_S = 2.0


@dataclass(frozen=True, slots=True)
class QueueRow:
    """Active tasks of one family in one state, for the metrics."""

    family: str
    state: str
    count: int
    due: int  # whose next poll time has passed: waiting for a poller
    first_due_ms: int | None  # the earliest next poll among them


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: int
    public_id: str
    key_id: int
    family: str
    action: str
    model: str
    channel_id: int | None
    upstream_id: str | None
    state: str
    upstream_status: str | None
    progress: int
    request: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    price: dict[str, Any] | None
    hold_nano: int
    charge_nano: int | None
    request_id: str
    version: int
    next_poll_ms: int | None
    unchanged_polls: int
    polled_ms: int | None
    last_error: str | None
    lease_owner: str | None
    lease_until_ms: int | None
    deadline_ms: int
    idempotency_key: str | None
    request_hash: str | None
    notify_url: str | None
    cancel_requested: bool
    created_ms: int
    updated_ms: int
    submitted_ms: int | None
    finished_ms: int | None
    deleted_ms: int | None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> TaskRow:
        return cls(**{name: row[name] for name in _FIELDS})

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def owner(self) -> str:
        """The name its stored results are referenced by (``blob_refs.owner``)."""
        return f"task:{self.public_id}"

    def public(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(field.name for field in fields(TaskRow))


class UpstreamIdTaken(Exception):
    """Another task has this upstream task already (on the same channel)."""


class IdempotencyTaken(Exception):
    """A task with this key's Idempotency-Key exists already."""

    def __init__(self, existing: TaskRow) -> None:
        super().__init__(existing.public_id)
        self.existing = existing


@dataclass(frozen=True, slots=True)
class Ending:
    """How a task ends: its new column values, and what commits with them."""

    values: Mapping[str, Any]
    log_row: Mapping[str, Any] | None = None
    """The settlement's log row (and so its ledger entry); None when nothing was charged."""
    spend: Mapping[int, int] | None = None
    event: Mapping[str, Any] | None = None
    """A ``task_events`` row to deliver to the client's notify URL."""
    blobs: Sequence[str] = ()
    """Digests of the stored results the task now references."""
    also: Callable[[Connection], None] | None = None
    """More statements of the family's own that commit with the end (a background
    response's last state)."""


def finish_task(
    connection: Connection, task: TaskRow, ending: Ending, now_ms: int
) -> dict[int, int] | None:
    """End ``task`` if it is still at its version and active; None, writing nothing, when
    it is not (another process ended or moved it). Returns the charged keys' spend."""
    moved = connection.execute(
        update(tasks)
        .where(tasks.c.id == task.id, tasks.c.version == task.version, tasks.c.state.in_(ACTIVE))
        .values(
            **ending.values,
            version=task.version + 1,
            updated_ms=now_ms,
            next_poll_ms=None,
            lease_owner=None,
            lease_until_ms=None,
        )
    )
    if moved.rowcount != 1:
        return None
    totals: dict[int, int] = {}
    if ending.log_row is not None:
        totals = write_batch(connection, [ending.log_row], ending.spend or {})
    if ending.blobs:
        connection.execute(
            insert(blob_refs),
            [{"digest": d, "owner": task.owner, "created_ms": now_ms} for d in set(ending.blobs)],
        )
    if ending.event is not None:
        connection.execute(insert(task_events).values(**ending.event))
    if ending.also is not None:
        ending.also(connection)
    changes.record_sync(connection, changes.KEY_TASKS, task.key_id)
    return totals


class TaskRepository:
    def __init__(self, engine: AsyncEngine, logs: LogRepository) -> None:
        self._engine = engine
        self._logs = logs  # its transactions run where the log writer's do (SQLite: a thread)

    async def insert(self, values: Mapping[str, Any]) -> TaskRow:
        """A new task; IdempotencyTaken when its key used the Idempotency-Key before."""
        try:
            async with self._engine.begin() as connection:
                row = await connection.execute(insert(tasks).values(**values).returning(tasks))
                created = TaskRow.of(row.mappings().one())
                await changes.record(connection, changes.KEY_TASKS, created.key_id)
        except IntegrityError:
            idempotency = values.get("idempotency_key")
            existing = (
                await self.by_idempotency(int(values["key_id"]), idempotency)
                if idempotency
                else None
            )
            if existing is None:
                raise
            raise IdempotencyTaken(existing) from None
        return created

    async def get(self, public_id: str) -> TaskRow | None:
        return await self._one(select(tasks).where(tasks.c.public_id == public_id))

    async def of_key(self, key_id: int, family: str, public_ids: Collection[str]) -> list[TaskRow]:
        """Those of these tasks that are the key's own, of one family and not deleted."""
        query = select(tasks).where(
            tasks.c.key_id == key_id,
            tasks.c.family == family,
            tasks.c.public_id.in_(list(public_ids)),
            tasks.c.deleted_ms.is_(None),
        )
        return await self._many(query.order_by(tasks.c.id))

    async def by_idempotency(self, key_id: int, idempotency_key: str) -> TaskRow | None:
        query = select(tasks).where(
            tasks.c.key_id == key_id, tasks.c.idempotency_key == idempotency_key
        )
        return await self._one(query)

    async def list_for_key(
        self,
        key_id: int,
        family: str,
        *,
        limit: int,
        after: TaskRow | None = None,
        ascending: bool = False,
    ) -> tuple[list[TaskRow], bool]:
        """A key's tasks of one family, newest first (or oldest), after a cursor row; and
        whether more follow. Deleted tasks are left out."""
        query = select(tasks).where(
            tasks.c.key_id == key_id, tasks.c.family == family, tasks.c.deleted_ms.is_(None)
        )
        if after is not None:
            if ascending:
                query = query.where(
                    or_(
                        tasks.c.created_ms > after.created_ms,
                        and_(tasks.c.created_ms == after.created_ms, tasks.c.id > after.id),
                    )
                )
            else:
                query = query.where(
                    or_(
                        tasks.c.created_ms < after.created_ms,
                        and_(tasks.c.created_ms == after.created_ms, tasks.c.id < after.id),
                    )
                )
        order = (
            (tasks.c.created_ms, tasks.c.id)
            if ascending
            else (tasks.c.created_ms.desc(), tasks.c.id.desc())
        )
        rows = await self._many(query.order_by(*order).limit(limit + 1))
        return rows[:limit], len(rows) > limit

    async def search(
        self,
        *,
        key_id: int | None = None,
        state: str | None = None,
        family: str | None = None,
        model: str | None = None,
        channel_id: int | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[TaskRow]:
        """The operator's view: newest first, filtered."""
        query = select(tasks)
        filters = {
            tasks.c.key_id: key_id,
            tasks.c.state: state,
            tasks.c.family: family,
            tasks.c.model: model,
            tasks.c.channel_id: channel_id,
        }
        for column, value in filters.items():
            if value is not None:
                query = query.where(column == value)
        if before_id is not None:
            query = query.where(tasks.c.id < before_id)
        return await self._many(query.order_by(tasks.c.id.desc()).limit(limit))

    async def update(
        self, task: TaskRow, values: Mapping[str, Any], now_ms: int | None = None
    ) -> TaskRow | None:
        """Change an active task at its version; None when it moved on meanwhile."""
        now_ms = now_ms or _now_ms()
        statement = (
            update(tasks)
            .where(tasks.c.id == task.id, tasks.c.version == task.version)
            .values(**values, version=task.version + 1, updated_ms=now_ms)
            .returning(tasks)
        )
        try:
            async with self._engine.begin() as connection:
                row = (await connection.execute(statement)).mappings().one_or_none()
        except IntegrityError as exc:
            if "upstream_id" in values:
                raise UpstreamIdTaken(str(values["upstream_id"])) from exc
            raise
        return None if row is None else TaskRow.of(row)

    async def upstream_ids_taken(self, channel_id: int, upstream_ids: Collection[str]) -> set[str]:
        """Which of these upstream tasks on the channel belong to a task already."""
        query = select(tasks.c.upstream_id).where(
            tasks.c.channel_id == channel_id, tasks.c.upstream_id.in_(list(upstream_ids))
        )
        async with self._engine.connect() as connection:
            return {str(found) for found in await connection.scalars(query)}

    async def finish(
        self, task: TaskRow, ending: Ending, now_ms: int | None = None
    ) -> dict[int, int] | None:
        """:func:`finish_task` in a transaction of its own."""
        return await self._logs.transaction(finish_task, task, ending, now_ms or _now_ms())

    async def claim_due(self, owner: str, now_ms: int, lease_ms: int, limit: int) -> list[TaskRow]:
        """Lease up to ``limit`` due tasks, the longest due first."""
        due = (
            select(tasks.c.id)
            .where(tasks.c.next_poll_ms <= now_ms)
            .order_by(tasks.c.next_poll_ms)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(tasks)
            .where(tasks.c.id.in_(due), tasks.c.next_poll_ms <= now_ms)
            .values(
                lease_owner=owner,
                lease_until_ms=now_ms + lease_ms,
                next_poll_ms=now_ms + lease_ms,
                version=tasks.c.version + 1,
            )
            .returning(tasks)
        )
        async with self._engine.begin() as connection:
            rows = (await connection.execute(claim)).mappings().all()
        return sorted((TaskRow.of(row) for row in rows), key=lambda task: task.id)

    async def claim_one(
        self, public_id: str, owner: str, now_ms: int, lease_ms: int, polled_before_ms: int
    ) -> TaskRow | None:
        """Lease one active task out of turn (a client asked for it), if no one holds it
        and it was not polled since ``polled_before_ms``."""
        claim = (
            update(tasks)
            .where(
                tasks.c.public_id == public_id,
                tasks.c.state.in_(ACTIVE),
                tasks.c.next_poll_ms.is_not(None),
                or_(tasks.c.lease_until_ms.is_(None), tasks.c.lease_until_ms < now_ms),
                or_(tasks.c.polled_ms.is_(None), tasks.c.polled_ms <= polled_before_ms),
            )
            .values(
                lease_owner=owner,
                lease_until_ms=now_ms + lease_ms,
                next_poll_ms=now_ms + lease_ms,
                version=tasks.c.version + 1,
            )
            .returning(tasks)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(claim)).mappings().one_or_none()
        return None if row is None else TaskRow.of(row)

    async def extend_lease(self, task: TaskRow, now_ms: int, lease_ms: int) -> TaskRow | None:
        """Keep a claimed task for longer (a long download)."""
        until = now_ms + lease_ms
        return await self.update(
            task, {"lease_until_ms": until, "next_poll_ms": until}, now_ms=now_ms
        )

    async def release_leases(self, owner: str, now_ms: int | None = None) -> int:
        """Give back every lease this process holds: its tasks are due again at once."""
        now_ms = now_ms or _now_ms()
        statement = (
            update(tasks)
            .where(tasks.c.lease_owner == owner, tasks.c.state.in_(ACTIVE))
            .values(
                lease_owner=None,
                lease_until_ms=None,
                next_poll_ms=now_ms,
                version=tasks.c.version + 1,
            )
        )
        async with self._engine.begin() as connection:
            return int((await connection.execute(statement)).rowcount or 0)

    async def request_cancel(self, public_id: str, now_ms: int | None = None) -> TaskRow | None:
        """Mark an active task for cancelling and make it due; the poller cancels it."""
        now_ms = now_ms or _now_ms()
        statement = (
            update(tasks)
            .where(tasks.c.public_id == public_id, tasks.c.state.in_(ACTIVE))
            .values(
                cancel_requested=True,
                next_poll_ms=now_ms,
                updated_ms=now_ms,
            )
            .returning(tasks)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).mappings().one_or_none()
        return None if row is None else TaskRow.of(row)

    async def open_holds(
        self, key_ids: Collection[int] | None = None
    ) -> list[tuple[int, str, int]]:
        """``(key_id, public_id, hold_nano)`` of every open task that holds money."""
        query = select(tasks.c.key_id, tasks.c.public_id, tasks.c.hold_nano).where(
            tasks.c.state.in_(ACTIVE), tasks.c.hold_nano > 0
        )
        if key_ids is not None:
            query = query.where(tasks.c.key_id.in_(list(key_ids)))
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [(int(row.key_id), str(row.public_id), int(row.hold_nano)) for row in rows]

    async def stale_results(self, finished_before_ms: int, limit: int = 500) -> list[TaskRow]:
        """Ended tasks whose results were stored before ``finished_before_ms`` and are
        still kept (their references are written when they end)."""
        owners = (
            select(blob_refs.c.owner)
            .where(blob_refs.c.created_ms < finished_before_ms)
            .distinct()
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            names = [str(owner) for owner in await connection.scalars(owners)]
        public_ids = [name.removeprefix("task:") for name in names if name.startswith("task:")]
        if not public_ids:
            return []
        return await self._many(select(tasks).where(tasks.c.public_id.in_(public_ids)))

    async def drop_results(self, task: TaskRow, now_ms: int | None = None) -> list[str]:
        """Forget a task's stored results; returns the digests no one references any more
        (their files may go)."""
        now_ms = now_ms or _now_ms()
        async with self._engine.begin() as connection:
            digests = list(
                await connection.scalars(
                    select(blob_refs.c.digest).where(blob_refs.c.owner == task.owner)
                )
            )
            await connection.execute(delete(blob_refs).where(blob_refs.c.owner == task.owner))
            result = dict(task.result or {})
            if result.get("assets"):
                result["assets"] = {}
                result["removed_ms"] = now_ms
                await connection.execute(
                    update(tasks).where(tasks.c.id == task.id).values(result=result)
                )
            still = set(
                await connection.scalars(
                    select(blob_refs.c.digest).where(blob_refs.c.digest.in_(digests))
                )
            )
        return [digest for digest in digests if digest not in still]

    async def referenced_blobs(self, digests: Collection[str]) -> set[str]:
        """Which of these blobs some owner still references."""
        query = select(blob_refs.c.digest).where(blob_refs.c.digest.in_(list(digests)))
        async with self._engine.connect() as connection:
            return {str(digest) for digest in await connection.scalars(query.distinct())}

    async def queue(self, now_ms: int | None = None) -> list[QueueRow]:
        """Active tasks by family and state; on SQLite read without waiting for the writer."""
        now = now_ms or _now_ms()
        due = func.sum(case((tasks.c.next_poll_ms <= now, 1), else_=0))
        query = (
            select(tasks.c.family, tasks.c.state, func.count(), due, func.min(tasks.c.next_poll_ms))
            .where(tasks.c.state.in_(ACTIVE))
            .group_by(tasks.c.family, tasks.c.state)
        )
        url = self._engine.url.render_as_string(hide_password=False)
        sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        rows: Sequence[Any] | None = await asyncio.to_thread(
            sqlite_file_read, url, sql, QUICK_READ_S
        )
        if rows is None:
            async with self._engine.connect() as connection:
                rows = (await connection.execute(query)).all()
        return [
            QueueRow(str(family), str(state), int(count), int(due or 0), first)
            for family, state, count, due, first in rows
        ]

    async def _one(self, query: Any) -> TaskRow | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).mappings().one_or_none()
        return None if row is None else TaskRow.of(row)

    async def _many(self, query: Any) -> list[TaskRow]:
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [TaskRow.of(row) for row in rows]


def _now_ms() -> int:
    return int(time.time() * 1000)
