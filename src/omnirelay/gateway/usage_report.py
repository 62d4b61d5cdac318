"""Usage reports by key, model, channel and day, for the admin API and the CLI.

Dates are UTC days, ``YYYY-MM-DD``; a range is ``[start_date, end_date)``, the end left
out, like the billing usage GET. Without dates a report covers the last 30 days, today
included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from omnirelay.gateway.pricing import nano_to_usd
from omnirelay.store.usage import GROUPS, UsageRow
from omnirelay.wire.errors import InvalidRequest

DEFAULT_DAYS = 30
MAX_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class UsageQuery:
    start: date
    end: date
    group_by: tuple[str, ...]
    key_id: int | None
    limit: int


def parse_query(params: Mapping[str, str], today: date | None = None) -> UsageQuery:
    """Read ``group_by``, ``start_date``, ``end_date``, ``key_id`` and ``limit``."""
    today = today or datetime.now(UTC).date()
    group_by = tuple(
        dict.fromkeys(
            part.strip() for part in params.get("group_by", "").split(",") if part.strip()
        )
    )
    unknown = [name for name in group_by if name not in GROUPS]
    if unknown:
        raise InvalidRequest(
            f"Cannot group usage by '{unknown[0]}'; use any of: {', '.join(GROUPS)}.",
            param="group_by",
        )
    end = _date(params, "end_date") or today + timedelta(days=1)
    start = _date(params, "start_date") or end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise InvalidRequest("'start_date' must come before 'end_date'.", param="start_date")
    return UsageQuery(
        start=start,
        end=end,
        group_by=group_by,
        key_id=_integer(params, "key_id", 0, None),
        limit=_integer(params, "limit", 1, MAX_ROWS) or MAX_ROWS,
    )


def row_view(row: UsageRow, group_by: tuple[str, ...]) -> dict[str, Any]:
    view: dict[str, Any] = {}
    if "day" in group_by:
        view["day"] = row.day.isoformat() if row.day else None
    if "key" in group_by:
        view["key_id"] = row.key_id
    if "model" in group_by:
        view["model"] = row.model
    if "channel" in group_by:
        view["channel_id"] = row.channel_id
    return {
        **view,
        "requests": row.requests,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cost_nano": row.cost_nano,
        "cost_usd": nano_to_usd(row.cost_nano),
    }


def _date(params: Mapping[str, str], name: str) -> date | None:
    value = params.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidRequest(f"'{name}' must be a date as YYYY-MM-DD.", param=name) from exc


def _integer(params: Mapping[str, str], name: str, low: int, high: int | None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if number < low or (high is not None and number > high):
        upper = f" and at most {high}" if high is not None else ""
        raise InvalidRequest(f"'{name}' must be an integer of at least {low}{upper}.", param=name)
    return number
