"""What every operation handler shares: the call's start, and sending its answer."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from omnirelay.api.body import bearer_secret, read_json_sized
from omnirelay.api.errors import REQUEST_ID_HEADER, REQUEST_ID_KEY
from omnirelay.api.state import AppState, state_of
from omnirelay.api.uploads import read_upload
from omnirelay.gateway.calls import Call
from omnirelay.gateway.operations import Reply, StreamReply
from omnirelay.wire.uploads import Upload

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
JSONBody = dict[str, Any]


async def begin_json(request: web.Request, endpoint: str) -> tuple[AppState, Call, JSONBody]:
    state = state_of(request)
    key = state.keys.authenticate(bearer_secret(request))
    body, size = await read_json_sized(request, state.settings.max_body_bytes)
    call = Call.begin(
        request[REQUEST_ID_KEY], key, endpoint, body_bytes=size, client_ip=request.remote
    )
    return state, call, body


async def begin_upload(request: web.Request, endpoint: str) -> tuple[AppState, Call, Upload]:
    state = state_of(request)
    key = state.keys.authenticate(bearer_secret(request))
    upload = await read_upload(request, state.settings.max_body_bytes)
    size = sum(part.size for part in upload.files)
    call = Call.begin(
        request[REQUEST_ID_KEY], key, endpoint, body_bytes=size, client_ip=request.remote
    )
    return state, call, upload


async def send(request: web.Request, result: Reply | StreamReply) -> web.StreamResponse:
    if isinstance(result, Reply):
        response = web.Response(status=200, body=result.body)
        response.headers["Content-Type"] = result.content_type
        return response
    headers = {
        **STREAM_HEADERS,
        "Content-Type": result.content_type,
        REQUEST_ID_HEADER: request[REQUEST_ID_KEY],
    }
    stream = web.StreamResponse(headers=headers)
    try:
        await stream.prepare(request)
        if result.first:
            await stream.write(result.first)
        async for chunk in result.rest:
            await stream.write(chunk)
        await stream.write_eof()
    except (ConnectionResetError, ClientConnectionResetError):
        pass  # The client went away; closing the stream below cancels the upstream.
    finally:
        await result.rest.aclose()
    return stream
