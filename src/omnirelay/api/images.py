"""POST /v1/images/generations, /v1/images/edits and /v1/images/variations."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.operation_io import begin_json, begin_upload, send
from omnirelay.gateway.images import EDITS, GENERATIONS, VARIATIONS


async def generations(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin_json(request, GENERATIONS)
    return await send(request, await state.surface.images.generate(call, body))


async def edits(request: web.Request) -> web.StreamResponse:
    state, call, upload = await begin_upload(request, EDITS)
    try:
        return await send(request, await state.surface.images.edit(call, upload))
    finally:
        upload.discard()


async def variations(request: web.Request) -> web.StreamResponse:
    state, call, upload = await begin_upload(request, VARIATIONS)
    try:
        return await send(request, await state.surface.images.vary(call, upload))
    finally:
        upload.discard()
