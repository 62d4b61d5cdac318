"""Hold before a call, settle after it: a key can never spend what it does not have.

Admission holds an upper bound of the call's cost (the prompt's byte length as its token
count, plus the request's output cap, at the model's price) and checks the key's rate
limits, atomically in the counters. Settlement replaces the hold with the exact cost from
the usage; a failed call releases it in full. Holds are also recorded through the log
writer, so that a reconciler can settle the holds of a process that died.

A call that goes on as a task (``defer``) hands its hold to the task: the tasks table keeps
it while the task is open, and admission counts it (``TaskHolds``) until the task ends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from omnirelay.gateway.keys import KeyState
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.task_holds import TaskHolds
from omnirelay.store.counters import Counters, Limits, Refusal, Seeds, Ticket
from omnirelay.store.ledger import LedgerRepository
from omnirelay.wire.errors import InsufficientQuota, RateLimited

log = logging.getLogger("omnirelay.metering")

DAY_S = 86_400


def period_of(kind: str | None, now: float) -> tuple[str | None, int]:
    """The budget period ``now`` falls in, as a name and its start in unix milliseconds."""
    if kind is None:
        return None, 0
    # Periods start at UTC midnights, so one computation serves a whole day.
    return _period_of_day(kind, int(now // DAY_S))


@functools.lru_cache(maxsize=64)
def _period_of_day(kind: str, day_number: int) -> tuple[str, int]:
    moment = datetime.fromtimestamp(day_number * DAY_S, UTC)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if kind == "day":
        start, name = day, f"day:{day.date().isoformat()}"
    elif kind == "week":
        start = day - timedelta(days=day.weekday())
        name = f"week:{start.date().isoformat()}"
    else:
        start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
        name = f"month:{start.year}-{start.month:02d}"
    return name, int(start.timestamp() * 1000)


class Meter:
    def __init__(
        self,
        counters: Counters,
        logs: LogWriter,
        ledger: LedgerRepository,
        *,
        task_holds: TaskHolds | None = None,
        propagation_s: float = 1.0,
    ) -> None:
        self._counters = counters
        self._logs = logs
        self._ledger = ledger
        self.task_holds = task_holds or TaskHolds()
        self._propagation_s = propagation_s
        self._deferring: dict[str, tuple[asyncio.TimerHandle, Ticket, Mapping[str, Any]]] = {}
        self._period_seeds: dict[tuple[int, str], int] = {}
        self._seeding: dict[tuple[int, str], asyncio.Future[int]] = {}

    async def admit(self, request_id: str, key: KeyState, hold_nano: int, now: float) -> Ticket:
        row = key.row
        period, period_start_ms = period_of(row.budget_period, now)
        ticket = Ticket(request_id, row.id, hold_nano, period)
        limits = Limits(row.quota_nano, row.budget_nano, row.rpm, row.tpm, row.max_concurrency)
        period_spent = 0
        if period is not None and row.budget_nano is not None:
            period_spent = await self._period_seed(row.id, period, period_start_ms)
        seeds = Seeds(key.used_nano, period_spent, self.task_holds.held(row.id))
        refusal = await self._counters.admit(ticket, limits, seeds, now)
        if refusal is not None:
            raise _refused(refusal)
        self._logs.open_hold(request_id, row.id, hold_nano)
        return ticket

    @staticmethod
    def spend_limit(key: KeyState, hold_nano: int) -> int | None:
        """The most a call may cost once admitted: what its key has left, and at least its
        hold; None for a key without a quota. A stream that passes it is cut."""
        remaining = key.remaining_nano
        return None if remaining is None else max(remaining, hold_nano)

    async def settle(self, ticket: Ticket, cost_nano: int, tokens: int, now: float) -> None:
        """Only ``charges.Settlement`` calls this, just after it submitted the charge."""
        await self._counters.settle(ticket, cost_nano, tokens, now)

    async def release(self, ticket: Ticket) -> None:
        await self._counters.release(ticket)

    async def defer(self, ticket: Ticket, task_id: str, row: Mapping[str, Any]) -> None:
        """The call goes on as the task ``task_id``, whose hold the tasks table now keeps:
        log the call's own ``row`` (which closes its hold record) and drop its counters'
        hold. Only ``charges.Settlement`` calls this.

        Counters shared with other processes let go only once those count the task's hold
        from the table, after their next read of the change feed: until then the hold
        counts twice, never not at all. Should this process die meanwhile, the call's hold
        record expires and the reconciler drops the shared hold.
        """
        self.task_holds.add(ticket.key_id, task_id, ticket.hold_nano)
        if not self._counters.shared:
            await self._hand_over(ticket, task_id, row)
            return
        handle = asyncio.get_running_loop().call_later(
            self._propagation_s, self._hand_over_later, ticket, task_id, row
        )
        self._deferring[task_id] = (handle, ticket, row)

    def _hand_over_later(self, ticket: Ticket, task_id: str, row: Mapping[str, Any]) -> None:
        self._deferring.pop(task_id, None)
        task = asyncio.ensure_future(self._hand_over(ticket, task_id, row))
        task.add_done_callback(_log_failure)

    async def _hand_over(self, ticket: Ticket, task_id: str, row: Mapping[str, Any]) -> None:
        self._logs.submit(dict(row))
        await self._counters.release(ticket)
        self.task_holds.uncover(ticket.key_id, task_id)

    async def task_ended(self, key_id: int, task_id: str, charged_nano: int) -> None:
        """A task's end is committed: its hold is gone, its charge is spent."""
        self.task_holds.remove(key_id, task_id)
        if charged_nano:
            await self._counters.reconcile(key_id, task_id, charged_nano)

    async def close(self) -> None:
        """Hand over the deferred holds still waiting, now."""
        waiting, self._deferring = self._deferring, {}
        for task_id, (handle, ticket, row) in waiting.items():
            handle.cancel()
            await self._hand_over(ticket, task_id, row)

    def checkpoint(self, ticket: Ticket, charged_nano: int) -> None:
        self._logs.checkpoint(ticket.request_id, min(charged_nano, ticket.hold_nano))

    async def _period_seed(self, key_id: int, period: str, start_ms: int) -> int:
        """Spend already committed this period; read once per key and period.

        Concurrent first calls share one read: each read is a transaction, which on SQLite
        queues behind the log writer.
        """
        seed = self._period_seeds.get((key_id, period))
        if seed is not None:
            return seed
        reading = self._seeding.get((key_id, period))
        if reading is None:
            reading = asyncio.ensure_future(self._read_seed(key_id, period, start_ms))
            self._seeding[(key_id, period)] = reading
        # Shielded: a caller that is cancelled must not cancel the others' read.
        return await asyncio.shield(reading)

    async def _read_seed(self, key_id: int, period: str, start_ms: int) -> int:
        try:
            seed = await self._ledger.period_spend(key_id, start_ms)
        finally:
            del self._seeding[(key_id, period)]
        if len(self._period_seeds) > 100_000:
            self._period_seeds.clear()
        self._period_seeds[(key_id, period)] = seed
        return seed


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("handing a deferred hold over failed", exc_info=task.exception())


def _refused(refusal: Refusal) -> InsufficientQuota | RateLimited:
    if refusal.reason == "quota":
        return InsufficientQuota(
            "You exceeded your current quota: this key's remaining budget cannot cover this "
            "call. Ask the gateway operator to raise its quota, or lower max_tokens."
        )
    if refusal.reason == "budget":
        return InsufficientQuota(
            "This key's budget for the current period is spent, or cannot cover this call. "
            "It resets with the next period."
        )
    what = {
        "rpm": "requests per minute",
        "tpm": "tokens per minute",
        "concurrency": "calls in flight",
    }[refusal.reason]
    error = RateLimited(
        f"Rate limit reached for this key's {what}. Retry after the time in Retry-After.",
        retry_after=refusal.retry_after,
    )
    if refusal.reason == "tpm":
        error.type = "tokens"
    return error
