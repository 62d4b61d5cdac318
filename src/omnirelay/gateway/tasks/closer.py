"""How a task ends: succeeded (charged), or failed, cancelled or expired (released).

A task whose work the gateway did in-process (``tasks.local``) was charged by that work's
own call through the pipeline: it ends with ``close``, which charges nothing.

Each end is one transaction, built here and committed through the one owner of money
(``Settlement.settle_task``): the terminal transition at the row's version, the charge's
log row and ledger entry (keyed by the task, so one per task), the references to its
stored results, and the webhook event. A process that lost the task meanwhile (its lease
ran out, or a cancel came first) writes nothing and moves no money.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.engine import Connection

from omnirelay.gateway.charges import Settlement
from omnirelay.gateway.tasks import billing, transitions
from omnirelay.gateway.tasks.model import Family
from omnirelay.gateway.tasks.webhooks import event_row
from omnirelay.providers.tasks.base import Billable
from omnirelay.store import tasks as states
from omnirelay.store.tasks import Ending, TaskRepository, TaskRow

Extra = Mapping[str, Any]


class Closer:
    def __init__(
        self,
        tasks: TaskRepository,
        settlement: Settlement,
        families: Mapping[str, Family],
        event_extra: Any = None,
    ) -> None:
        self._tasks = tasks
        self._settlement = settlement
        self._families = families
        self._event_extra = event_extra  # (task) -> extra fields of its webhook event

    async def succeed(
        self,
        task: TaskRow,
        billable: Billable,
        result: Mapping[str, Any],
        upstream_status: str,
    ) -> bool:
        """The task made its results (stored already): charge it, at most its hold."""
        now_ms = _now_ms()
        cost = billing.charge_of(task, billable)
        values = transitions.ended(
            states.SUCCEEDED,
            now_ms,
            result=result,
            charge_nano=cost,
            upstream_status=upstream_status,
        )
        digests = [asset["digest"] for asset in (result.get("assets") or {}).values()]
        return await self._end(task, values, now_ms, cost=cost, blobs=digests)

    async def release(
        self,
        task: TaskRow,
        state: str,
        error: Mapping[str, str],
        upstream_status: str | None = None,
    ) -> bool:
        """The task failed, was cancelled, or passed its deadline: its hold goes back."""
        now_ms = _now_ms()
        values = transitions.ended(state, now_ms, error=error, upstream_status=upstream_status)
        return await self._end(task, values, now_ms, cost=None, blobs=[])

    async def close(
        self,
        task: TaskRow,
        state: str,
        error: Mapping[str, str] | None,
        also: Callable[[Connection], None] | None,
    ) -> bool:
        """End a task charged elsewhere, or not at all (work done in-process, which its own
        call settled), committing ``also`` with it."""
        now_ms = _now_ms()
        values = transitions.ended(state, now_ms, error=error)
        values["charge_nano"] = 0  # what the work's own call charged is in its log row
        return await self._end(task, values, now_ms, cost=None, blobs=[], also=also)

    async def _end(
        self,
        task: TaskRow,
        values: Mapping[str, Any],
        now_ms: int,
        *,
        cost: int | None,
        blobs: list[str],
        also: Callable[[Connection], None] | None = None,
    ) -> bool:
        family = self._families[task.family]
        ended = dataclasses.replace(task, **values)
        event = None
        if task.notify_url:
            extra = self._event_extra(ended) if self._event_extra else None
            event = event_row(ended, family, now_ms, extra)
        record = None if cost is None else billing.record(task, cost, family.endpoint, now_ms)

        async def end(row: dict[str, Any] | None, spend: dict[int, int]) -> dict[int, int] | None:
            ending = Ending(values, log_row=row, spend=spend, event=event, blobs=blobs, also=also)
            return await self._tasks.finish(task, ending, now_ms)

        return await self._settlement.settle_task(task.key_id, task.public_id, record, end)


def _now_ms() -> int:
    return int(time.time() * 1000)
