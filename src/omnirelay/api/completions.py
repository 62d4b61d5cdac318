"""POST /v1/completions (the legacy text completions)."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.operation_io import begin_json, send
from omnirelay.gateway.completions import ENDPOINT


async def completions(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin_json(request, ENDPOINT)
    return await send(request, await state.surface.completions.create(call, body))
