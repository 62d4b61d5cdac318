"""Hold before a call, settle after it: a key can never spend what it does not have.

Admission holds an upper bound of the call's cost (the prompt's byte length as its token
count, plus the request's output cap, at the model's price) and checks the key's rate
limits, atomically in the counters. Settlement replaces the hold with the exact cost from
the usage; a failed call releases it in full. Holds are also recorded through the log
writer, so that a reconciler can settle the holds of a process that died.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import UTC, datetime, timedelta

from omnirelay.gateway.keys import KeyState
from omnirelay.gateway.logwriter import LogWriter
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
    def __init__(self, counters: Counters, logs: LogWriter, ledger: LedgerRepository) -> None:
        self._counters = counters
        self._logs = logs
        self._ledger = ledger
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
        refusal = await self._counters.admit(
            ticket, limits, Seeds(key.used_nano, period_spent), now
        )
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
