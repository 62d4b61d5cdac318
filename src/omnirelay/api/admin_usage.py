"""Admin API for usage reports, read from the daily aggregate (never the raw log).

GET /admin/usage?group_by=key,model,channel,day&start_date=YYYY-MM-DD&end_date=...
                &key_id=N&limit=N
"""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.admin import _admin, _json
from omnirelay.gateway.usage_report import parse_query, row_view


async def usage(request: web.Request) -> web.Response:
    state, _ = _admin(request)
    query = parse_query(request.query)
    await state.logs.commit_submitted()  # this process's latest calls count too
    # One more row than asked for tells whether the report was cut short.
    rows = await state.store.usage.report(
        query.start, query.end, query.group_by, key_id=query.key_id, limit=query.limit + 1
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
