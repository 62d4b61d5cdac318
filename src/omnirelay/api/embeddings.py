"""POST /v1/embeddings."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.begin import begin, send
from omnirelay.gateway.embeddings import EMBEDDINGS


async def embeddings(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin(request, EMBEDDINGS)
    return await send(request, await state.surface.embeddings.create(call, body))
