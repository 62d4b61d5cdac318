"""POST /v1/chat/completions."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.begin import begin, send
from omnirelay.gateway.chat import ENDPOINT


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin(request, ENDPOINT)
    return await send(request, await state.surface.chat.create(call, body))
