"""POST /v1/images/generations, /v1/images/edits and /v1/images/variations."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.begin import begin, begin_with, send, upload_body
from omnirelay.gateway.images import EDITS, GENERATIONS, VARIATIONS


async def generations(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin(request, GENERATIONS)
    return await send(request, await state.surface.images.generate(call, body))


async def edits(request: web.Request) -> web.StreamResponse:
    state, call, upload = await begin_with(request, EDITS, upload_body)
    try:
        return await send(request, await state.surface.images.edit(call, upload))
    finally:
        upload.discard()


async def variations(request: web.Request) -> web.StreamResponse:
    state, call, upload = await begin_with(request, VARIATIONS, upload_body)
    try:
        return await send(request, await state.surface.images.vary(call, upload))
    finally:
        upload.discard()
