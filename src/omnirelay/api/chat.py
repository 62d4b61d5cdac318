"""POST /v1/chat/completions."""

from __future__ import annotations

from aiohttp import web
from aiohttp.client_exceptions import ClientConnectionResetError

from omnirelay.api.body import bearer_secret, read_json_sized
from omnirelay.api.errors import REQUEST_ID_HEADER, REQUEST_ID_KEY
from omnirelay.api.state import state_of
from omnirelay.gateway.calls import Call
from omnirelay.gateway.chat import ENDPOINT, JSONResult, StreamResult

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    key = state.keys.authenticate(bearer_secret(request))
    body, size = await read_json_sized(request, state.settings.max_body_bytes)
    call = Call.begin(
        request[REQUEST_ID_KEY], key, ENDPOINT, body_bytes=size, client_ip=request.remote
    )
    result = await state.chat.complete(call, body)
    if isinstance(result, JSONResult):
        return web.Response(status=result.status, body=result.body, content_type="application/json")
    return await _relay_stream(request, result, call.request_id)


async def _relay_stream(
    request: web.Request, result: StreamResult, request_id: str
) -> web.StreamResponse:
    response = web.StreamResponse(headers={**SSE_HEADERS, REQUEST_ID_HEADER: request_id})
    try:
        await response.prepare(request)
        if result.first:
            await response.write(result.first)
        async for event in result.rest:
            await response.write(event)
        await response.write_eof()
    except (ConnectionResetError, ClientConnectionResetError):
        pass  # The client went away; closing the events below cancels the upstream.
    finally:
        await result.rest.aclose()
    return response
