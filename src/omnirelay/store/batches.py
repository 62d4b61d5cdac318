"""The batches table and its lines: what a batch asked, how far it got, who runs what.

A batch's lines are rows of ``batch_lines``, each ``pending``, ``claimed`` by one process
under a lease, or ``done`` with the line of the output or error file it answered. Claiming
takes a slice of a batch's pending lines, or of lines whose lease ran out (their process
died), in one statement; on PostgreSQL the claim skips rows another process has locked
(``FOR UPDATE SKIP LOCKED``), on SQLite the single writer serializes claims. A line is
finished only by the process that holds its lease (``finish_lines``), so a line is
answered once, however many processes share the batch. A batch's own lease is taken by the
one process that writes its output and error files (``claim_batch``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from omnirelay.store import bulk
from omnirelay.store.db import quick_read
from omnirelay.store.files import FileRow, insert_file
from omnirelay.store.logs import LogRepository
from omnirelay.store.tables import batch_lines, batches, request_logs

PENDING, CLAIMED, DONE = "pending", "claimed", "done"
OUTPUT, ERROR = "output", "error"


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: int
    public_id: str
    key_id: int
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    metadata: dict[str, Any] | None
    errors: list[dict[str, Any]] | None
    output_file_id: str | None
    error_file_id: str | None
    total: int
    completed: int
    failed: int
    usage: dict[str, Any] | None
    lease_owner: str | None
    lease_until_ms: int | None
    created_ms: int
    in_progress_ms: int | None
    expires_ms: int
    finalizing_ms: int | None
    completed_ms: int | None
    failed_ms: int | None
    expired_ms: int | None
    cancelling_ms: int | None
    cancelled_ms: int | None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> BatchRow:
        return cls(**{name: row[name] for name in _FIELDS})


_FIELDS = tuple(field.name for field in fields(BatchRow))


RequestIdOf = Callable[[int, int], str]
"""A batch's line's request id at a try: ``(line, tries) -> id``."""


@dataclass(frozen=True, slots=True)
class LineRow:
    batch_id: int
    line: int
    custom_id: str
    model: str
    body: str
    tries: int


@dataclass(frozen=True, slots=True)
class LineEnd:
    """A line's answer: ``outcome`` output or error, and its file line (JSON)."""

    batch_id: int
    line: int
    outcome: str
    result: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class LineCounts:
    pending: int
    claimed: int
    completed: int
    failed: int

    @property
    def open(self) -> int:
        return self.pending + self.claimed


class _LeaseLost(Exception):
    """Another process took the batch over: the transaction rolls back."""


