"""The two billing GETs that OpenAI-style clients call to show a key's balance."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from omnirelay.gateway.keys import KeyState
from omnirelay.gateway.pricing import NANO_PER_USD
from omnirelay.store.logs import DAY_MS, LogRepository
from omnirelay.wire.errors import InvalidRequest

UNLIMITED_USD = 100_000_000
NANO_PER_CENT = NANO_PER_USD // 100
MAX_RANGE_DAYS = 366
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")


def subscription(key: KeyState) -> dict[str, Any]:
    quota = key.row.quota_nano
    limit = UNLIMITED_USD if quota is None else quota / NANO_PER_USD
    return {
        "object": "billing_subscription",
        "has_payment_method": True,
        "soft_limit_usd": limit,
        "hard_limit_usd": limit,
        "system_hard_limit_usd": limit,
        "access_until": key.row.expires_at or 0,
    }


async def usage(
    key: KeyState, logs: LogRepository, start_date: str | None, end_date: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"object": "list", "total_usage": key.used_nano / NANO_PER_CENT}
    if start_date is None and end_date is None:
        return body
    start, end = _date_range(start_date, end_date)
    start_ms, end_ms = _epoch_ms(start), _epoch_ms(end)
    costs = await logs.daily_costs(key.id, start_ms, end_ms)
    by_day: dict[int, list[dict[str, Any]]] = {day: [] for day in range(start_ms, end_ms, DAY_MS)}
    for cost in costs:
        by_day[cost.day_start_ms].append(
            {"name": cost.model, "cost": cost.cost_nano / NANO_PER_CENT}
        )
    body["daily_costs"] = [
        {"timestamp": day // 1000, "line_items": items} for day, items in by_day.items()
    ]
    return body


def _date_range(start_date: str | None, end_date: str | None) -> tuple[date, date]:
    if start_date is None or end_date is None:
        missing = "start_date" if start_date is None else "end_date"
        raise InvalidRequest(
            "Give both start_date and end_date (UTC, YYYY-MM-DD; end_date is exclusive).",
            param=missing,
            code="missing_field",
        )
    start = _parse_date(start_date, "start_date")
    end = _parse_date(end_date, "end_date")
    if end <= start:
        raise InvalidRequest(
            "end_date must be after start_date (end_date is exclusive).", param="end_date"
        )
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise InvalidRequest(
            f"The date range may span at most {MAX_RANGE_DAYS} days.", param="end_date"
        )
    return start, end


def _parse_date(value: str, name: str) -> date:
    if not DATE_PATTERN.fullmatch(value):
        return _invalid_date(name)
    try:
        return date.fromisoformat(value)
    except ValueError:
        return _invalid_date(name)


def _invalid_date(name: str) -> date:
    raise InvalidRequest(
        f"'{name}' must be a UTC date written YYYY-MM-DD.", param=name, code="invalid_type"
    )


def _epoch_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
