"""POST /v1/rerank."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.begin import begin, send
from omnirelay.gateway.rerank import ENDPOINT


async def rerank(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin(request, ENDPOINT)
    return await send(request, await state.surface.rerank.create(call, body))
