"""POST /v1/embeddings."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.operation_io import begin_json, send
from omnirelay.gateway.embeddings import EMBEDDINGS


async def embeddings(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin_json(request, EMBEDDINGS)
    return await send(request, await state.surface.embeddings.create(call, body))
