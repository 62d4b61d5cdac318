"""POST /v1/completions (the legacy text completions)."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.begin import begin, send
from omnirelay.gateway.completions import ENDPOINT


async def completions(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin(request, ENDPOINT)
    return await send(request, await state.surface.completions.create(call, body))
