"""POST /v1/moderations."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.begin import begin, send
from omnirelay.gateway.embeddings import MODERATIONS


async def moderations(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin(request, MODERATIONS)
    return await send(request, await state.surface.moderations.create(call, body))
