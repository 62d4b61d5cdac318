"""Settlement: the one owner of a call's money once the call has an outcome.

Given a call and its final usage and cost, or its failure, :class:`Settlement` writes the
typed charge record (the log row that carries the ledger entry), moves the key's counters
from the hold to the charge or releases the hold, and honours ``strict_settlement``. The
order matters and lives only here: the record is submitted (the key's spend rises at once)
before the hold is dropped, so that a concurrent admission never sees neither.

A settlement can also run later, detached from any request, in its own transaction keyed
by its id (a task's, a batch line's): the ledger takes one entry per id, so a second
settlement of the same id charges nothing.

A call accepted upstream as a task is deferred: its own row is logged free and its hold
moves to the task (``defer``). When the task ends, ``settle_task`` charges it (or releases
it) in the transaction that ends the task, exactly once, and only then do the counters and
the key's spend follow.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from omnirelay.gateway.calls import Call
from omnirelay.gateway.logwriter import LogWriter
from omnirelay.gateway.metering import Meter
from omnirelay.gateway.stats import CallStats
from omnirelay.gateway.tracing import Tracer
from omnirelay.store.counters import Ticket
from omnirelay.store.logs import spend_of
from omnirelay.wire.errors import GatewayError
from omnirelay.wire.usage import Usage

calls_log = logging.getLogger("omnirelay.calls")

STATUS_CLIENT_CLOSED = 499
CANCELLED = "client disconnected; the call was cancelled"
MODEL_COLUMN_CHARS = 128
MAX_COST_NANO = 1 << 62
"""No charge may overflow its BIGINT column, whatever an upstream reported."""

TaskEnd = Callable[[dict[str, Any] | None, dict[int, int]], Awaitable[dict[int, int] | None]]
"""Commits a task's end with its log row and the spend it charges, in one transaction;
returns the keys' new spend, or None when the task had ended already (nothing written)."""


@dataclass(slots=True)
class ChargeRecord:
    """One call's row in the request log; its ``cost_nano`` is charged to ``key_id``."""

    request_id: str
    created_ms: int
    key_id: int | None
    endpoint: str
    model: str | None
    served_model: str | None
    channel_id: int | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_nano: int
    latency_ms: int
    ttfb_ms: int | None
    status: int
    stream: bool
    usage_source: str | None
    error: str | None
    attempts: list[dict[str, Any]] | None
    batch_id: str | None = None

    @classmethod
    def of(
        cls,
        call: Call,
        *,
        status: int,
        stream: bool,
        usage: Usage | None = None,
        cost_nano: int = 0,
        error: str | None = None,
    ) -> ChargeRecord:
        source = None if usage is None else "counted" if usage.counted_locally else "upstream"
        usage = usage or Usage()
        return cls(
            request_id=call.request_id,
            created_ms=call.started_ms,
            key_id=call.key.id,
            endpoint=call.endpoint,
            model=_clip(call.model),
            served_model=_clip(call.served_model),
            channel_id=call.channel_id,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cost_nano=min(max(cost_nano, 0), MAX_COST_NANO),
            latency_ms=call.elapsed_ms(),
            ttfb_ms=call.ttfb_ms,
            status=status,
            stream=stream,
            usage_source=source,
            error=error,
            attempts=list(call.attempts) or None,
            batch_id=call.batch_id,
        )

    def as_row(self) -> dict[str, Any]:
        """The record as the log writer stores it."""
        return {
            "request_id": self.request_id,
            "created_ms": self.created_ms,
            "key_id": self.key_id,
            "endpoint": self.endpoint,
            "model": self.model,
            "served_model": self.served_model,
            "channel_id": self.channel_id,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_nano": self.cost_nano,
            "latency_ms": self.latency_ms,
            "ttfb_ms": self.ttfb_ms,
            "status": self.status,
            "stream": self.stream,
            "usage_source": self.usage_source,
            "error": self.error,
            "attempts": self.attempts,
            "batch_id": self.batch_id,
        }


