"""POST /v1/audio/speech, /v1/audio/transcriptions and /v1/audio/translations."""

from __future__ import annotations

from aiohttp import web

from omnirelay.api.begin import begin, begin_with, send, upload_body
from omnirelay.gateway.audio import SPEECH, TRANSCRIPTIONS, TRANSLATIONS


async def speech(request: web.Request) -> web.StreamResponse:
    state, call, body = await begin(request, SPEECH)
    return await send(request, await state.surface.audio.speech(call, body))


async def transcriptions(request: web.Request) -> web.StreamResponse:
    return await _transcribe(request, translate=False)


async def translations(request: web.Request) -> web.StreamResponse:
    return await _transcribe(request, translate=True)


async def _transcribe(request: web.Request, *, translate: bool) -> web.StreamResponse:
    endpoint = TRANSLATIONS if translate else TRANSCRIPTIONS
    state, call, upload = await begin_with(request, endpoint, upload_body)
    try:
        result = await state.surface.audio.transcribe(call, upload, translate=translate)
        return await send(request, result)
    finally:
        upload.discard()
