"""What a task costs: its hold at submit, its charge when it succeeds, at the prices of its
submit (a snapshot kept in the row), and the typed record that carries the charge."""

from __future__ import annotations

from typing import Any

from omnirelay.gateway.charges import MAX_COST_NANO, MODEL_COLUMN_CHARS, ChargeRecord
from omnirelay.gateway.pricing import PPM, Price, Quote, Units
from omnirelay.providers.tasks.base import Billable
from omnirelay.store.tasks import TaskRow

MAX_LATENCY_MS = (1 << 31) - 1
"""The log's latency column is a 32-bit integer; a task may run for longer than it holds."""


def priced(quote: Quote, billable: Billable) -> int:
    """The cost of ``billable`` at ``quote``; ModelNotPriced when it has no price there."""
    if billable.unit == "video_seconds":
        return quote.video_seconds(billable.variant, billable.quantity)
    if billable.unit == "task_action":
        return quote.task_action(billable.variant) * max(billable.quantity, 0)
    raise ValueError(f"no price unit '{billable.unit}'")


def snapshot(quote: Quote) -> dict[str, Any]:
    """The prices a task was submitted at, as its row keeps them."""
    return {
        "units": quote.price.units.to_json(),
        "per_call_nano": quote.price.per_call_nano,
        "multiplier_ppm": quote.multiplier_ppm,
        "free_unpriced": quote.free_unpriced,
    }


def quote_of(task: TaskRow) -> Quote:
    """The quote of a task's submit, from its snapshot."""
    saved = task.price or {}
    price = Price(0, 0, 0, per_call_nano=0, units=Units.from_json(saved.get("units") or {}))
    return Quote(
        task.model,
        price,
        int(saved.get("multiplier_ppm", PPM)),
        bool(saved.get("free_unpriced", False)),
    )


def charge_of(task: TaskRow, billable: Billable) -> int:
    """A task that succeeded: what it made, at its submit's prices, at most its hold."""
    return min(priced(quote_of(task), billable), task.hold_nano)


def record(task: TaskRow, cost_nano: int, endpoint: str, now_ms: int) -> ChargeRecord:
    """The settlement's row in the request log: keyed by the task's public id, so the
    ledger takes one entry per task, dated when the charge is made."""
    return ChargeRecord(
        request_id=task.public_id,
        created_ms=now_ms,
        key_id=task.key_id,
        endpoint=endpoint,
        model=task.model[:MODEL_COLUMN_CHARS],
        served_model=task.model[:MODEL_COLUMN_CHARS],
        channel_id=task.channel_id,
        prompt_tokens=0,
        completion_tokens=0,
        cached_tokens=0,
        cost_nano=min(max(cost_nano, 0), MAX_COST_NANO),
        latency_ms=min(max(now_ms - task.created_ms, 0), MAX_LATENCY_MS),
        ttfb_ms=None,
        status=200,
        stream=False,
        usage_source=None,
        error=None,
        attempts=None,
    )
