"""GET /v1/dashboard/billing/subscription and /usage (also served without /v1)."""

from __future__ import annotations

import orjson
from aiohttp import web

from omnirelay.api.begin import begin_with, no_body
from omnirelay.gateway import billing

ENDPOINT = "billing"


async def subscription(request: web.Request) -> web.Response:
    _state, call, _ = await begin_with(request, ENDPOINT, no_body)
    body = orjson.dumps(billing.subscription(call.key))
    return web.Response(body=body, content_type="application/json")


async def usage(request: web.Request) -> web.Response:
    state, call, _ = await begin_with(request, ENDPOINT, no_body)
    query = request.query
    if "start_date" in query or "end_date" in query:
        # Daily costs come from the log table: commit what this process has queued first.
        await state.logs.commit_submitted()
    body = await billing.usage(
        call.key, state.store.logs, query.get("start_date"), query.get("end_date")
    )
    return web.Response(body=orjson.dumps(body), content_type="application/json")
