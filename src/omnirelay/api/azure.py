"""Azure OpenAI's deployment paths, inbound: ``/openai/deployments/{deployment}/...``.

The ``AzureOpenAI`` client of the ``openai`` SDK posts to a deployment, with
``?api-version=`` and the key in ``api-key`` (or ``Authorization: Bearer``; both are read
by ``body.bearer_secret``). The deployment's name is the model: it replaces any ``model``
in the body or the form. ``api-version`` is accepted whatever it says, since the operation
behind each path is the gateway's own, the very one of the ``/v1`` path of the same name:
routed, limited and metered the same. Azure's v1 API (``/openai/v1/...``) is OpenAI's paths
under another prefix; ``api.routes`` serves it with the ``/v1`` handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from omnirelay.api.begin import begin_with, send, upload_body
from omnirelay.api.body import read_json_sized
from omnirelay.gateway import chat, completions, embeddings, images
from omnirelay.gateway.audio import SPEECH, TRANSCRIPTIONS, TRANSLATIONS
from omnirelay.gateway.calls import Call
from omnirelay.gateway.operation import Reply, StreamReply
from omnirelay.gateway.surface import Surface
from omnirelay.wire.uploads import Upload

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Result = Awaitable[Reply | StreamReply]
JSONOperation = Callable[[Surface, Call, dict[str, Any]], Result]
UploadOperation = Callable[[Surface, Call, Upload], Result]


async def _deployment_json(request: web.Request, limit: int) -> tuple[dict[str, Any], int]:
    body, size = await read_json_sized(request, limit)
    body["model"] = request.match_info["deployment"]
    return body, size


async def _deployment_upload(request: web.Request, limit: int) -> tuple[Upload, int]:
    upload, size = await upload_body(request, limit)
    return upload.replaced("model", request.match_info["deployment"]), size


def _json(endpoint: str, operation: JSONOperation) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        state, call, body = await begin_with(request, endpoint, _deployment_json)
        return await send(request, await operation(state.surface, call, body))

    return handler


def _upload(endpoint: str, operation: UploadOperation) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        state, call, upload = await begin_with(request, endpoint, _deployment_upload)
        try:
            return await send(request, await operation(state.surface, call, upload))
        finally:
            upload.discard()

    return handler


DEPLOYMENT_PATHS: dict[str, Handler] = {
    "chat/completions": _json(chat.ENDPOINT, lambda s, c, b: s.chat.create(c, b)),
    "completions": _json(completions.ENDPOINT, lambda s, c, b: s.completions.create(c, b)),
    "embeddings": _json(embeddings.EMBEDDINGS, lambda s, c, b: s.embeddings.create(c, b)),
    "images/generations": _json(images.GENERATIONS, lambda s, c, b: s.images.generate(c, b)),
    "audio/speech": _json(SPEECH, lambda s, c, b: s.audio.speech(c, b)),
    "images/edits": _upload(images.EDITS, lambda s, c, u: s.images.edit(c, u)),
    "audio/transcriptions": _upload(
        TRANSCRIPTIONS, lambda s, c, u: s.audio.transcribe(c, u, translate=False)
    ),
    "audio/translations": _upload(
        TRANSLATIONS, lambda s, c, u: s.audio.transcribe(c, u, translate=True)
    ),
}
"""What follows ``/openai/deployments/{deployment}/``."""
