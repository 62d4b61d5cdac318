"""POST /v1/rerank."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.operation_io import begin_json, send
from omnirelay.gateway.rerank import ENDPOINT


async def rerank(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin_json(request, ENDPOINT)
    return await send(request, await state.surface.rerank.create(call, body))
