"""POST /v1/moderations."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.operation_io import begin_json, send
from omnirelay.gateway.embeddings import MODERATIONS


async def moderations(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin_json(request, MODERATIONS)
    return await send(request, await state.surface.moderations.create(call, body))
