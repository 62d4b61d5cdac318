"""Admin API for usage reports, read from the daily aggregate (never the raw log), and
spend per hour, read from the ledger.

GET /admin/usage?group_by=key,model,channel,day&start_date=YYYY-MM-DD&end_date=...
                &key_id=N&limit=N
GET /admin/usage/hourly?hours=N&key_id=N

A key holder's console session reads its own key's; an operator's, any key's.
"""

from __future__ import annotations

import time

from aiohttp import web

from omnirelay.api.admin import _integers, _json
from omnirelay.api.admin_auth import own_key, reader
from omnirelay.gateway.pricing import nano_to_usd
from omnirelay.gateway.usage_report import parse_query, row_view
from omnirelay.store.ledger import HOUR_MS
from omnirelay.wire.errors import InvalidRequest, PermissionDenied

DEFAULT_HOURS = 48
MAX_HOURS = 24 * 31


async def usage(request: web.Request) -> web.Response:
    state, caller = await reader(request)
    query = parse_query(request.query)
    key_id = own_key(caller, query.key_id)
    if not caller.operator and "channel" in query.group_by:
        raise PermissionDenied("A key holder cannot group usage by channel.", param="group_by")
    await state.logs.commit_submitted()  # this process's latest calls count too
    # One more row than asked for tells whether the report was cut short.
    rows = await state.store.usage.report(
        query.start, query.end, query.group_by, key_id=key_id, limit=query.limit + 1
    )
    return _json(
        {
            "object": "list",
            "start_date": query.start.isoformat(),
            "end_date": query.end.isoformat(),
            "group_by": list(query.group_by),
            "data": [row_view(row, query.group_by) for row in rows[: query.limit]],
            "has_more": len(rows) > query.limit,
        }
    )


async def hourly(request: web.Request) -> web.Response:
    """Charges and spend per hour over the last ``hours`` (the current hour included),
    every hour listed, from the ledger: ``{"data": [{"hour_ms", "charges", "cost_nano",
    "cost_usd"}]}``."""
    state, caller = await reader(request)
    given = _integers(request, ("hours", "key_id"))
    hours = given.get("hours", DEFAULT_HOURS)
    if not 1 <= hours <= MAX_HOURS:
        raise InvalidRequest(f"'hours' must be between 1 and {MAX_HOURS}.", param="hours")
    key_id = own_key(caller, given.get("key_id"))
    await state.logs.commit_submitted()
    end = (int(time.time() * 1000) // HOUR_MS + 1) * HOUR_MS
    start = end - hours * HOUR_MS
    found = {
        hour: (charges, cost)
        for hour, charges, cost in await state.store.ledger.hourly(start, end, key_id)
    }
    data = []
    for hour in range(start, end, HOUR_MS):
        charges, cost = found.get(hour, (0, 0))
        data.append(
            {"hour_ms": hour, "charges": charges, "cost_nano": cost, "cost_usd": nano_to_usd(cost)}
        )
    return _json({"object": "list", "hours": hours, "key_id": key_id, "data": data})
