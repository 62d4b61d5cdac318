"""GET /v1/dashboard/billing/subscription and /usage (also served without /v1)."""

from __future__ import annotations

import orjson
from aiohttp import web

from omnirelay.api.body import bearer_secret
from omnirelay.api.state import state_of
from omnirelay.gateway import billing


async def subscription(request: web.Request) -> web.Response:
    state = state_of(request)
    key = state.keys.authenticate(bearer_secret(request))
    return web.Response(
        body=orjson.dumps(billing.subscription(key)), content_type="application/json"
    )


async def usage(request: web.Request) -> web.Response:
    state = state_of(request)
    key = state.keys.authenticate(bearer_secret(request))
    query = request.query
    if "start_date" in query or "end_date" in query:
        # Daily costs come from the log table: commit what this process has queued first.
        await state.logs.commit_submitted()
    body = await billing.usage(
        key, state.store.logs, query.get("start_date"), query.get("end_date")
    )
    return web.Response(body=orjson.dumps(body), content_type="application/json")