class BatchRepository:
    def __init__(self, engine: AsyncEngine, logs: LogRepository) -> None:
        self._engine = engine
        # The lines' claims and answers are written where the log writer writes (SQLite:
        # its one thread), so they never wait on SQLite's lock behind the log's batches.
        self._logs = logs

    async def create(
        self, values: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]
    ) -> BatchRow:
        """A new batch and all its lines (pending), in one transaction."""
        async with self._engine.begin() as connection:
            row = await connection.execute(insert(batches).values(**values).returning(batches))
            created = BatchRow.of(row.mappings().one())
            if lines:
                rows = [{**line, "batch_id": created.id, "state": PENDING} for line in lines]
                await connection.run_sync(bulk.insert_many, batch_lines, rows)
        return created

    async def get(self, public_id: str) -> BatchRow | None:
        return await self._one(select(batches).where(batches.c.public_id == public_id))

    async def list_for_key(
        self, key_id: int, *, limit: int, after: BatchRow | None = None
    ) -> tuple[list[BatchRow], bool]:
        """A key's batches, newest first, after a cursor batch; and whether more follow."""
        query = select(batches).where(batches.c.key_id == key_id)
        if after is not None:
            query = query.where(batches.c.id < after.id)
        rows = await self._many(query.order_by(batches.c.id.desc()).limit(limit + 1))
        return rows[:limit], len(rows) > limit

    async def search(
        self,
        *,
        key_id: int | None = None,
        status: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[BatchRow]:
        """The operator's view: newest first, filtered."""
        query = select(batches)
        if key_id is not None:
            query = query.where(batches.c.key_id == key_id)
        if status is not None:
            query = query.where(batches.c.status == status)
        if before_id is not None:
            query = query.where(batches.c.id < before_id)
        return await self._many(query.order_by(batches.c.id.desc()).limit(limit))

    async def in_statuses(self, statuses: Sequence[str]) -> list[BatchRow]:
        return await self._many(
            select(batches).where(batches.c.status.in_(list(statuses))).order_by(batches.c.id)
        )

    async def set_status(
        self, batch: BatchRow, status: str, from_statuses: Sequence[str], now_ms: int
    ) -> BatchRow | None:
        """Move a batch to ``status`` (stamping its time) if it is in one of
        ``from_statuses``; None when it is not any more."""
        statement = (
            update(batches)
            .where(batches.c.id == batch.id, batches.c.status.in_(list(from_statuses)))
            .values({"status": status, f"{status}_ms": now_ms})
            .returning(batches)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).mappings().one_or_none()
        return None if row is None else BatchRow.of(row)

    async def claim_batch(
        self, batch: BatchRow, owner: str, now_ms: int, lease_ms: int, values: Mapping[str, Any]
    ) -> BatchRow | None:
        """Lease a batch to write its files (with ``values``), if no live lease holds it and
        its status is still the one read."""
        statement = (
            update(batches)
            .where(
                batches.c.id == batch.id,
                batches.c.status == batch.status,
                or_(batches.c.lease_until_ms.is_(None), batches.c.lease_until_ms < now_ms),
            )
            .values(**values, lease_owner=owner, lease_until_ms=now_ms + lease_ms)
            .returning(batches)
        )
        async with self._engine.begin() as connection:
            row = (await connection.execute(statement)).mappings().one_or_none()
        return None if row is None else BatchRow.of(row)

    async def end_batch(
        self, batch: BatchRow, owner: str, values: Mapping[str, Any], new_files: Sequence[FileRow]
    ) -> bool:
        """End a leased batch with its files, in one transaction; False (nothing written)
        when this process lost the lease meanwhile."""
        try:
            async with self._engine.begin() as connection:
                moved = await connection.execute(
                    update(batches)
                    .where(batches.c.id == batch.id, batches.c.lease_owner == owner)
                    .values(**values, lease_owner=None, lease_until_ms=None)
                )
                if moved.rowcount != 1:
                    raise _LeaseLost
                for file in new_files:
                    await insert_file(connection, file)
        except _LeaseLost:
            return False
        return True

    async def claim_lines(
        self,
        batch_id: int,
        owner: str,
        now_ms: int,
        lease_ms: int,
        limit: int,
        request_id: RequestIdOf | None = None,
    ) -> list[LineRow]:
        """Lease up to ``limit`` of a batch's lines that are pending or whose lease ran
        out, first lines first. With ``request_id`` (a line's id at a try), a line whose
        current id already has a failed call logged moves on to its next try: a process
        that died after that row was written but before the line's try was noted would
        otherwise reuse the id, and the answer's charge would collide with the free row."""
        due = (
            select(batch_lines.c.line)
            .where(
                batch_lines.c.batch_id == batch_id,
                or_(
                    batch_lines.c.state == PENDING,
                    and_(batch_lines.c.state == CLAIMED, batch_lines.c.lease_until_ms < now_ms),
                ),
            )
            .order_by(batch_lines.c.line)
            .limit(limit)
            .with_for_update(skip_locked=True)
            # Materialized once: as an IN subquery, PostgreSQL may run the LIMIT again per
            # row and claim more lines than asked.
            .cte("due")
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        claim = (
            update(batch_lines)
            .where(
                batch_lines.c.batch_id == batch_id,
                batch_lines.c.line == due.c.line,
                or_(
                    batch_lines.c.state == PENDING,
                    and_(batch_lines.c.state == CLAIMED, batch_lines.c.lease_until_ms < now_ms),
                ),
            )
            .values(state=CLAIMED, lease_owner=owner, lease_until_ms=now_ms + lease_ms)
            .returning(
                batch_lines.c.batch_id,
                batch_lines.c.line,
                batch_lines.c.custom_id,
                batch_lines.c.model,
                batch_lines.c.body,
                batch_lines.c.tries,
            )
        )
        lines = await self._logs.transaction(_claim, claim, request_id)
        return sorted(lines, key=lambda line: line.line)

    async def renew_leases(self, owner: str, now_ms: int, lease_ms: int) -> int:
        """Keep every line this process runs for another lease."""
        statement = (
            update(batch_lines)
            .where(batch_lines.c.lease_owner == owner, batch_lines.c.state == CLAIMED)
            .values(lease_until_ms=now_ms + lease_ms)
        )
        return await self._logs.transaction(_count, statement)

    async def release_lines(
        self, owner: str, batch_id: int | None = None, lines: Sequence[int] | None = None
    ) -> int:
        """Give back lines this process claimed and did not finish (all of them, or these
        of one batch): pending again."""
        statement = (
            update(batch_lines)
            .where(batch_lines.c.lease_owner == owner, batch_lines.c.state == CLAIMED)
            .values(state=PENDING, lease_owner=None, lease_until_ms=None)
        )
        if batch_id is not None:
            statement = statement.where(batch_lines.c.batch_id == batch_id)
        if lines is not None:
            statement = statement.where(batch_lines.c.line.in_(list(lines)))
        return await self._logs.transaction(_count, statement)

    async def note_try(self, line: LineRow, owner: str, tries: int) -> None:
        """A line waited on a rate limit: its next call has a request id of its own."""
        statement = (
            update(batch_lines)
            .where(
                batch_lines.c.batch_id == line.batch_id,
                batch_lines.c.line == line.line,
                batch_lines.c.lease_owner == owner,
            )
            .values(tries=tries)
        )
        async with self._engine.begin() as connection:
            await connection.execute(statement)

    async def finish_lines(self, owner: str, ends: Sequence[LineEnd]) -> None:
        """Record answered lines that this process still holds (the others are not: their
        lease ran out and another process runs them)."""
        if not ends:
            return
        statement = (
            update(batch_lines)
            .where(
                batch_lines.c.batch_id == bindparam("b_batch"),
                batch_lines.c.line == bindparam("b_line"),
                batch_lines.c.state == CLAIMED,
                batch_lines.c.lease_owner == owner,
            )
            .values(
                state=DONE,
                lease_owner=None,
                lease_until_ms=None,
                outcome=bindparam("b_outcome"),
                result=bindparam("b_result"),
                input_tokens=bindparam("b_in"),
                output_tokens=bindparam("b_out"),
                cached_tokens=bindparam("b_cached"),
            )
        )
        params = [
            {
                "b_batch": end.batch_id,
                "b_line": end.line,
                "b_outcome": end.outcome,
                "b_result": end.result,
                "b_in": end.input_tokens,
                "b_out": end.output_tokens,
                "b_cached": end.cached_tokens,
            }
            for end in ends
        ]
        await self._logs.transaction(_run_many, statement, params)

    async def close_open_lines(self, batch_id: int, result_of: Any) -> int:
        """Answer every line of a batch not yet done with ``result_of(line, custom_id)`` as
        an error (the batch expired); returns how many."""
        query = select(batch_lines.c.line, batch_lines.c.custom_id).where(
            batch_lines.c.batch_id == batch_id, batch_lines.c.state != DONE
        )
        statement = (
            update(batch_lines)
            .where(
                batch_lines.c.batch_id == batch_id,
                batch_lines.c.line == bindparam("b_line"),
                batch_lines.c.state != DONE,
            )
            .values(
                state=DONE,
                lease_owner=None,
                lease_until_ms=None,
                outcome=ERROR,
                result=bindparam("b_result"),
            )
        )
        async with self._engine.begin() as connection:
            rows = (await connection.execute(query)).all()
            if not rows:
                return 0
            params = [{"b_line": r.line, "b_result": result_of(r.line, r.custom_id)} for r in rows]
            await connection.execute(statement, params)
        return len(rows)

    async def counts(self, batch_id: int, now_ms: int) -> LineCounts:
        """A batch's lines by state; a claim whose lease ran out counts as pending."""
        live = and_(batch_lines.c.state == CLAIMED, batch_lines.c.lease_until_ms >= now_ms)
        query = (
            select(batch_lines.c.state, batch_lines.c.outcome, live.label("live"), func.count())
            .where(batch_lines.c.batch_id == batch_id)
            .group_by(batch_lines.c.state, batch_lines.c.outcome, "live")
        )
        found = {PENDING: 0, CLAIMED: 0, OUTPUT: 0, ERROR: 0}
        async with self._engine.connect() as connection:
            for state, outcome, is_live, count in (await connection.execute(query)).all():
                if state == DONE:
                    found[outcome] += int(count)
                else:
                    found[CLAIMED if is_live else PENDING] += int(count)
        return LineCounts(found[PENDING], found[CLAIMED], found[OUTPUT], found[ERROR])

    async def usage(self, batch_id: int) -> tuple[int, int, int]:
        """Input, output and cached tokens of a batch's answered lines."""
        query = select(
            func.coalesce(func.sum(batch_lines.c.input_tokens), 0),
            func.coalesce(func.sum(batch_lines.c.output_tokens), 0),
            func.coalesce(func.sum(batch_lines.c.cached_tokens), 0),
        ).where(batch_lines.c.batch_id == batch_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).one()
        return int(row[0]), int(row[1]), int(row[2])

    async def models(self, batch_id: int) -> list[tuple[str, int]]:
        """The models a batch's lines ask for, with how many lines each, most first."""
        lines = func.count().label("lines")
        query = (
            select(batch_lines.c.model, lines)
            .where(batch_lines.c.batch_id == batch_id)
            .group_by(batch_lines.c.model)
            .order_by(lines.desc(), batch_lines.c.model)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [(str(model), int(count)) for model, count in rows]

    async def charged_nano(self, public_id: str) -> int:
        """What the batch's lines were charged: their log rows' costs (one row per call)."""
        query = select(func.coalesce(func.sum(request_logs.c.cost_nano), 0)).where(
            request_logs.c.batch_id == public_id
        )
        async with self._engine.connect() as connection:
            return int(await connection.scalar(query) or 0)

    async def done_lines(
        self, batch_id: int, after_line: int, limit: int
    ) -> list[tuple[int, str, str]]:
        """``(line, outcome, result)`` of answered lines after ``after_line``, in order."""
        query = (
            select(batch_lines.c.line, batch_lines.c.outcome, batch_lines.c.result)
            .where(
                batch_lines.c.batch_id == batch_id,
                batch_lines.c.state == DONE,
                batch_lines.c.line > after_line,
            )
            .order_by(batch_lines.c.line)
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [(int(r.line), str(r.outcome), str(r.result)) for r in rows]

    async def queue(self, statuses: Sequence[str]) -> list[tuple[str, int, int]]:
        """(status, batches, lines not yet answered) for batches in these statuses; on
        SQLite read without waiting for the writer."""
        query = (
            select(
                batches.c.status,
                func.count(),
                func.sum(batches.c.total - batches.c.completed - batches.c.failed),
            )
            .where(batches.c.status.in_(list(statuses)))
            .group_by(batches.c.status)
        )
        rows = await quick_read(self._engine, query)
        return [(str(status), int(count), int(open_ or 0)) for status, count, open_ in rows]

    async def _one(self, query: Any) -> BatchRow | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).mappings().one_or_none()
        return None if row is None else BatchRow.of(row)

    async def _many(self, query: Any) -> list[BatchRow]:
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [BatchRow.of(row) for row in rows]


def _claim(connection: Connection, claim: Any, request_id: RequestIdOf | None) -> list[LineRow]:
    rows = connection.execute(claim).all()
    lines = [LineRow(r.batch_id, r.line, r.custom_id, r.model, r.body, r.tries) for r in rows]
    if request_id is None or not lines:
        return lines
    current = {request_id(line.line, line.tries): line for line in lines}
    failed = connection.execute(
        select(request_logs.c.request_id).where(
            request_logs.c.request_id.in_(list(current)), request_logs.c.status >= 400
        )
    ).scalars()
    for used in failed:
        line = current.pop(used)
        connection.execute(
            update(batch_lines)
            .where(batch_lines.c.batch_id == line.batch_id, batch_lines.c.line == line.line)
            .values(tries=line.tries + 1)
        )
        current[used] = replace(line, tries=line.tries + 1)
    return list(current.values())


def _count(connection: Connection, statement: Any) -> int:
    return int(connection.execute(statement).rowcount or 0)


def _run_many(connection: Connection, statement: Any, params: list[dict[str, Any]]) -> None:
    connection.execute(statement, params)


def now_ms() -> int:
    return int(time.time() * 1000)