class Settlement:
    def __init__(
        self,
        meter: Meter,
        writer: LogWriter,
        *,
        strict: bool = False,
        stats: CallStats | None = None,
        tracer: Tracer | None = None,
        provider_of: Callable[[int], str | None] | None = None,
        log_calls: bool = False,
    ) -> None:
        self._log_calls = log_calls
        self._meter = meter
        self._writer = writer
        self.strict = strict
        self._stats = stats
        self._tracer = tracer
        self._provider_of = provider_of or (lambda _channel_id: None)

    async def settle(
        self,
        call: Call,
        ticket: Ticket,
        *,
        stream: bool,
        usage: Usage,
        cost_nano: int,
        status: int = 200,
        error: str | None = None,
    ) -> None:
        """The call is over: charge its cost and drop its hold."""
        record = ChargeRecord.of(
            call, status=status, stream=stream, usage=usage, cost_nano=cost_nano, error=error
        )
        self._submit(call, record)
        await self._meter.settle(ticket, record.cost_nano, usage.total_tokens, time.time())
        if self.strict:
            await self._writer.commit_submitted()

    async def release(self, ticket: Ticket) -> None:
        """The call failed after admission: its hold goes back in full."""
        await self._meter.release(ticket)

    def refused(self, call: Call, error: GatewayError, *, stream: bool) -> None:
        """The call failed (before admission or after its hold was released): logged, free."""
        self._submit_free(call, error.status, error.logged, stream)

    def cancelled(self, call: Call, *, stream: bool) -> None:
        """The client left before an answer started; the upstream call was dropped."""
        self._submit_free(call, STATUS_CLIENT_CLOSED, CANCELLED, stream)

    def _submit_free(self, call: Call, status: int, error: str, stream: bool) -> None:
        self._submit(call, ChargeRecord.of(call, status=status, stream=stream, error=error))

    def _submit(self, call: Call, record: ChargeRecord) -> None:
        """Every call's record passes here once: to the log writer, and to the metrics."""
        row = record.as_row()
        self._writer.submit(row)
        if self._stats is not None:
            self._stats.settled(row, call.key.row.group_name)
        if self._log_calls:
            _log_call(row)
        if self._tracer is not None and call.trace is not None:
            channel_id = call.channel_id
            provider = None if channel_id is None else self._provider_of(channel_id)
            self._tracer.settled(call, row, provider)

    async def defer(self, call: Call, ticket: Ticket, task_id: str) -> None:
        """The call was accepted upstream and goes on as a task: the call is logged free,
        and its hold moves to the task until ``settle_task``."""
        record = ChargeRecord.of(call, status=200, stream=False, usage=Usage())
        row = record.as_row()
        if self._stats is not None:  # the call is answered: it leaves the calls in flight
            self._stats.settled(row, call.key.row.group_name)
        await self._meter.defer(ticket, task_id, row)

    async def settle_task(
        self, key_id: int, task_id: str, record: ChargeRecord | None, end: TaskEnd
    ) -> bool:
        """A task ended: commit its charge (``record``; None releases its hold in full)
        with its end, exactly once. False, moving no money, when it had ended already."""
        row = None if record is None else record.as_row()
        totals = await end(row, spend_of([row]) if row is not None else {})
        if totals is None:
            return False
        self._writer.committed(totals)
        await self._meter.task_ended(key_id, task_id, 0 if record is None else record.cost_nano)
        return True

    async def close(self) -> None:
        """Hand deferred holds over now (the process stops)."""
        await self._meter.close()

    async def settle_once(self, record: ChargeRecord) -> bool:
        """Commit one charge now, in its own transaction, keyed by its id.

        Returns False, charging nothing, when a charge with this id was settled before.
        """
        return await self._writer.write_now(record.as_row())


def _log_call(row: dict[str, Any]) -> None:
    """One line per call (``log_calls``): what it was and cost, never its content."""
    fields = {
        "request_id": row["request_id"],
        "key_id": row["key_id"],
        "endpoint": row["endpoint"],
        "model": row["model"],
        "channel_id": row["channel_id"],
        "status": row["status"],
        "latency_ms": row["latency_ms"],
        "ttfb_ms": row["ttfb_ms"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "cost_nano": row["cost_nano"],
        "stream": row["stream"],
        "attempts": len(row["attempts"] or ()),
    }
    calls_log.info("call", extra={"call": fields})


def _clip(name: str | None) -> str | None:
    """Model names as the log's column holds them; an upstream may report a longer one."""
    return name[:MODEL_COLUMN_CHARS] if name else name
